/* OrderFlow console: fills the server-rendered pages from the JSON API and polls it every 2 s.
   No framework, no build; charts are CSS bars and small SVGs drawn here. */
"use strict";

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const PAGE = document.body.dataset.page;
const ROLE = document.body.dataset.role;
const MAY_DECIDE = ROLE === "reviewer" || ROLE === "admin";
const MAY_REPLAY = ROLE === "admin";
const POLL_MS = 2000;

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
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function since(iso) { return iso ? age((Date.now() - Date.parse(iso)) / 1000) : "–"; }
function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
function pct(rate) { return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + " %"; }
function num(x, digits) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits === undefined ? 1 : digits); }

/* horizontal CSS bars: items = [{label, value, text, cls, testid}] */
function bars(items) {
  if (!items.length) return '<p class="muted">nothing yet</p>';
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
  svg += '<text x="0" y="' + (h + 12) + '">max ' + esc(max) + '</text></svg>';
  return svg;
}

function table(headers, rows) {
  if (!rows.length) return '<p class="muted">none</p>';
  return '<table class="list"><thead><tr>' + headers.map(h => "<th>" + esc(h) + "</th>").join("") +
    "</tr></thead><tbody>" + rows.map(r => "<tr>" + r.map(c => "<td>" + c + "</td>").join("") + "</tr>").join("") +
    "</tbody></table>";
}

function stateBadge(state) { return '<span class="state s-' + esc(state) + '">' + esc(state) + "</span>"; }
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

