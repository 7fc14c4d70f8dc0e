/* The worklists page (loaded after console.js, whose helpers it uses: t, esc, api, toast, age,
   label, reasonList, orderLink, poll). Claim, assign, unassign and close items; approve or
   reject several held orders with one comment; record customer cases. The table is redrawn
   from GET /api/worklist, never while the operator is choosing in it. */
"use strict";

const WL = {selected: new Set(), data: null};

function wlQuery() {
  const p = new URLSearchParams();
  const view = document.getElementById("wl-view").value, kind = document.getElementById("wl-kind").value;
  if (view === "mine") p.set("mine", "true");
  if (view === "unassigned") p.set("unassigned", "true");
  if (view === "overdue") p.set("overdue", "true");
  if (kind) p.set("kind", kind);
  return p.toString();
}

function wlContact(i) {
  const c = i.details && i.details.contact;
  if (!c) return "";
  return [c.name, c.phone, c.email].filter(x => x).map(esc).join("<br>");
}

function wlReason(i) {
  if (i.kind === "case") return esc(label("casetype.", i.details.type)) + ": " + esc(i.reason) + '<br><span class="muted">' +
    esc(t("wl.case_status", {status: label("casestatus.", i.details.status), due: when(i.details.due_at)})) + "</span>";
  return esc(reasonList(i.reason_codes) || label("kind.", i.kind));
}

function wlActions(i, d) {
  if (!d.may_work) return "";
  const key = esc(i.key);
  let out = "";
  if (i.assignee !== d.me) out += '<button type="button" data-act="claim" data-key="' + key + '">' + esc(t("wl.claim")) + "</button> ";
  out += '<select data-assign-for="' + key + '">' + Object.keys(d.operators).map(name =>
    '<option value="' + esc(name) + '"' + (name === i.assignee ? " selected" : "") + ">" + esc(name) + "</option>").join("") + "</select>" +
    '<button type="button" data-act="assign" data-key="' + key + '">' + esc(t("wl.assign")) + "</button> ";
  if (i.assignee) out += '<button type="button" data-act="unassign" data-key="' + key + '">' + esc(t("wl.unassign")) + "</button> ";
  /* the desk's own rejected or sent-back orders (the item's actions say so), for those who enter orders */
  if (d.may_enter && (i.actions || []).includes("resubmit")) out += '<a class="button" data-act="resubmit" href="/desk?from=' + encodeURIComponent(i.order_id) + '">' + esc(t("wl.resubmit")) + "</a> ";
  if (i.kind === "case" && d.may_case) {
    out += '<button type="button" data-act="case-answered" data-case="' + esc(i.details.case_id) + '">' + esc(t("wl.case_answered")) + "</button> " +
           '<button type="button" data-act="case-closed" data-case="' + esc(i.details.case_id) + '">' + esc(t("wl.case_closed")) + "</button>";
  } else if (i.kind !== "case") {
    out += '<button type="button" data-act="done" data-key="' + key + '">' + esc(t("wl.done")) + "</button>";
  }
  return out;
}

function wlRow(i, d) {
  const pick = i.kind === "held" && d.may_decide ?
    '<input type="checkbox" data-pick="' + esc(i.order_id) + '"' + (WL.selected.has(i.order_id) ? " checked" : "") + ">" : "";
  return '<tr class="' + (i.breached ? "breached" : "") + '" data-key="' + esc(i.key) + '" data-kind="' + esc(i.kind) +
    '" data-order-id="' + esc(i.order_id || "") + '"><td>' + pick + "</td><td>" + esc(label("kind.", i.kind)) + "</td><td>" +
    (i.order_id ? orderLink(i.order_id, i.external_id || i.order_id.slice(0, 8)) : "–") + "</td><td>" + esc(i.customer_id || "") +
    '</td><td class="contact">' + wlContact(i) + '</td><td class="reason" title="' + esc(i.reason) + '">' + wlReason(i) +
    "</td><td>" + age(i.age_s) + "</td><td>" + (i.breached ? '<span class="late">' + esc(t("wl.overdue")) + "</span>" : esc(t("wl.left", {age: age(i.sla_s - i.age_s)}))) +
    '</td><td class="assignee">' + esc(i.assignee || t("wl.unassigned")) + '</td><td class="actions">' + wlActions(i, d) + "</td></tr>";
}

async function refreshWorklist(force) {
  const table = document.getElementById("worklist-table");
  if (!force && table.contains(document.activeElement) && document.activeElement.tagName === "SELECT") return;
  const r = await api("/api/worklist?" + wlQuery());
  if (!r.ok) return;
  const d = WL.data = r.body;
  for (const k of ["open", "mine", "unassigned", "overdue"]) document.getElementById("wl-count-" + k).textContent = d.counts[k];
  table.querySelector("tbody").innerHTML = d.items.length ? d.items.map(i => wlRow(i, d)).join("") :
    '<tr><td colspan="10" class="muted">' + esc(t("wl.nothing")) + "</td></tr>";
}

