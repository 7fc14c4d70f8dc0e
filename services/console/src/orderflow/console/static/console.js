/* OrderFlow console: fills the server-rendered pages from the JSON API and polls it every 2 s.
   No framework, no build; charts are CSS bars and small SVGs drawn here. Every text comes from
   the catalogue the page embeds (#i18n, the reader's language): t("message.id", {values}). */
"use strict";

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const PAGE = document.body.dataset.page;
const ROLE = document.body.dataset.role;
/* the operator's rights, as the server grants them (auth.PERMISSIONS) */
const RIGHTS = new Set((document.body.dataset.rights || "").split(" ").filter(r => r));
const MAY_DECIDE = RIGHTS.has("decide");
const MAY_DIRECT = RIGHTS.has("direct");
const MAY_REPLAY = RIGHTS.has("replay");
const POLL_MS = 2000;
const LANG = document.documentElement.lang || "en";
const I18N = JSON.parse((document.getElementById("i18n") || {}).textContent || "{}");

/* the message in the page's language; an id without an entry shows as itself */
function t(key, values) {
  const text = I18N[key];
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, (all, name) => values && values[name] !== undefined ? values[name] : all);
}
function label(prefix, code) { const key = prefix + code; return I18N[key] === undefined ? code : I18N[key]; }
function stateName(state) { return label("state.", state); }
/* a reason code's text, the code itself when the catalogue has none */
function reasonName(code) { return code ? label("reason.", code) : ""; }
function reasonList(codes) { return (codes || []).filter(c => c).map(reasonName).join(t("fmt.list_sep")); }

function esc(value) {
  return String(value === null || value === undefined ? "" : value)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

async function api(path, options) {
  const opts = Object.assign({credentials: "same-origin", headers: {}}, options || {});
  if (opts.method && opts.method !== "GET") {
    opts.headers["X-CSRF-Token"] = CSRF;
    opts.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, opts);
  if (response.status === 401) { window.location = "/login?next=" + encodeURIComponent(location.pathname); }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  return {status: response.status, ok: response.ok, body: body};
}

function toast(text, bad) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = "toast " + (bad ? "bad" : "ok");
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return t("unit.s", {n: s});
  if (s < 5400) return t("unit.min", {n: Math.round(s / 60)});
  if (s < 172800) return t("unit.h", {n: (s / 3600).toFixed(1)});
  return t("unit.d", {n: (s / 86400).toFixed(1)});
}