async function decide(orderId, decision, comment) {
  const r = await api("/api/orders/" + encodeURIComponent(orderId) + "/" + decision,
                      {method: "POST", body: JSON.stringify({comment: comment || ""})});
  const message = r.body && (r.body.message || r.body.detail) || "";
  toast(decision + " " + orderId.slice(0, 8) + ": " + r.status + " " + message, !r.ok);
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
    ({label: s, value: n, cls: "s-" + s, testid: "funnel-" + s})));
  const minutes = [], counts = [], byMinute = {};
  d.throughput.forEach(t => { byMinute[t.minute.slice(0, 16)] = t.orders; });
  const now = new Date(d.at);
  for (let i = 59; i >= 0; i--) {
    const m = new Date(now.getTime() - i * 60000).toISOString().slice(0, 16);
    minutes.push(m.slice(11)); counts.push(byMinute[m] || 0);
  }
  document.getElementById("throughput").innerHTML = columns(counts, minutes);
  document.getElementById("exception-counts").innerHTML = bars(Object.entries(d.exceptions).map(([k, e]) =>
    ({label: k, value: e.open, text: e.open + (e.breached ? " (" + e.breached + " late)" : ""),
      cls: e.breached ? "late" : "", testid: "exceptions-" + k})));
  document.getElementById("services").innerHTML = table(["service", "status", "checks"], d.services.map(s =>
    [esc(s.service), s.up ? '<span class="up">up</span>' : '<span class="down">down</span>',
     esc(Object.entries(s.checks || {}).map(([k, v]) => k + (v ? " ✓" : " ✗")).join(" ") || s.error || "")]));
  document.getElementById("topics").innerHTML = table(
    ["topic", "partitions", "end offset", "msg/s now", "msg/s last hour", "last 2 min"],
    d.topics.map(t => [esc(t.topic), esc(t.partitions), esc(t.end_offset), num(t.rate_now),
      num(t.rate_hour) + (t.window_s && t.window_s < 3500 ? ' <span class="muted">(' + age(t.window_s) + ")</span>" : ""),
      '<span class="spark">' + columns(t.history.length ? t.history : [0], null, 16) + "</span>"]));
  document.getElementById("groups").innerHTML = table(["group", "replicas", "lag", "per topic"], d.groups.map(g =>
    [esc(g.group),
     g.replicas === null ? '<span class="muted" title="' + esc(g.members_error || "") + '">?</span>' :
       '<span class="' + (g.replicas === 0 ? "down" : "") + '" title="' + esc((g.members || []).join(", ")) + '">' +
       esc(g.replicas) + (g.state && g.state !== "Stable" ? ' <span class="muted">(' + esc(g.state) + ")</span>" : "") + "</span>",
     g.lag === null ? '<span class="down">' + esc(g.error || "?") + "</span>" :
      '<span class="' + (g.lag > 0 ? "lagging" : "") + '">' + esc(g.lag) + "</span>",
     esc(g.topics.filter(t => t.lag > 0).map(t => t.topic + " " + t.lag).join(", ") ||
         (g.topics.length ? "caught up on " + g.topics.length + " topics" : "no commits yet"))]));
  const dl = d.dlq.filter(q => q.depth > 0);
  document.getElementById("dlqs").innerHTML = dl.length ? bars(dl.map(q =>
    ({label: q.topic + ".dlq", value: q.depth, cls: "late"}))) + '<p><a href="/exceptions">newest errors in the exception queue →</a></p>'
    : '<p class="muted">every DLQ is empty</p>';
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
  document.getElementById("order-total").textContent = d.total + " orders";
  document.getElementById("page").textContent = d.page + " / " + Math.max(1, Math.ceil(d.total / d.page_size));
  document.querySelector("#orders-table tbody").innerHTML = d.orders.map(o =>
    '<tr data-order-id="' + esc(o.order_id) + '"><td class="mono">' + orderLink(o.order_id) + "</td><td>" +
    esc(o.external_id) + "</td><td>" + esc(o.channel) + "</td><td>" + esc(o.customer_id) + " " +
    esc(o.customer_name || "") + "</td><td>" + stateBadge(o.state) +
    (o.hold_codes && o.hold_codes.length ? ' <span class="muted">' + esc(o.hold_codes.join(", ")) + "</span>" : "") +
    "</td><td>" + since(o.state_since || o.last_event_at) + '</td><td class="num">' +
    esc(o.grand_total || "") + " " + esc(o.currency || "") + "</td><td>" + esc(o.priority || "") + "</td></tr>").join("");
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
  if (r.status === 404) { document.getElementById("o-state").textContent = "not known (yet)"; return; }
  if (!r.ok) return;
  const o = r.body;
  const state = o.state || "submitted";
  document.getElementById("o-external").textContent = (o.channel || "") + " " + (o.external_id || "");
  const badge = document.getElementById("o-state");
  badge.textContent = state; badge.className = "state s-" + state;
  const facts = [["customer", (o.customer_id || "") + " " + (o.customer_name || "")],
    ["total", (o.grand_total || "–") + " " + (o.currency || "")], ["priority", o.priority],
    ["payment terms", o.payment_terms], ["placed", when(o.placed_at)],
    ["requested delivery", o.requested_delivery_date], ["promised", o.promised_date],
    ["destination", o.destination], ["approved by", o.approved_by],
    ["in full at first attempt", o.filled_in_full_first_attempt === null ? "–" : (o.filled_in_full_first_attempt ? "yes" : "no")],
    ["delivered", when(o.delivered_at)], ["on time", o.on_time === null ? "–" : (o.on_time ? "yes" : "no")],
    ["in this state for", since(o.state_since)]];
  document.getElementById("o-facts").innerHTML = facts.map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" + esc(v || "–") + "</dd>").join("");
  document.getElementById("o-stages").innerHTML = bars(o.stage_times.map(s =>
    ({label: s.stage, value: s.seconds === null ? (Date.now() - Date.parse(s.started_at)) / 1000 : s.seconds,
      text: s.seconds === null ? "in progress, " + since(s.started_at) : age(s.seconds),
      cls: s.seconds === null ? "open" : ""})));
  document.getElementById("o-lines").innerHTML = table(["SKU", "qty", "unit price", "discount", "amount"],
    o.lines.map(l => [esc(l.sku), esc(l.quantity), esc(l.unit_price), esc(l.discount), esc(l.amount)]));
  document.getElementById("o-shipments").innerHTML = table(["shipment", "warehouse", "carrier", "tracking number", "promised", "status"],
    o.shipments.map(s => [esc(s.shipment_id), esc(s.warehouse_id), esc((s.carrier || "") + " " + (s.service || "")),
      '<span class="mono">' + esc(s.tracking_number) + "</span>", esc(s.promised_date),
      esc(s.status) + (s.delay_reason ? ": " + esc(s.delay_reason) : "") + (s.exception_code ? ": " + esc(s.exception_code) : "")]));
  const problems = o.holds.map(h => ["hold", esc(h.code), esc(h.message), when(h.at)])
    .concat(o.rejections.map(x => ["rejection (" + esc(x.stage) + ")", esc(x.code), esc(x.message + (x.comment ? " — " + x.comment : "")), when(x.at)]));
  document.getElementById("o-problems").innerHTML = table(["kind", "reason", "detail", "at"], problems);
  document.getElementById("o-notifications").innerHTML = table(["for", "channel", "status", "at"],
    o.notifications.map(n => [esc(n.source_event_type), esc(n.channel), esc(n.status), when(n.at)]));
  document.getElementById("timeline").innerHTML = o.timeline.map(t =>
    '<li class="t-' + esc(t.event_type) + '"><time>' + when(t.at) + '</time> <span class="svc">' + esc(t.service) +
    '</span> <strong>' + esc(t.event_type) + "</strong> <span>" + esc(t.summary) + "</span></li>").join("");
  const actions = document.getElementById("o-actions");
  actions.hidden = !(state === "held" && MAY_DECIDE);
  document.getElementById("o-hold-reasons").textContent = o.hold_codes.join(", ");
}

