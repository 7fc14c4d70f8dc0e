/* The order desk (desk.html, desk_import.html), after console.js (api, t, esc, money, toast).
   Intake decides every figure and every refusal: the totals come from its dry run
   (/api/desk/check, debounced), its reasons are shown beside the fields they name.
   Keys: Enter on a customer or SKU search takes the highlighted result (arrows move it),
   Enter in a quantity goes back to the SKU search, Ctrl+Enter submits. */
"use strict";

const DESK = {customer: null, externalId: "", revision: 1, lines: [], timer: null, seq: 0,
              currency: "CNY", busy: false};
const CHECK_DELAY_MS = 400;

function el(id) { return document.getElementById(id); }

/* --- search lists: arrows move the highlight, Enter takes it ------------------------------- */
function showResults(list, items, render, take) {
  list.innerHTML = items.map((item, i) =>
    '<li role="option" data-i="' + i + '" class="' + (i === 0 ? "sel" : "") + '">' + render(item) + "</li>").join("");
  list._items = items;
  list._take = take;
  list.querySelectorAll("li").forEach(li => li.addEventListener("click", () => take(items[Number(li.dataset.i)])));
}
function moveSelection(list, step) {
  const lis = Array.from(list.querySelectorAll("li"));
  if (!lis.length) return;
  let i = lis.findIndex(li => li.classList.contains("sel"));
  lis.forEach(li => li.classList.remove("sel"));
  i = Math.max(0, Math.min(lis.length - 1, i + step));
  lis[i].classList.add("sel");
  lis[i].scrollIntoView({block: "nearest"});
}
function selected(list) {
  const li = list.querySelector("li.sel");
  return li && list._items ? list._items[Number(li.dataset.i)] : null;
}
function searchBox(input, list, lookup, render, take, onEmptyEnter) {
  let timer = null;
  let lastQuery = "";
  const run = async () => {
    const q = input.value.trim();
    lastQuery = q;
    if (!q) { list.innerHTML = ""; list._items = []; return; }
    const items = await lookup(q);
    if (q === lastQuery) showResults(list, items, render, take);
  };
  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 150); });
  input.addEventListener("keydown", async (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") { e.preventDefault(); moveSelection(list, e.key === "ArrowDown" ? 1 : -1); }
    else if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      clearTimeout(timer);
      if (input.value.trim() !== lastQuery || !list._items) await run();
      const item = selected(list);
      if (item) take(item);
      else if (onEmptyEnter && input.value.trim()) onEmptyEnter(input.value.trim());
    } else if (e.key === "Escape") { list.innerHTML = ""; list._items = []; }
  });
}

/* --- customer -------------------------------------------------------------------------------- */
async function findCustomers(q) {
  const r = await api("/api/desk/customers?q=" + encodeURIComponent(q));
  return r.ok ? r.body.customers : [];
}
function setValue(id, value, onlyIfEmpty) {
  const input = el(id);
  if (value === null || value === undefined) return;
  if (onlyIfEmpty && input.value) return;
  input.value = value;
}
async function takeCustomer(c, keepAddress) {
  el("d-customer-results").innerHTML = "";
  el("d-customer-results")._items = [];
  el("d-customer-q").value = c.customer_id;
  el("d-customer-id").textContent = c.customer_id;
  el("d-customer-name").textContent = c.name || "";
  el("d-customer-contact").textContent = [c.phone, c.email].filter(x => x).join(" · ");
  DESK.customer = {id: c.customer_id, name: c.name || "", email: c.email || null, phone: c.phone || null};
  DESK.currency = c.currency || DESK.currency;
  /* the customer's delivery address (master data) fills the address, which stays editable; a
     stored order opened as its next revision keeps its own destination and takes the rest of
     the address only when it goes to that province and city */
  const home = c.delivery_address;
  const useHome = Boolean(home) && (!keepAddress ||
    (el("d-province").value.trim() === home.province && el("d-city").value.trim() === home.city));
  if (useHome) {
    setValue("d-province", home.province, keepAddress);
    setValue("d-city", home.city, keepAddress);
    setValue("d-district", home.district, keepAddress);
    setValue("d-line1", home.line1, keepAddress);
    setValue("d-postal", home.postal_code, keepAddress);
  }
  setValue("d-recipient", (useHome && home.name) || c.name, keepAddress);
  setValue("d-phone", (useHome && home.phone) || c.phone, keepAddress);
  setValue("d-terms", c.payment_terms, keepAddress);
  if (!keepAddress) el("d-province").focus();
  const r = await api("/api/desk/customers/" + encodeURIComponent(c.customer_id));
  if (r.ok) {
    if (r.body.destination) {
      setValue("d-province", r.body.destination.province, true);
      setValue("d-city", r.body.destination.city, true);
    }
    showCredit(r.body.customer, r.body.credit);
  }
  scheduleCheck();
}
function showCredit(customer, credit) {
  const box = el("d-credit");
  if (!credit || credit.status !== 200) {
    box.innerHTML = '<p class="muted">' + esc(t("desk.credit_unknown")) + "</p>";
    return;
  }
  const cur = credit.currency || customer.currency;
  const over = Number(credit.exposure) > Number(credit.credit_limit);
  box.innerHTML = '<dl class="facts">' +
    "<dt>" + esc(t("desk.credit_limit")) + "</dt><dd>" + esc(money(credit.credit_limit, cur)) + "</dd>" +
    "<dt>" + esc(t("desk.exposure")) + '</dt><dd id="d-exposure" class="' + (over ? "over" : "") + '">' + esc(money(credit.exposure, cur)) + "</dd>" +
    "<dt>" + esc(t("desk.overdue")) + '</dt><dd id="d-overdue" class="' + (Number(credit.overdue_amount) > 0 ? "over" : "") + '">' +
      esc(money(credit.overdue_amount, cur)) + (Number(credit.overdue_days) > 0 ? " · " + esc(t("desk.overdue_days", {n: credit.overdue_days})) : "") + "</dd>" +
    (credit.blocked ? '<dt></dt><dd class="over">' + esc(t("desk.blocked")) + "</dd>" : "") + "</dl>";
}

