/* The order page's actions (loaded after console.js, whose helpers it uses: t, esc, api, toast,
   label, money): change (a link to the desk, shown while a change is accepted), cancel, return or
   exchange, record a payment, record a carrier scan. Each form posts JSON to its route; a refusal
   (422) shows each field's reason beside it. The forms are filled from
   GET /api/orders/{id}/actions, again after every action and whenever the order's timeline grows
   (a dispatch, a delivery, a return move what the forms offer); a part the operator may be
   filling in is drawn again only when what it offers changed. */
"use strict";

const ACT = {orderId: (document.getElementById("act") || {dataset: {}}).dataset.orderId, data: null,
             shown: {}, events: 0};

/* whether a part of the forms offers something else than it shows (and remember it) */
function actChanged(part, value) {
  const key = JSON.stringify(value === undefined ? null : value);
  if (ACT.shown[part] === key) return false;
  ACT.shown[part] = key;
  return true;
}

function actClear(form) { form.querySelectorAll(".field-error").forEach(el => { el.textContent = ""; }); }

function actFieldOf(prefix, loc) {
  const path = (loc || []).slice(1);
  if (path[0] === "lines" && path.length > 2) return document.getElementById(prefix + "-err-lines-" + path[1]) ||
    document.getElementById(prefix + "-err-lines");
  return document.getElementById(prefix + "-err-" + path[0]);
}

async function actSubmit(form, prefix, path, body) {
  actClear(form);
  const r = await api("/api/orders/" + encodeURIComponent(ACT.orderId) + path, {method: "POST", body: JSON.stringify(body)});
  if (r.ok) { toast(t("act.done"), false); form.reset(); ACT.shown = {}; await actLoad(); return r; }
  const detail = r.body && r.body.detail;
  let shown = false;
  if (r.status === 422 && Array.isArray(detail)) {
    detail.forEach(x => {
      const el = actFieldOf(prefix, x.loc);
      if (el) { el.textContent = t("act.invalid", {detail: x.msg}); shown = true; }
    });
  }
  if (!shown) toast(t("act.failed", {status: r.status, detail: typeof detail === "string" ? detail : JSON.stringify(detail || "")}), true);
  return r;
}

function actRequired(form, prefix, fields) {
  actClear(form);
  let missing = false;
  for (const [field, value] of fields) {
    if (!value) { document.getElementById(prefix + "-err-" + field).textContent = t("act.required"); missing = true; }
  }
  return missing;
}

function actFill(d) {
  const change = document.getElementById("act-change");
  if (change) { change.hidden = !d.may_change; document.getElementById("act-change-closed").hidden = d.may_change; }
  const lines = document.querySelector("#act-return-lines tbody");
  if (!lines) return;
  const skus = Object.keys(d.returnable);
  if (actChanged("returnable", d.returnable)) lines.innerHTML = skus.length ? skus.map((sku, i) => '<tr data-sku="' + esc(sku) + '"><td class="mono">' + esc(sku) + "</td><td>" +
    esc(d.returnable[sku]) + '</td><td><input type="number" min="0" max="' + esc(d.returnable[sku]) + '" value="0" data-qty="' + esc(sku) +
    '" size="5"></td><td><select data-outcome="' + esc(sku) + '"><option value="restock">' + esc(t("act.restock")) +
    '</option><option value="scrap">' + esc(t("act.scrap")) + '</option></select></td><td><span class="field-error bad" id="act-return-err-lines-' +
    i + '"></span></td></tr>').join("") : '<tr><td colspan="5" class="muted">' + esc(t("act.nothing_dispatched")) + "</td></tr>";
  document.getElementById("act-return-refund-max").textContent = t("act.refund_max", {amount: money(d.refundable, d.currency || "")});
  if (actChanged("currency", d.currency)) document.getElementById("act-payment-currency").value = d.currency || "";
  const ship = document.getElementById("act-scan-shipment");
  const chosen = ship.value;
  if (actChanged("shipments", d.shipments)) ship.innerHTML = d.shipments.length ? d.shipments.map(s => '<option value="' + esc(s.shipment_id) + '">' +
    esc((s.tracking_number || s.shipment_id.slice(0, 8)) + " (" + label("shipment.", s.status) + ")") + "</option>").join("") :
    '<option value="">' + esc(t("act.no_shipments")) + "</option>";
  if (chosen && d.shipments.some(s => s.shipment_id === chosen)) ship.value = chosen;
  const code = document.getElementById("act-scan-code");
  if (code.options.length <= 1) code.innerHTML += d.exception_codes.map(c => '<option value="' + esc(c) + '">' + esc(label("exc.", c)) + "</option>").join("");
}

async function actLoad() {
  const r = await api("/api/orders/" + encodeURIComponent(ACT.orderId) + "/actions");
  if (r.ok) { ACT.data = r.body; actFill(r.body); }
}

function actValue(id) { return document.getElementById(id).value.trim(); }

/* what the forms offer follows the order: read again when its timeline has more entries */
function actWatchTimeline() {
  const timeline = document.getElementById("timeline");
  if (!timeline) return;
  new MutationObserver(() => {
    const count = timeline.querySelectorAll("li").length;
    if (count !== ACT.events) { ACT.events = count; actLoad(); }
  }).observe(timeline, {childList: true});
}

function initActions() {
  actWatchTimeline();
  document.getElementById("act-cancel-form").addEventListener("submit", async e => {
    e.preventDefault();
    const form = e.target, reason = actValue("act-cancel-reason");
    if (actRequired(form, "act-cancel", [["reason", reason]])) return;
    await actSubmit(form, "act-cancel", "/cancel", {reason: reason});
  });
  const ret = document.getElementById("act-return-form");
  if (!ret) { actLoad(); return; }
  ret.addEventListener("submit", async e => {
    e.preventDefault();
    const lines = Array.from(document.querySelectorAll("#act-return-lines tbody tr[data-sku]")).map(row => ({
      sku: row.dataset.sku, quantity: parseInt(row.querySelector("[data-qty]").value || "0", 10) || 0,
      outcome: row.querySelector("[data-outcome]").value})).filter(x => x.quantity > 0);
    const body = {reason: actValue("act-return-reason"), resolution: actValue("act-return-resolution"), lines: lines,
                  refund: actValue("act-return-refund")};
    if (actRequired(ret, "act-return", [["reason", body.reason], ["refund", body.refund], ["lines", lines.length]])) return;
    await actSubmit(ret, "act-return", "/return", body);
  });
  document.getElementById("act-payment-form").addEventListener("submit", async e => {
    e.preventDefault();
    const form = e.target;
    const body = {amount: actValue("act-payment-amount"), currency: actValue("act-payment-currency"), reference: actValue("act-payment-reference")};
    if (actRequired(form, "act-payment", [["amount", body.amount], ["currency", body.currency], ["reference", body.reference]])) return;
    await actSubmit(form, "act-payment", "/payment", body);
  });
  document.getElementById("act-scan-form").addEventListener("submit", async e => {
    e.preventDefault();
    const form = e.target, at = actValue("act-scan-at");
    const body = {shipment_id: actValue("act-scan-shipment"), status: actValue("act-scan-status"), code: actValue("act-scan-code") || null,
                  at: at ? new Date(at).toISOString() : null, location: actValue("act-scan-location"), note: actValue("act-scan-note")};
    if (actRequired(form, "act-scan", [["shipment_id", body.shipment_id]])) return;
    await actSubmit(form, "act-scan", "/scan", body);
  });
  actLoad();
}

if (PAGE === "order" && ACT.orderId) initActions();