function initOrder() {
  const id = document.body.dataset.orderId;
  ["approve", "reject"].forEach(decision => {
    document.getElementById("o-" + decision).addEventListener("click", async () => {
      await decide(id, decision, document.getElementById("o-comment").value);
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
    '<div class="kpi' + (c.breached ? " late" : "") + '" data-testid="x-count-' + esc(k) + '"><span class="label">' + esc(k) +
    '</span><span class="value">' + esc(c.open) + "</span>" + (c.breached ? '<span class="label">' + esc(c.breached) + " past SLA</span>" : "") + "</div>").join("");
  document.querySelector("#exceptions-table tbody").innerHTML = d.items.map(i => {
    let actions = "";
    if (i.actions.includes("approve") && MAY_DECIDE) {
      actions += '<button type="button" class="ok" data-act="approve" data-order="' + esc(i.order_id) + '">Approve</button> ' +
                 '<button type="button" class="bad" data-act="reject" data-order="' + esc(i.order_id) + '">Reject</button>';
    }
    if (i.actions.includes("cancel") && MAY_DECIDE) {
      actions += ' <button type="button" data-act="cancel" data-order="' + esc(i.order_id) + '">Cancel order</button>';
    }
    if (i.kind === "dlq") {
      actions += '<a href="' + deadLetterPath("/dead-letters/", i.details) + '">Inspect</a> ';
    }
    if (i.actions.includes("replay") && MAY_REPLAY) {
      actions += '<button type="button" data-act="replay" data-topic="' + esc(i.details.topic) + '">Replay DLQ</button>';
    }
    const target = i.order_id ? orderLink(i.order_id, (i.external_id || i.order_id.slice(0, 8))) :
      i.kind === "outbox" ? esc(i.details.service + " outbox #" + i.details.outbox_id + " → " + i.details.topic + (i.details.key ? " (" + i.details.key + ")" : "")) :
      esc(i.details.topic + " @" + i.details.offset);
    return '<tr class="' + (i.breached ? "breached" : "") + '" data-kind="' + esc(i.kind) + '" data-order-id="' + esc(i.order_id || "") + '">' +
      "<td>" + esc(i.kind) + "</td><td>" + target + "</td><td>" + esc(i.customer_id || "") + "</td><td>" + esc(i.reason) +
      "</td><td>" + age(i.age_s) + "</td><td>" + (i.breached ? '<span class="late">breached</span>' : age(i.sla_s - i.age_s) + " left") +
      "</td><td>" + actions + "</td></tr>";
  }).join("");
}

function initExceptions() {
  document.getElementById("exception-filters").addEventListener("change", refreshExceptions);
  document.getElementById("exception-filters").addEventListener("submit", e => { e.preventDefault(); refreshExceptions(); });
  document.querySelector("#exceptions-table tbody").addEventListener("click", async e => {
    const button = e.target.closest("button[data-act]");
    if (!button) return;
    button.disabled = true;
    if (button.dataset.act === "cancel") {
      const reason = document.getElementById("x-comment").value.trim() || "cancelled from the exception queue";
      const r = await api("/api/orders/" + encodeURIComponent(button.dataset.order) + "/cancel",
                          {method: "POST", body: JSON.stringify({reason: reason})});
      toast(r.ok ? "cancel requested; logistics decides" : "cancel failed: " + r.status, !r.ok);
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
  if (!preview.ok) { toast("replay: " + ((preview.body && preview.body.detail) || preview.status), true); return; }
  const n = preview.body.pending;
  if (n === 0) { toast("nothing to replay in " + topic + ".dlq", false); return; }
  if (!window.confirm("Replay " + n + " dead letter" + (n === 1 ? "" : "s") + " onto " + topic + "?")) return;
  const r = await api(path, {method: "POST", body: JSON.stringify({expected: n})});
  toast(r.ok ? "replayed " + r.body.replayed + " message(s) onto " + topic :
        "replay refused: " + ((r.body && r.body.detail) || r.status), !r.ok);
}

async function refreshDeadLetter() {
  const el = document.getElementById("dl");
  const d = el.dataset;
  const r = await api(deadLetterPath("/api/dlq/", d));
  if (!r.ok) {
    document.getElementById("dl-facts").innerHTML = "<dt>error</dt><dd>" + esc((r.body && r.body.detail) || r.status) + "</dd>";
    return;
  }
  const x = r.body;
  const facts = [["reason", x.reason], ["error", x.error], ["service", x.service], ["event type", x.event_type],
                 ["event id", x.event_id], ["key", x.key], ["dead-lettered at", when(x.at)]];
  document.getElementById("dl-facts").innerHTML = facts.map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" + esc(v || "–") + "</dd>").join("");
  document.getElementById("dl-headers").innerHTML = table(["header", "value"],
    Object.entries(x.headers).map(([k, v]) => [esc(k), '<span class="mono">' + esc(v) + "</span>"]));
  document.getElementById("dl-size").textContent = "(" + x.size + " bytes" + (x.payload_truncated ? ", shown truncated" : "") + ")";
  document.getElementById("dl-payload").textContent = x.payload;
  document.getElementById("dl-actions").hidden = !MAY_REPLAY;
  document.getElementById("dl-replayed").textContent = x.replayed ?
    "Replayed by " + x.replayed.by + " at " + when(x.replayed.at) + "." : "Not replayed by the console yet.";
  document.getElementById("dl-replay").disabled = !!x.replayed;
}

function initDeadLetter() {
  const d = document.getElementById("dl").dataset;
  document.getElementById("dl-replay").addEventListener("click", async () => {
    if (!window.confirm("Replay this dead letter onto " + d.topic + "?")) return;
    const r = await api(deadLetterPath("/api/dlq/", d) + "/replay", {method: "POST", body: "{}"});
    toast(r.ok ? "replayed onto " + d.topic : "replay refused: " + ((r.body && r.body.detail) || r.status), !r.ok);
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
  if (!r.ok) { toast("report: " + (r.body && r.body.detail), true); return; }
  const s = r.body;
  const kpi = (label, rate, id) => '<div class="kpi" data-testid="' + id + '"><span class="label">' + esc(label) +
    '</span><span class="value">' + pct(rate.rate) + '</span><span class="label">' + esc(rate.numerator) + " / " + esc(rate.denominator) + "</span></div>";
  document.getElementById("report-kpis").innerHTML =
    '<div class="kpi"><span class="label">orders</span><span class="value" id="r-orders">' + esc(s.orders) + "</span></div>" +
    kpi("fill rate · orders", s.fill_rate_orders, "fill-orders") + kpi("fill rate · lines", s.fill_rate_lines, "fill-lines") +
    kpi("fill rate · units", s.fill_rate_units, "fill-units") + kpi("on-time · shipments", s.on_time_shipments, "ot-shipments") +
    kpi("on-time · orders", s.on_time_orders, "ot-orders") + kpi("on-time in full", s.on_time_in_full, "otif");
  document.getElementById("r-cycle").innerHTML = s.cycle_times.filter(c => c.count).map(c =>
    bars([{label: c.stage + " p50", value: c.p50_s, text: age(c.p50_s)},
          {label: c.stage + " p95", value: c.p95_s, text: age(c.p95_s), cls: "p95"}])).join("") || '<p class="muted">nothing yet</p>';
  const days = {};
  s.volumes.forEach(v => { days[v.day] = (days[v.day] || 0) + v.orders; });
  document.getElementById("r-volumes").innerHTML = bars(Object.entries(days).map(([d, n]) => ({label: d, value: n}))) +
    table(["day", "channel", "orders", "amount"], s.volumes.map(v => [esc(v.day), esc(v.channel), esc(v.orders), esc(v.amount + " " + v.currency)]));
  document.getElementById("r-customers").innerHTML = bars(s.top_customers.map(c =>
    ({label: c.key + " " + c.name, value: Number(c.amount), text: c.amount + " " + c.currency})));
  document.getElementById("r-skus").innerHTML = bars(s.top_skus.map(c =>
    ({label: c.key + " " + (c.name || ""), value: Number(c.amount), text: c.amount + " " + c.currency + " · " + c.quantity + " units"})));
  document.getElementById("r-holds").innerHTML = bars(s.holds_by_reason.map(h => ({label: h.code, value: h.orders})));
  document.getElementById("r-rejections").innerHTML = bars(s.rejections_by_reason.map(h => ({label: h.code + " (" + h.stage + ")", value: h.orders, cls: "late"})));
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