/* --- lines ----------------------------------------------------------------------------------- */
async function findProducts(q) {
  const r = await api("/api/desk/products?q=" + encodeURIComponent(q));
  return r.ok ? r.body.products : [];
}
function addLine(p) {
  const list = el("d-sku-results");
  list.innerHTML = ""; list._items = [];
  el("d-sku-q").value = "";
  const existing = DESK.lines.findIndex(l => l.sku === p.sku);
  if (existing >= 0) { focusQuantity(existing); return; }
  DESK.lines.push({sku: p.sku, name: p.name || "", spec: p.spec || "", quantity: "1",
                   unit_price: p.unit_price || "", stock: null});
  renderLines();
  focusQuantity(DESK.lines.length - 1);
  loadStock(p.sku);
  scheduleCheck();
}
function focusQuantity(i) {
  const input = document.querySelector('#d-lines input[data-qty="' + i + '"]');
  if (input) { input.focus(); input.select(); }
}
async function loadStock(sku) {
  const r = await api("/api/desk/stock/" + encodeURIComponent(sku));
  const line = DESK.lines.find(l => l.sku === sku);
  if (!line) return;
  line.stock = r.ok && r.body.status === 200 ? r.body : {warehouses: [], available: null};
  const cell = document.querySelector('#d-lines td[data-stock="' + CSS.escape(sku) + '"]');
  if (cell) cell.innerHTML = stockText(line.stock);
}
function stockText(stock) {
  if (!stock) return "…";
  if (stock.available === null || stock.available === undefined) return "–";
  const per = (stock.warehouses || []).map(w => esc(w.warehouse_id) + " " + esc(w.available)).join(", ");
  return "<strong>" + esc(stock.available) + "</strong>" + (per ? ' <span class="muted">(' + per + ")</span>" : "");
}
function renderLines() {
  const body = document.querySelector("#d-lines tbody");
  body.innerHTML = DESK.lines.map((l, i) =>
    '<tr data-sku="' + esc(l.sku) + '">' +
    '<td class="mono">' + esc(l.sku) + '<span class="field-error" data-field="lines.' + i + '.sku"></span></td>' +
    "<td>" + esc(l.name) + ' <span class="muted">' + esc(l.spec) + "</span></td>" +
    '<td data-stock="' + esc(l.sku) + '">' + stockText(l.stock) + "</td>" +
    '<td><input data-qty="' + i + '" value="' + esc(l.quantity) + '" inputmode="numeric"><span class="field-error" data-field="lines.' + i + '.quantity"></span></td>' +
    '<td><input data-price="' + i + '" value="' + esc(l.unit_price) + '"><span class="field-error" data-field="lines.' + i + '.unit_price"></span></td>' +
    '<td data-amount="' + i + '">–</td>' +
    '<td><button type="button" tabindex="-1" data-remove="' + i + '">✕</button></td></tr>').join("");
  body.querySelectorAll("input[data-qty]").forEach(input => {
    input.addEventListener("input", () => { DESK.lines[Number(input.dataset.qty)].quantity = input.value; scheduleCheck(); });
    input.addEventListener("keydown", e => {
      if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) { e.preventDefault(); el("d-sku-q").focus(); }
    });
  });
  body.querySelectorAll("input[data-price]").forEach(input => {
    input.addEventListener("input", () => { DESK.lines[Number(input.dataset.price)].unit_price = input.value; scheduleCheck(); });
  });
  body.querySelectorAll("button[data-remove]").forEach(button => button.addEventListener("click", () => {
    DESK.lines.splice(Number(button.dataset.remove), 1);
    renderLines();
    scheduleCheck();
  }));
}