async function wlPost(path, body) {
  const r = await api(path, {method: "POST", body: JSON.stringify(body)});
  const detail = r.body && (r.body.detail || r.body.message) || "";
  toast(r.ok ? t("wl.action_ok") : t("wl.action_failed", {status: r.status, detail: typeof detail === "string" ? detail : JSON.stringify(detail)}), !r.ok);
  return r;
}

async function wlAct(button) {
  const act = button.dataset.act, key = button.dataset.key;
  if (act === "claim" || act === "unassign" || act === "done") await wlPost("/api/worklist/" + act, {key: key});
  else if (act === "assign") {
    const select = document.querySelector('select[data-assign-for="' + CSS.escape(key) + '"]');
    await wlPost("/api/worklist/assign", {key: key, assignee: select.value});
  } else if (act === "case-answered" || act === "case-closed") {
    await wlPost("/api/cases/" + encodeURIComponent(button.dataset.case) + "/status", {status: act.slice(5)});
  }
  await refreshWorklist(true);
}

async function wlBulk(decision) {
  const ids = [...WL.selected];
  if (!ids.length) { toast(t("wl.none_selected"), true); return; }
  const r = await api("/api/worklist/decide", {method: "POST", body: JSON.stringify({
    order_ids: ids, decision: decision, comment: document.getElementById("wl-comment").value})});
  if (!r.ok) { toast(t("wl.action_failed", {status: r.status, detail: (r.body && JSON.stringify(r.body.detail)) || ""}), true); return; }
  document.getElementById("wl-results").innerHTML = r.body.results.map(x =>
    '<li data-result-for="' + esc(x.order_id) + '" data-status="' + esc(x.status) + '" class="' + (x.status < 300 ? "ok" : "bad") + '">' +
    esc(t("wl.result", {order: x.order_id.slice(0, 8), status: x.status, message: x.message})) + "</li>").join("");
  /* review's refusal of a decision without its comment (422), beside the comment field */
  const incomplete = r.body.results.find(x => x.status === 422);
  document.getElementById("wl-comment-err").textContent = incomplete ? t("order.comment_required") : "";
  toast(t("wl.bulk_done", {decision: t("verb." + decision), ok: r.body.accepted, bad: r.body.refused}), r.body.refused > 0);
  WL.selected.clear();
  await refreshWorklist(true);
}

async function wlCase(e) {
  e.preventDefault();
  const form = document.getElementById("case-form");
  form.querySelectorAll(".field-error").forEach(el => { el.textContent = ""; });
  const value = id => document.getElementById(id).value.trim();
  const body = {customer_id: value("case-customer"), order_id: value("case-order") || null, type: value("case-type"),
                text: value("case-text"), due_date: value("case-due") || null};
  let missing = false;
  for (const field of ["customer_id", "text"]) {
    if (!body[field]) { document.getElementById("case-err-" + field).textContent = t("wl.field_required"); missing = true; }
  }
  if (missing) return;
  const r = await api("/api/cases", {method: "POST", body: JSON.stringify(body)});
  if (r.ok) { toast(t("wl.case_saved", {id: r.body.id}), false); form.reset(); await refreshWorklist(true); return; }
  const detail = r.body && r.body.detail;
  if (Array.isArray(detail)) {
    detail.forEach(x => {
      const el = document.getElementById("case-err-" + (x.loc || []).slice(-1)[0]);
      if (el) el.textContent = t("wl.field_invalid", {detail: x.msg});
    });
  } else if (r.status === 422 && body.order_id) {
    document.getElementById("case-err-order_id").textContent = t("wl.field_invalid", {detail: detail || ""});
  } else {
    toast(t("wl.action_failed", {status: r.status, detail: detail || ""}), true);
  }
}

function initWorklists() {
  document.getElementById("wl-filters").addEventListener("change", () => refreshWorklist(true));
  const tbody = document.querySelector("#worklist-table tbody");
  tbody.addEventListener("change", e => {
    const box = e.target.closest("input[data-pick]");
    if (box) { if (box.checked) WL.selected.add(box.dataset.pick); else WL.selected.delete(box.dataset.pick); }
  });
  tbody.addEventListener("click", async e => {
    const button = e.target.closest("button[data-act]");
    if (!button) return;
    button.disabled = true;
    await wlAct(button);
  });
  const bulk = document.getElementById("wl-bulk");
  if (bulk) bulk.querySelectorAll("button[data-decision]").forEach(b => b.addEventListener("click", () => wlBulk(b.dataset.decision)));
  const caseForm = document.getElementById("case-form");
  if (caseForm) caseForm.addEventListener("submit", wlCase);
  poll(refreshWorklist, 3000);
}

if (PAGE === "worklists") initWorklists();
