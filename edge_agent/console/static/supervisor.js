// Supervisor page: each officer's TIP hits, misses, false alarms and response times (refreshed every 3 s).
"use strict";
const pct = (x) => (x === null || x === undefined ? "—" : (x * 100).toFixed(0) + "%");
const sec = (x) => (x === null || x === undefined ? "—" : x.toFixed(2) + " s");
async function refresh() {
  const r = await Z.get("/api/supervisor/tip");
  document.getElementById("rate").textContent = r.tip_rate > 0
    ? `Projection rate: ${(r.tip_rate * 100).toFixed(1)}% of clear bags. Projections are local training images: never sent to central.`
    : "Threat Image Projection is off (console.tip_rate = 0).";
  document.querySelector("#scores tbody").replaceChildren(...r.scores.map((s) => Z.el("tr", {"data-officer": s.officer},
    Z.el("td", {}, s.officer), Z.el("td", {}, s.projections), Z.el("td", {}, s.hits), Z.el("td", {}, s.misses),
    Z.el("td", {}, s.false_alarms), Z.el("td", {}, pct(s.hit_rate)), Z.el("td", {}, sec(s.mean_response_s)),
    Z.el("td", {}, sec(s.median_response_s)))));
  document.querySelector("#trials tbody").replaceChildren(...r.recent.map((t) => Z.el("tr", {},
    Z.el("td", {}, Z.datetime(t.t)), Z.el("td", {}, t.officer), Z.el("td", {}, t.outcome), Z.el("td", {}, t.lane),
    Z.el("td", {}, t.bag_id), Z.el("td", {}, t.threat || "—"), Z.el("td", {}, sec(t.response_s)))));
}
(async () => {
  const me = await Z.me();
  document.getElementById("user").textContent = `${me.user} · ${me.role}`;
  document.getElementById("logout").onclick = () => Z.logout();
  await refresh();
  setInterval(() => refresh().catch(() => null), 3000);
  document.body.dataset.ready = "1";
})();