/* --- the order, as the desk posts it ---------------------------------------------------------- */
function typed(value) {
  /* a whole number as a number; anything else as typed, for intake to answer */
  return /^\s*\d+\s*$/.test(value) ? Number(value) : value;
}
function formOrder() {
  const v = id => el(id).value.trim();
  return {
    external_id: DESK.externalId,
    revision: DESK.revision,
    customer: DESK.customer,
    currency: DESK.currency,
    lines: DESK.lines.map(l => ({sku: l.sku, quantity: typed(l.quantity), unit_price: l.unit_price.trim()})),
    shipping_address: {name: v("d-recipient"), phone: v("d-phone"), province: v("d-province"),
                       city: v("d-city"), district: v("d-district"), line1: v("d-line1"),
                       postal_code: v("d-postal")},
    requested_delivery_date: v("d-requested") || null,
    priority: el("d-rush").checked ? "rush" : "normal",
    payment_terms: v("d-terms"),
    shipping_fee: v("d-shipping-fee") || "0.00",
    notes: el("d-notes").value,
  };
}
function clearReasons() {
  document.querySelectorAll("#desk-form .field-error").forEach(s => { s.textContent = ""; });
  el("d-errors").innerHTML = "";
}
/* each reason beside its field (the nearest field shown: lines.0.quantity, else lines.0, else
   lines), the rest in the list under the totals */
function showReasons(reasons) {
  clearReasons();
  const rest = [];
  (reasons || []).forEach(r => {
    const text = reasonName(r.code) + (r.message ? " — " + r.message : "");
    let field = r.field || "";
    let target = null;
    while (field && !target) {
      target = document.querySelector('#desk-form .field-error[data-field="' + CSS.escape(field) + '"]');
      if (!target) field = field.includes(".") ? field.slice(0, field.lastIndexOf(".")) : "";
    }
    if (target) target.textContent = (target.textContent ? target.textContent + "; " : "") + text;
    else rest.push((r.field ? r.field + ": " : "") + text);
  });
  el("d-errors").innerHTML = rest.map(x => "<li>" + esc(x) + "</li>").join("");
}
function showTotals(answer) {
  const totals = answer && answer.totals;
  const cur = DESK.currency;
  ["subtotal", "discount", "tax", "shipping"].forEach(k => {
    el("d-" + k).textContent = totals ? money(totals[k], cur) : "–";
  });
  el("d-grand").textContent = totals ? money(totals.grand_total, cur) : "–";
  DESK.lines.forEach((l, i) => {
    const cell = document.querySelector('#d-lines td[data-amount="' + i + '"]');
    if (cell) cell.textContent = totals && answer.line_amounts ? money(answer.line_amounts[i], cur) : "–";
  });
}
function adoptExternalId(answer) {
  if (!DESK.externalId && answer && answer.external_id) {
    DESK.externalId = answer.external_id;
    el("d-external").textContent = DESK.externalId;
  }
}
function scheduleCheck() {
  clearTimeout(DESK.timer);
  DESK.timer = setTimeout(check, CHECK_DELAY_MS);
}
async function check() {
  if (!DESK.customer || !DESK.lines.length) return;
  const seq = ++DESK.seq;
  el("d-check-status").textContent = t("desk.checking");
  const r = await api("/api/desk/check", {method: "POST", body: JSON.stringify({order: formOrder()})});
  if (seq !== DESK.seq) return;  /* a later check is under way */
  adoptExternalId(r.body);
  if (r.status === 200 && r.body && r.body.totals) {
    clearReasons();
    showTotals(r.body);
    el("d-check-status").textContent = t("desk.valid");
  } else if (r.status === 200 && r.body && r.body.duplicate) {
    el("d-check-status").textContent = t("desk.duplicate");
  } else if (r.status === 422 && r.body && r.body.reasons) {
    showTotals(null);
    showReasons(r.body.reasons);
    el("d-check-status").textContent = t("desk.check_refused");
  } else {
    el("d-check-status").textContent = (r.body && (r.body.message || r.body.error)) || t("desk.check_failed");
  }
}
async function submitOrder() {
  if (DESK.busy) return;
  if (!DESK.customer) { showReasons([{code: "missing_field", field: "customer", message: t("desk.choose_customer")}]); el("d-customer-q").focus(); return; }
  if (!DESK.lines.length) { showReasons([{code: "missing_field", field: "lines", message: t("desk.add_line")}]); el("d-sku-q").focus(); return; }
  DESK.busy = true;
  clearTimeout(DESK.timer);
  DESK.seq++;
  el("d-submit").disabled = true;
  el("d-check-status").textContent = t("desk.submitting");
  try {
    const r = await api("/api/desk/orders", {method: "POST", body: JSON.stringify({order: formOrder()})});
    adoptExternalId(r.body);
    if ((r.status === 202 || r.status === 200) && r.body && r.body.order_id) {
      toast(t("desk.accepted", {id: r.body.external_id}));
      window.location = "/orders/" + encodeURIComponent(r.body.order_id);
      return;
    }
    if (r.body && r.body.reasons) showReasons(r.body.reasons);
    el("d-check-status").textContent = t("desk.refused_status", {status: r.status});
    toast((r.body && (r.body.message || r.body.error)) || t("desk.refused_status", {status: r.status}), true);
  } finally {
    DESK.busy = false;
    el("d-submit").disabled = false;
  }
}