function since(iso) { return iso ? age((Date.now() - Date.parse(iso)) / 1000) : "–"; }
/* Dec 7, 2026 14:05 / 2026年12月7日 14:05 (CLDR's, as the server's Babel), in the browser's time zone */
const DAY_FORMAT = new Intl.DateTimeFormat(LANG, {year: "numeric", month: "short", day: "numeric"});
const TIME_FORMAT = new Intl.DateTimeFormat(LANG, {hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return DAY_FORMAT.format(d) + " " + TIME_FORMAT.format(d);
}
/* an ISO date (2026-12-07) as Dec 7, 2026 / 2026年12月7日, the date itself (no time zone shift) */
function day(iso) {
  if (!iso) return "–";
  const [y, m, d] = String(iso).slice(0, 10).split("-").map(Number);
  return DAY_FORMAT.format(new Date(y, m - 1, d));
}
function pct(rate) { return rate === null || rate === undefined ? "–" : num(rate * 100, 1) + " %"; }
function num(x, digits) {
  if (x === null || x === undefined) return "–";
  const n = digits === undefined ? 1 : digits;
  return Number(x).toLocaleString(LANG, {minimumFractionDigits: n, maximumFractionDigits: n});
}
/* ¥1,234.50 (zh-CN) / CNY 1,234.50 (en): the amount stays the API's decimal string until here */
function money(amount, currency) {
  if (amount === null || amount === undefined || amount === "") return "–";
  if (!currency) return num(amount, 2);
  try {
    return new Intl.NumberFormat(LANG, {style: "currency", currency: currency,
      currencyDisplay: LANG === "en" ? "code" : "symbol"}).format(Number(amount)).replace(/\u00a0/g, " ");
  } catch (e) { return amount + " " + currency; }
}

/* horizontal CSS bars: items = [{label, value, text, cls, testid}] */
function bars(items) {
  if (!items.length) return '<p class="muted">' + esc(t("nothing_yet")) + '</p>';
  const max = Math.max(1, ...items.map(i => Number(i.value) || 0));
  return items.map(i => {
    const width = Math.round(100 * (Number(i.value) || 0) / max);
    return '<div class="bar-row"' + (i.testid ? ' data-testid="' + esc(i.testid) + '"' : "") + '>' +
      '<span class="bar-label">' + esc(i.label) + '</span>' +
      '<span class="bar-track"><span class="bar ' + esc(i.cls || "") + '" style="width:' + width + '%"></span></span>' +
      '<span class="bar-value">' + esc(i.text !== undefined ? i.text : i.value) + '</span></div>';
  }).join("");
}

/* vertical SVG columns for a series of numbers */
function columns(values, labels, height) {
  const h = height || 80, n = Math.max(values.length, 1), w = 600, gap = 2;
  const max = Math.max(1, ...values);
  const bw = Math.max(1, (w / n) - gap);
  let svg = '<svg class="columns" viewBox="0 0 ' + w + ' ' + (h + 14) + '" preserveAspectRatio="none" role="img">';
  values.forEach((v, i) => {
    const bh = Math.round((h - 2) * v / max);
    svg += '<rect x="' + (i * (bw + gap)) + '" y="' + (h - bh) + '" width="' + bw + '" height="' + bh +
      '"><title>' + esc((labels ? labels[i] + ": " : "") + v) + '</title></rect>';
  });
  svg += '<text x="0" y="' + (h + 12) + '">' + esc(t("dash.max", {n: max})) + '</text></svg>';
  return svg;
}

function table(headers, rows) {
  if (!rows.length) return '<p class="muted">' + esc(t("none")) + '</p>';
  return '<table class="list"><thead><tr>' + headers.map(h => "<th>" + esc(t(h)) + "</th>").join("") +
    "</tr></thead><tbody>" + rows.map(r => "<tr>" + r.map(c => "<td>" + c + "</td>").join("") + "</tr>").join("") +
    "</tbody></table>";
}

function stateBadge(state) { return '<span class="state s-' + esc(state) + '" data-state="' + esc(state) + '">' + esc(stateName(state)) + "</span>"; }
function orderLink(id, label) { return id ? '<a href="/orders/' + encodeURIComponent(id) + '">' + esc(label || id.slice(0, 8)) + "</a>" : "–"; }

function poll(fn, ms) {
  const live = document.getElementById("live");
  const run = async () => {
    try { await fn(); if (live) live.className = "live on"; }
    catch (e) { if (live) live.className = "live off"; console.error(e); }
  };
  run();
  setInterval(run, ms || POLL_MS);
}

/* decision: approve, director_approve, reject or send_back (the route spells it with a dash) */
async function decide(orderId, decision, comment) {
  const r = await api("/api/orders/" + encodeURIComponent(orderId) + "/" + decision.replace("_", "-"),
                      {method: "POST", body: JSON.stringify({comment: comment || ""})});
  const message = r.body && (r.body.message || r.body.detail) || "";
  toast(t("toast.decided", {decision: t("verb." + decision), order: orderId.slice(0, 8), status: r.status, message: message}), !r.ok);
  return r;
}

/* ---------------------------------------------------------------- dashboard */
async function refreshDashboard() {
  const r = await api("/api/dashboard");
  if (!r.ok) return;
  const d = r.body;
  document.getElementById("count-orders").textContent = d.orders;
  document.getElementById("count-hour").textContent = d.throughput.reduce((a, t) => a + t.orders, 0);
  const ex = Object.values(d.exceptions);
  document.getElementById("count-exceptions").textContent = ex.reduce((a, e) => a + e.open, 0);
  document.getElementById("count-breached").textContent = ex.reduce((a, e) => a + e.breached, 0);
  document.getElementById("funnel").innerHTML = bars(Object.entries(d.funnel).map(([s, n]) =>
    ({label: stateName(s), value: n, cls: "s-" + s, testid: "funnel-" + s})));
  const minutes = [], counts = [], byMinute = {};
  d.throughput.forEach(t => { byMinute[t.minute.slice(0, 16)] = t.orders; });
  const now = new Date(d.at);
  for (let i = 59; i >= 0; i--) {
    const m = new Date(now.getTime() - i * 60000).toISOString().slice(0, 16);
    minutes.push(m.slice(11)); counts.push(byMinute[m] || 0);
  }
  document.getElementById("throughput").innerHTML = columns(counts, minutes);
  document.getElementById("exception-counts").innerHTML = bars(Object.entries(d.exceptions).map(([k, e]) =>
    ({label: label("kind.", k), value: e.open, text: e.open + (e.breached ? " (" + t("dash.late", {n: e.breached}) + ")" : ""),
      cls: e.breached ? "late" : "", testid: "exceptions-" + k})));
  document.getElementById("services").innerHTML = table(["col.service", "col.status", "col.checks"], d.services.map(s =>
    [esc(s.service), s.up ? '<span class="up">' + esc(t("dash.up")) + '</span>' : '<span class="down">' + esc(t("dash.down")) + '</span>',
     esc(Object.entries(s.checks || {}).map(([k, v]) => k + (v ? " ✓" : " ✗")).join(" ") || s.error || "")]));
  document.getElementById("topics").innerHTML = table(
    ["col.topic", "col.partitions", "col.end_offset", "col.rate_now", "col.rate_hour", "col.last_2_min"],
    d.topics.map(t => [esc(t.topic), esc(t.partitions), esc(t.end_offset), num(t.rate_now),
      num(t.rate_hour) + (t.window_s && t.window_s < 3500 ? ' <span class="muted">(' + age(t.window_s) + ")</span>" : ""),
      '<span class="spark">' + columns(t.history.length ? t.history : [0], null, 16) + "</span>"]));
  document.getElementById("groups").innerHTML = table(["col.group", "col.replicas", "col.lag", "col.per_topic"], d.groups.map(g =>
    [esc(g.group),
     g.replicas === null ? '<span class="muted" title="' + esc(g.members_error || "") + '">?</span>' :
       '<span class="' + (g.replicas === 0 ? "down" : "") + '" title="' + esc((g.members || []).join(", ")) + '">' +
       esc(g.replicas) + (g.state && g.state !== "Stable" ? ' <span class="muted">(' + esc(g.state) + ")</span>" : "") + "</span>",
     g.lag === null ? '<span class="down">' + esc(g.error || "?") + "</span>" :
      '<span class="' + (g.lag > 0 ? "lagging" : "") + '">' + esc(g.lag) + "</span>",
     esc(g.topics.filter(t => t.lag > 0).map(t => t.topic + " " + t.lag).join(", ") ||
         (g.topics.length ? t("dash.caught_up", {n: g.topics.length}) : t("dash.no_commits")))]));
  const dl = d.dlq.filter(q => q.depth > 0);
  document.getElementById("dlqs").innerHTML = dl.length ? bars(dl.map(q =>
    ({label: q.topic + ".dlq", value: q.depth, cls: "late"}))) + '<p><a href="/exceptions">' + esc(t("dash.dlq_link")) + '</a></p>'
    : '<p class="muted">' + esc(t("dash.dlq_empty")) + '</p>';
}

/* ---------------------------------------------------------------- orders */
let orderPage = 1;
function orderQuery() {
  const p = new URLSearchParams();
  [["q", "f-q"], ["state", "f-state"], ["channel", "f-channel"], ["customer", "f-customer"],
   ["external_id", "f-external"]].forEach(([k, id]) => {
    const v = document.getElementById(id).value.trim(); if (v) p.set(k, v);
  });
  p.set("page", orderPage);
  return p.toString();
}

async function refreshOrders() {
  const r = await api("/api/orders?" + orderQuery());
  if (!r.ok) return;
  const d = r.body;
  document.getElementById("order-total").textContent = t("orders.total_count", {n: d.total});
  document.getElementById("page").textContent = d.page + " / " + Math.max(1, Math.ceil(d.total / d.page_size));
  document.querySelector("#orders-table tbody").innerHTML = d.orders.map(o =>
    '<tr data-order-id="' + esc(o.order_id) + '"><td class="mono">' + orderLink(o.order_id) + "</td><td>" +
    esc(o.external_id) + "</td><td>" + esc(o.channel) + "</td><td>" + esc(o.customer_id) + " " +
    esc(o.customer_name || "") + "</td><td>" + stateBadge(o.state) +
    (o.hold_codes && o.hold_codes.length ? ' <span class="muted" title="' + esc(o.hold_codes.join(", ")) + '">' + esc(reasonList(o.hold_codes)) + "</span>" : "") +
    "</td><td>" + since(o.state_since || o.last_event_at) + '</td><td class="num money">' +
    esc(o.grand_total ? money(o.grand_total, o.currency) : "") + "</td><td>" + esc(o.priority ? label("priority.", o.priority) : "") + "</td></tr>").join("");
}

function initOrders() {
  const params = new URLSearchParams(location.search);
  ["q", "state", "channel", "customer"].forEach(k => { if (params.get(k)) document.getElementById("f-" + k).value = params.get(k); });
  document.getElementById("order-filters").addEventListener("submit", e => { e.preventDefault(); orderPage = 1; refreshOrders(); });
  document.getElementById("prev").addEventListener("click", () => { orderPage = Math.max(1, orderPage - 1); refreshOrders(); });
  document.getElementById("next").addEventListener("click", () => { orderPage += 1; refreshOrders(); });
  poll(refreshOrders);
}

/* ---------------------------------------------------------------- one order */
async function refreshOrder() {
  const id = document.body.dataset.orderId;
  const r = await api("/api/orders/" + encodeURIComponent(id));
  /* the timeline in the page's language, made by the server from the same events (read after
     the view: it holds at least the events the view does) */
  const items = r.ok ? await fetch("/orders/" + encodeURIComponent(id) + "/timeline", {credentials: "same-origin"}) : null;
  const timeline = items && items.ok ? await items.text() : null;
  if (r.status === 404) { document.getElementById("o-state").textContent = t("order.not_known"); return; }
  if (!r.ok) return;
  const o = r.body;
  const state = o.state || "submitted";
  document.getElementById("o-external").textContent = (o.channel || "") + " " + (o.external_id || "");
  const badge = document.getElementById("o-state");
  badge.textContent = stateName(state); badge.className = "state s-" + state; badge.dataset.state = state;
  const yesNo = b => b === null || b === undefined ? "–" : t(b ? "yes" : "no");
  const facts = [["fact.customer", (o.customer_id || "") + " " + (o.customer_name || "")],
    ["fact.total", money(o.grand_total, o.currency)], ["fact.priority", o.priority ? label("priority.", o.priority) : ""],
    ["fact.payment_terms", o.payment_terms], ["fact.placed", when(o.placed_at)],
    ["fact.revision", String(o.revision || 1)],
    ["fact.requested_delivery", o.requested_delivery_date && day(o.requested_delivery_date)],
    ["fact.promised", o.promised_date && day(o.promised_date)],
    ["fact.destination", o.destination], ["fact.approved_by", o.approved_by],
    ["fact.in_full_first", yesNo(o.filled_in_full_first_attempt)],
    ["fact.delivered", when(o.delivered_at)], ["fact.on_time", yesNo(o.on_time)],
    ["fact.in_state_for", since(o.state_since)]];
  document.getElementById("o-facts").innerHTML = facts.map(([k, v]) => '<dt data-fact="' + esc(k) + '">' + esc(t(k)) + "</dt><dd>" + esc(v || "–") + "</dd>").join("");
  document.getElementById("o-stages").innerHTML = bars(o.stage_times.map(s =>
    ({label: label("stage.", s.stage), value: s.seconds === null ? (Date.now() - Date.parse(s.started_at)) / 1000 : s.seconds,
      text: s.seconds === null ? t("stage.in_progress", {age: since(s.started_at)}) : age(s.seconds),
      cls: s.seconds === null ? "open" : ""})));
  const cur = o.currency;
  document.getElementById("o-lines").innerHTML = table(["col.sku", "col.qty", "col.unit_price", "col.discount", "col.amount"],
    o.lines.map(l => [esc(l.sku), esc(num(l.quantity, 0)), esc(money(l.unit_price, cur)), esc(money(l.discount, cur)), esc(money(l.amount, cur))]));
  document.getElementById("o-shipments").innerHTML = table(["col.shipment", "col.warehouse", "col.carrier", "col.tracking", "col.promised", "col.status"],
    o.shipments.map(s => [esc(s.shipment_id), esc(s.warehouse_id), esc((s.carrier || "") + " " + (s.service || "")),
      '<span class="mono">' + esc(s.tracking_number) + "</span>", esc(s.promised_date ? day(s.promised_date) : ""),
      esc(label("shipment.", s.status)) + (s.delay_reason ? ": " + esc(reasonName(s.delay_reason)) : "") +
      (s.exception_code ? ": " + esc(reasonName(s.exception_code)) : "")]));
  const problems = o.holds.map(h => [esc(t("problem.hold")), esc(reasonName(h.code)), esc(h.message), when(h.at)])
    .concat(o.rejections.map(x => [esc(t("problem.rejection", {stage: label("stage.", x.stage)})), esc(reasonName(x.code)),
      esc(x.message + (x.comment ? " — " + x.comment : "")), when(x.at)]));
  document.getElementById("o-problems").innerHTML = table(["col.kind", "col.reason", "col.detail", "col.at"], problems);
  document.getElementById("o-notifications").innerHTML = table(["col.for", "col.channel", "col.status", "col.at"],
    o.notifications.map(n => [esc(n.source_event_type), esc(n.channel), esc(n.status), when(n.at)]));
  if (timeline !== null) {
    const list = document.getElementById("timeline");
    list.innerHTML = timeline;
    list.querySelectorAll("time[datetime]").forEach(el => { el.textContent = when(el.getAttribute("datetime")); });
  }
  const actions = document.getElementById("o-actions");
  actions.hidden = !(state === "held" && MAY_DECIDE);
  document.getElementById("o-hold-reasons").textContent = reasonList(o.hold_codes);
  /* a reviewer approved it: only a director's approval passes it now */
  const hold = (o.hold_codes || []).includes("director_approval") ?
    o.holds.filter(h => h.code === "director_approval").slice(-1)[0] : null;
  const director = state === "held" && !!hold;
  const awaiting = document.getElementById("o-awaiting-director");
  awaiting.hidden = !director;
  awaiting.textContent = director ? t("order.awaiting_director", {by: (hold.figures || {}).approved_by || ""}) : "";
  document.getElementById("o-approve").hidden = director;
  document.getElementById("o-director_approve").hidden = !(director && MAY_DIRECT);
  const rework = document.getElementById("o-rework");
  rework.hidden = !(state === "rejected" && o.rework);
  if (o.rework) {
    document.getElementById("o-rework-text").textContent = t("order.sent_back", {by: o.rework.decided_by || "", comment: o.rework.comment || ""});
    document.getElementById("o-rework-worklist").textContent = o.entered_by
      ? t("order.rework_back_to", {by: o.entered_by}) : t("order.rework_worklist", {channel: o.channel || ""});
  }
}

function initOrder() {
  const id = document.body.dataset.orderId;
  ["approve", "director_approve", "send_back", "reject"].forEach(decision => {
    document.getElementById("o-" + decision).addEventListener("click", async () => {
      const r = await decide(id, decision, document.getElementById("o-comment").value);
      /* review refuses a rejection or send-back without a comment (422): said beside the field */
      document.getElementById("o-comment-err").textContent =
        r.status === 422 ? t("order.comment_required") : "";
      refreshOrder();
    });
  });
  poll(refreshOrder);
}

/* ---------------------------------------------------------------- exception queue */
async function refreshExceptions() {
  const p = new URLSearchParams();
  const kind = document.getElementById("x-kind").value, reason = document.getElementById("x-reason").value.trim();
  if (kind) p.set("kind", kind);
  if (reason) p.set("reason", reason);
  const r = await api("/api/exceptions?" + p.toString());
  if (!r.ok) return;
  const d = r.body;
  document.getElementById("exception-kpis").innerHTML = Object.entries(d.counts).map(([k, c]) =>
    '<div class="kpi' + (c.breached ? " late" : "") + '" data-testid="x-count-' + esc(k) + '"><span class="label">' + esc(label("kind.", k)) +
    '</span><span class="value">' + esc(c.open) + "</span>" + (c.breached ? '<span class="label">' + esc(t("x.past_sla", {n: c.breached})) + "</span>" : "") + "</div>").join("");
  document.querySelector("#exceptions-table tbody").innerHTML = d.items.map(i => {
    let actions = "";
    const button = (act, cls, text) => '<button type="button" class="' + cls + '" data-act="' + act + '" data-order="' + esc(i.order_id) + '">' + esc(t(text)) + '</button> ';
    if (i.actions.includes("approve") && MAY_DECIDE) actions += button("approve", "ok", "order.approve");
    if (i.actions.includes("director_approve")) {
      actions += MAY_DIRECT ? button("director_approve", "ok", "order.director_approve") :
        '<span class="muted" data-awaiting="director">' + esc(t("x.awaiting_director")) + '</span> ';
    }
    if (i.actions.includes("reject") && MAY_DECIDE) {
      actions += button("send_back", "", "order.send_back") + button("reject", "bad", "order.reject");
    }
    if (i.actions.includes("cancel") && MAY_DECIDE) {
      actions += ' <button type="button" data-act="cancel" data-order="' + esc(i.order_id) + '">' + esc(t("x.cancel_order")) + '</button>';
    }
    if (i.kind === "dlq") {
      actions += '<a href="' + deadLetterPath("/dead-letters/", i.details) + '">' + esc(t("x.inspect")) + '</a> ';
    }
    if (i.actions.includes("replay") && MAY_REPLAY) {
      actions += '<button type="button" data-act="replay" data-topic="' + esc(i.details.topic) + '">' + esc(t("x.replay_dlq")) + '</button>';
    }
    const target = i.order_id ? orderLink(i.order_id, (i.external_id || i.order_id.slice(0, 8))) :
      i.kind === "outbox" ? esc(t("x.outbox_target", {service: i.details.service, id: i.details.outbox_id, topic: i.details.topic}) + (i.details.key ? " (" + i.details.key + ")" : "")) :
      esc(i.details.topic + " @" + i.details.offset);
    return '<tr class="' + (i.breached ? "breached" : "") + '" data-kind="' + esc(i.kind) + '" data-order-id="' + esc(i.order_id || "") + '">' +
      "<td>" + esc(label("kind.", i.kind)) + "</td><td>" + target + "</td><td>" + esc(i.customer_id || "") + '</td><td class="reason" title="' +
      esc(i.reason) + '">' + esc(exceptionReason(i)) +
      "</td><td>" + age(i.age_s) + "</td><td>" + (i.breached ? '<span class="late">' + esc(t("x.breached")) + '</span>' : t("x.left", {age: age(i.sla_s - i.age_s)})) +
      "</td><td>" + actions + "</td></tr>";
  }).join("");
}

/* an exception's reason from its codes (the API's reason is English text: the cell's title) */
function exceptionReason(i) {
  if (i.kind === "backordered") {
    return i.reason_codes.length ? t("x.backordered", {skus: i.reason_codes.join(", ")}) : t("x.waiting_for_stock");
  }
  if (i.kind === "outbox") {
    return t("x.outbox", {service: i.details.service, topic: i.details.topic}) + ": " + reasonList(i.reason_codes);
  }
  return reasonList(i.reason_codes) || label("kind.", i.kind);
}

function initExceptions() {
  document.getElementById("exception-filters").addEventListener("change", refreshExceptions);
  document.getElementById("exception-filters").addEventListener("submit", e => { e.preventDefault(); refreshExceptions(); });
  document.querySelector("#exceptions-table tbody").addEventListener("click", async e => {
    const button = e.target.closest("button[data-act]");
    if (!button) return;
    button.disabled = true;
    if (button.dataset.act === "cancel") {
      const reason = document.getElementById("x-comment").value.trim() || t("x.cancel_reason");
      const r = await api("/api/orders/" + encodeURIComponent(button.dataset.order) + "/cancel",
                          {method: "POST", body: JSON.stringify({reason: reason})});
      toast(r.ok ? t("x.cancel_requested") : t("x.cancel_failed", {status: r.status}), !r.ok);
    } else if (button.dataset.act === "replay") {
      await replayWholeDlq(button.dataset.topic);
    } else {
      await decide(button.dataset.order, button.dataset.act, document.getElementById("x-comment").value);
    }
    refreshExceptions();
  });
  poll(refreshExceptions);
}

/* ---------------------------------------------------------------- dead letters */
function deadLetterPath(prefix, d) {
  return prefix + encodeURIComponent(d.topic) + "/" + encodeURIComponent(d.partition || 0) + "/" + encodeURIComponent(d.offset);
}

/* a whole DLQ: ask how many it would replay, confirm that number, send it (the API refuses
   when the DLQ holds another number by then: a stale confirmation replays nothing) */
async function replayWholeDlq(topic) {
  const path = "/api/dlq/" + encodeURIComponent(topic) + "/replay";
  const preview = await api(path);
  if (!preview.ok) { toast(t("dl.failed", {detail: (preview.body && preview.body.detail) || preview.status}), true); return; }
  const n = preview.body.pending;
  if (n === 0) { toast(t("dl.nothing", {topic: topic}), false); return; }
  if (!window.confirm(t("dl.confirm_all", {n: n, topic: topic}))) return;
  const r = await api(path, {method: "POST", body: JSON.stringify({expected: n})});
  toast(r.ok ? t("dl.replayed_n", {n: r.body.replayed, topic: topic}) :
        t("dl.refused", {detail: (r.body && r.body.detail) || r.status}), !r.ok);
}

async function refreshDeadLetter() {
  const el = document.getElementById("dl");
  const d = el.dataset;
  const r = await api(deadLetterPath("/api/dlq/", d));
  if (!r.ok) {
    document.getElementById("dl-facts").innerHTML = "<dt>" + esc(t("dl.error")) + "</dt><dd>" + esc((r.body && r.body.detail) || r.status) + "</dd>";
    return;
  }
  const x = r.body;
  const facts = [["dl.reason", reasonName(x.reason)], ["dl.error", x.error], ["dl.service", x.service], ["dl.event_type", x.event_type],
                 ["dl.event_id", x.event_id], ["dl.key", x.key], ["dl.at", when(x.at)]];
  document.getElementById("dl-facts").innerHTML = facts.map(([k, v]) => "<dt>" + esc(t(k)) + "</dt><dd>" + esc(v || "–") + "</dd>").join("");
  document.getElementById("dl-headers").innerHTML = table(["col.header", "col.value"],
    Object.entries(x.headers).map(([k, v]) => [esc(k), '<span class="mono">' + esc(v) + "</span>"]));
  document.getElementById("dl-size").textContent = t(x.payload_truncated ? "dl.size_truncated" : "dl.size", {n: num(x.size, 0)});
  document.getElementById("dl-payload").textContent = x.payload;
  document.getElementById("dl-actions").hidden = !MAY_REPLAY;
  document.getElementById("dl-replayed").textContent = x.replayed ?
    t("dl.replayed_by", {by: x.replayed.by, at: when(x.replayed.at)}) : t("dl.not_replayed");
  document.getElementById("dl-replay").disabled = !!x.replayed;
}

function initDeadLetter() {
  const d = document.getElementById("dl").dataset;
  document.getElementById("dl-replay").addEventListener("click", async () => {
    if (!window.confirm(t("dl.confirm_one", {topic: d.topic}))) return;
    const r = await api(deadLetterPath("/api/dlq/", d) + "/replay", {method: "POST", body: "{}"});
    toast(r.ok ? t("dl.replayed_onto", {topic: d.topic}) : t("dl.refused", {detail: (r.body && r.body.detail) || r.status}), !r.ok);
    refreshDeadLetter();
  });
  refreshDeadLetter();
}

/* ---------------------------------------------------------------- reports */
function reportQuery() {
  const p = new URLSearchParams();
  const f = document.getElementById("r-from").value, t = document.getElementById("r-to").value;
  if (f) p.set("from", f);
  if (t) p.set("to", t);
  return p.toString();
}

async function refreshReports() {
  const q = reportQuery();
  document.getElementById("export-csv").href = "/api/reports/summary.csv?" + q;
  document.getElementById("export-xlsx").href = "/api/reports/summary.xlsx?" + q;
  const r = await api("/api/reports/summary?" + q);
  if (!r.ok) { toast(t("r.failed", {detail: r.body && r.body.detail}), true); return; }
  const s = r.body;
  const kpi = (key, rate, id) => '<div class="kpi" data-testid="' + id + '"><span class="label">' + esc(t(key)) +
    '</span><span class="value">' + pct(rate.rate) + '</span><span class="label">' + esc(rate.numerator) + " / " + esc(rate.denominator) + "</span></div>";
  document.getElementById("report-kpis").innerHTML =
    '<div class="kpi"><span class="label">' + esc(t("r.orders")) + '</span><span class="value" id="r-orders">' + esc(s.orders) + "</span></div>" +
    kpi("r.fill_orders", s.fill_rate_orders, "fill-orders") + kpi("r.fill_lines", s.fill_rate_lines, "fill-lines") +
    kpi("r.fill_units", s.fill_rate_units, "fill-units") + kpi("r.ot_shipments", s.on_time_shipments, "ot-shipments") +
    kpi("r.ot_orders", s.on_time_orders, "ot-orders") + kpi("r.otif", s.on_time_in_full, "otif");
  document.getElementById("r-cycle").innerHTML = s.cycle_times.filter(c => c.count).map(c =>
    bars([{label: label("stage.", c.stage) + " p50", value: c.p50_s, text: age(c.p50_s)},
          {label: label("stage.", c.stage) + " p95", value: c.p95_s, text: age(c.p95_s), cls: "p95"}])).join("") ||
    '<p class="muted">' + esc(t("nothing_yet")) + '</p>';
  const days = {};
  s.volumes.forEach(v => { days[v.day] = (days[v.day] || 0) + v.orders; });
  document.getElementById("r-volumes").innerHTML = bars(Object.entries(days).map(([d, n]) => ({label: day(d), value: n}))) +
    table(["r.col_day", "r.col_channel", "r.col_orders", "r.col_amount"], s.volumes.map(v =>
      [esc(day(v.day)), esc(v.channel), esc(num(v.orders, 0)), esc(money(v.amount, v.currency))]));
  document.getElementById("r-customers").innerHTML = bars(s.top_customers.map(c =>
    ({label: c.key + " " + c.name, value: Number(c.amount), text: money(c.amount, c.currency)})));
  document.getElementById("r-skus").innerHTML = bars(s.top_skus.map(c =>
    ({label: c.key + " " + (c.name || ""), value: Number(c.amount), text: money(c.amount, c.currency) + " · " + t("r.units", {n: num(c.quantity, 0)})})));
  document.getElementById("r-holds").innerHTML = bars(s.holds_by_reason.map(h => ({label: reasonName(h.code), value: h.orders})));
  document.getElementById("r-rejections").innerHTML = bars(s.rejections_by_reason.map(h =>
    ({label: reasonName(h.code) + " (" + label("stage.", h.stage) + ")", value: h.orders, cls: "late"})));
}

function initReports() {
  document.getElementById("report-filters").addEventListener("submit", e => { e.preventDefault(); refreshReports(); });
  poll(refreshReports, 10000);
}

if (PAGE === "dashboard") poll(refreshDashboard);
else if (PAGE === "orders") initOrders();
else if (PAGE === "order") initOrder();
else if (PAGE === "exceptions") initExceptions();
else if (PAGE === "reports") initReports();
else if (PAGE === "dead_letter") initDeadLetter();
