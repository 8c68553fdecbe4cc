// Engineer page of the command dashboard: raw checkpoint health and hub/dashboard counters.
"use strict";
async function refresh() {
  const s = await Z.get("/api/engineer/status");
  const cards = s.checkpoints.map((c) => Z.el("div", {}, Z.el("h2", {}, `${c.id} — ${c.online ? "online" : "OFFLINE"}`),
    Z.el("pre", {}, JSON.stringify({last_seen: Z.datetime(c.last_seen), backlog: c.backlog, clock_skew_s: c.clock_skew_s,
      rtt_s: c.rtt_s, software: c.software, proto: c.proto, health: c.health}, null, 2))));
  document.getElementById("page").replaceChildren(Z.el("h2", {}, "Hub store and dashboard"),
    Z.el("pre", {}, JSON.stringify({alerts_stored: s.alerts_stored, dashboard: s.dashboard, logins: s.auth, poller: s.poller}, null, 2)),
    ...cards);
}
(async () => {
  const me = await Z.me();
  document.getElementById("user").textContent = `${me.user} · ${me.role}`;
  document.getElementById("logout").onclick = () => Z.logout();
  await refresh();
  setInterval(() => refresh().catch(() => null), 3000);
  document.body.dataset.ready = "1";
})();
