// Engineer page: raw device health and counters, refreshed every 2 s (reachable by engineers and supervisors).
"use strict";
function card(title, obj, cls) {
  const show = (k, v) => (typeof v === "number" && v > 1e9 && (k.endsWith("_t") || k === "last_ack"))
    ? `${Z.datetime(v)} (${Z.ago(v)})` : typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
  const rows = Object.entries(obj || {}).map(([k, v]) => Z.el("div", {class: "kv"}, Z.el("span", {}, k),
    Z.el("b", {}, show(k, v))));
  return Z.el("div", {class: "card " + (cls || "")}, Z.el("h3", {}, title), ...rows);
}
async function refresh() {
  const h = await Z.get("/api/engineer/health");
  const s = h.snapshot;
  document.getElementById("devices").replaceChildren(...Object.entries(s.devices).map(([id, d]) => card(`${id} — ${d.state}`, d)));
  if (!Object.keys(s.devices).length) document.getElementById("devices").append(Z.el("p", {class: "muted"}, "no devices report yet"));
  document.getElementById("pipelines").replaceChildren(...Object.entries(s.pipelines).map(([id, p]) => card(id, p)));
  document.getElementById("misc").replaceChildren(
    card("Central link", {...s.link, outbox_backlog: h.backlog}),
    card("Store", {alerts_stored: h.alerts_stored, storage_used_mb: (h.storage_used_bytes / 1048576).toFixed(1),
                   event_bus_dropped: h.event_bus_dropped, uptime_s: Math.round(s.uptime_s)}),
    card("Console", h.console), card("Console live", h.console_live), card("Logins", h.auth),
    card("Receivers", h.receivers));
}
(async () => {
  const me = await Z.me();
  document.getElementById("user").textContent = `${me.user} · ${me.role}`;
  document.getElementById("logout").onclick = () => Z.logout();
  await refresh();
  setInterval(() => refresh().catch(() => null), 2000);
  document.body.dataset.ready = "1";
})();