/* --- a stored order as a new revision ---------------------------------------------------------- */
async function prefillFrom(orderId) {
  const r = await api("/api/desk/prefill/" + encodeURIComponent(orderId));
  if (!r.ok) { toast((r.body && r.body.message) || t("desk.no_prefill"), true); return; }
  const o = r.body.order;
  DESK.externalId = o.external_id || "";
  DESK.revision = o.revision || 1;
  DESK.currency = o.currency || DESK.currency;
  el("d-external").textContent = DESK.externalId;
  el("d-revision-label").textContent = t("desk.revision", {n: DESK.revision});
  const a = o.shipping_address || {};
  setValue("d-province", a.province);
  setValue("d-city", a.city);
  setValue("d-terms", o.payment_terms);
  setValue("d-requested", o.requested_delivery_date);
  setValue("d-shipping-fee", o.shipping_fee);
  el("d-notes").value = o.notes || "";
  el("d-rush").checked = o.priority === "rush";
  DESK.lines = (o.lines || []).map(l => ({sku: l.sku, name: "", spec: "", quantity: String(l.quantity),
                                          unit_price: l.unit_price, stock: null}));
  renderLines();
  DESK.lines.forEach(l => loadStock(l.sku));
  const c = r.body.customer || {customer_id: (o.customer || {}).id, name: (o.customer || {}).name};
  if (c.customer_id) await takeCustomer(c, true);
  el("d-line1").focus();
}

function initDesk() {
  searchBox(el("d-customer-q"), el("d-customer-results"), findCustomers,
            c => '<span class="mono">' + esc(c.customer_id) + "</span> " + esc(c.name) + ' <span class="muted">' + esc(c.phone || "") + (c.blocked ? " · " + esc(t("desk.blocked")) : "") + "</span>",
            c => takeCustomer(c, false));
  searchBox(el("d-sku-q"), el("d-sku-results"), findProducts,
            p => '<span class="mono">' + esc(p.sku) + "</span> " + esc(p.name) + ' <span class="muted">' + esc(p.spec || "") + "</span> " + esc(money(p.unit_price, p.currency)),
            addLine,
            sku => addLine({sku: sku, name: t("desk.not_in_catalogue"), unit_price: ""}));
  document.querySelectorAll("#desk-form [data-path]").forEach(input => input.addEventListener("input", scheduleCheck));
  el("d-rush").addEventListener("change", scheduleCheck);
  el("desk-form").addEventListener("submit", e => { e.preventDefault(); submitOrder(); });
  document.addEventListener("keydown", e => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submitOrder(); }
    /* a plain Enter in a field never submits (the searches and quantities handle their own) */
    else if (e.key === "Enter" && e.target.tagName === "INPUT" && e.target.type !== "submit") e.preventDefault();
  });
  const from = el("desk-form").dataset.prefillFrom;
  if (from) prefillFrom(from);
}

/* --- paste and import ----------------------------------------------------------------------- */
const IMPORT = {orders: []};
/* a reason of an imported order, at the sheet row it concerns: an order's lines are its rows in
   order, so "lines.1.quantity" is the second row's quantity */
function importReason(o, r) {
  const line = /^lines[.\[](\d+)\]?\.?(.*)$/.exec(r.field || "");
  const row = line ? (o.rows || [])[Number(line[1])] : undefined;
  const field = row === undefined ? r.field : line[2];
  const text = (field ? field + ": " : "") + reasonName(r.code) + (r.message ? " — " + r.message : "");
  return row === undefined ? "<li>" + esc(text) + "</li>"
    : '<li data-row="' + esc(row) + '"><strong>' + esc(t("desk.import_row", {row: row})) + "</strong> " + esc(text) + "</li>";
}
function showImport() {
  const body = document.querySelector("#i-orders tbody");
  body.innerHTML = IMPORT.orders.map((o, i) => {
    const a = o.answer || {};
    const ok = o.status === 200 && a.totals;
    const result = o.done ? esc(o.done)
      : ok ? esc(t("desk.valid"))
      : a.duplicate ? esc(t("desk.duplicate"))
      : "<ul>" + (a.reasons || [{code: "", message: a.message || a.error || String(o.status)}]).map(r => importReason(o, r)).join("") + "</ul>";
    return '<tr data-order-number="' + esc(o.order_number) + '" class="' + (o.done ? "valid" : ok ? "valid" : "invalid") + '">' +
      '<td class="mono">' + esc(o.order_number) + "</td><td>" + esc((o.rows || []).join(", ")) + "</td>" +
      "<td>" + (ok ? esc(money(a.totals.grand_total, (a.order || {}).currency)) : "–") + "</td><td>" + result + "</td></tr>";
  }).join("");
  const valid = IMPORT.orders.filter(o => !o.done && o.status === 200 && o.answer && o.answer.totals);
  el("i-submit").disabled = valid.length === 0;
  el("i-summary").textContent = t("desk.import_summary", {valid: valid.length, total: IMPORT.orders.filter(o => !o.done).length});
}
async function checkImport(request) {
  el("i-error").textContent = "";
  const r = await request();
  if (!r.ok) { el("i-error").textContent = (r.body && (r.body.message || r.body.detail)) || String(r.status); return; }
  IMPORT.orders = r.body.orders;
  showImport();
}
async function submitImport() {
  const valid = IMPORT.orders.filter(o => !o.done && o.status === 200 && o.answer && o.answer.totals);
  if (!valid.length) return;
  el("i-submit").disabled = true;
  const r = await api("/api/desk/import/submit", {method: "POST", body: JSON.stringify({orders: valid.map(o => o.payload)})});
  if (!r.ok) { el("i-error").textContent = (r.body && (r.body.message || r.body.detail)) || String(r.status); showImport(); return; }
  r.body.results.forEach((res, i) => {
    const o = valid[i];
    if (res.status === 202 || res.status === 200) o.done = t("desk.posted", {id: res.answer.order_id || ""});
    else { o.status = res.status; o.answer = res.answer; }
  });
  toast(t("desk.import_posted", {n: r.body.accepted}));
  showImport();
}
function initDeskImport() {
  el("i-check-text").addEventListener("click", () => checkImport(() =>
    api("/api/desk/import", {method: "POST", body: JSON.stringify({text: el("i-text").value})})));
  el("i-upload").addEventListener("submit", e => {
    e.preventDefault();
    const data = new FormData();
    if (el("i-file").files[0]) data.append("file", el("i-file").files[0]);
    checkImport(async () => {
      const response = await fetch("/api/desk/import", {method: "POST", credentials: "same-origin",
                                                        headers: {"X-CSRF-Token": CSRF}, body: data});
      let body = null;
      try { body = await response.json(); } catch (err) { body = null; }
      return {status: response.status, ok: response.ok, body: body};
    });
  });
  el("i-submit").addEventListener("click", submitImport);
}

if (PAGE === "desk") initDesk();
else if (PAGE === "desk_import") initDeskImport();
