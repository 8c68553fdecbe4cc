// Command dashboard: checkpoints, a filtered live alert feed, alert detail, downlinks to chosen checkpoints.
"use strict";

const D = {info: null, cps: [], alerts: [], sel: null, chosen: new Set()};
const $ = (id) => document.getElementById(id);
const DECISION_LABEL = {cleared: "cleared", searched_nothing_found: "searched, nothing found",
                        contraband_found: "contraband found"};

// A checkpoint clock this far off central's is wrong, not jitter: its alerts' times are corrected
// at the hub (central/store.py, central_time) and the edge's own stamp is shown beside them.
const CLOCK_WRONG_S = 2;

function span(s) {
  const a = Math.abs(s);
  return a < 120 ? `${a.toFixed(1)} s` : a < 7200 ? `${(a / 60).toFixed(0)} min` : a < 172800 ? `${(a / 3600).toFixed(1)} h` : `${(a / 86400).toFixed(0)} days`;
}

function clockText(skew) {  // skew: central minus the checkpoint's clock
  return `${span(skew)} ${skew > 0 ? "behind" : "ahead of"} central`;
}

function edgeClock(d) {
  const off = d.clock_offset_s;
  const wrong = off !== null && off !== undefined && Math.abs(off) >= CLOCK_WRONG_S ? `, ${clockText(off)}` : "";
  return `${Z.datetime(d.t)} (${d.clock || "?"}${wrong})`;
}

function decisionText(d) {
  if (!d) return "pending";
  return `${DECISION_LABEL[d.decision] || d.decision}${d.contraband_kind ? " (" + d.contraband_kind + ")" : ""} · ${d.officer}`;
}

// ---------------------------------------------------------------- checkpoints
function renderCheckpoints() {
  const tb = document.querySelector("#cp-table tbody");
  tb.replaceChildren(...D.cps.map((c) => {
    const failing = Object.entries(c.lanes_failing || {});
    const cls = c.online ? (failing.length ? "bad" : c.devices_bad.length || c.disk_low ? "warn" : "good") : "bad";
    const state = c.online ? (failing.length ? "bags NOT screened" : c.devices_bad.length || c.disk_low ? "degraded" : "online") : "OFFLINE";
    const why = [...(c.devices_bad.length ? ["not ok: " + c.devices_bad.join(", ")] : []),
                 ...(c.disk_low ? ["disk under its floor: raw data is being deleted to make room"] : []),
                 ...failing.map(([lane, f]) => `${lane}: bag ${f.bag_id} not screened ${Z.ago(f.t)}: ${f.reason}`)].join("\n");
    return Z.el("tr", {"data-cp": c.id},
      Z.el("td", {}, Z.el("input", {type: "checkbox", class: "pick", checked: D.chosen.has(c.id),
        onchange: (e) => { e.target.checked ? D.chosen.add(c.id) : D.chosen.delete(c.id); renderTargets(); }})),
      Z.el("td", {}, Z.el("b", {}, c.id)),
      Z.el("td", {}, Z.el("span", {class: "chip " + cls, title: why}, state)),
      Z.el("td", {}, Z.ago(c.last_seen)),
      Z.el("td", {}, c.backlog ?? "—"),
      Z.el("td", {title: c.devices_bad.join(", ")}, c.devices_total ? `${c.devices_total - c.devices_bad.length}/${c.devices_total} ok` : "—"),
      Z.el("td", {}, c.clock_skew_s === null || c.clock_skew_s === undefined ? "—"
        : Math.abs(c.clock_skew_s) < CLOCK_WRONG_S ? `${c.clock_skew_s >= 0 ? "+" : ""}${c.clock_skew_s.toFixed(2)} s`
        : Z.el("span", {class: "chip warn", title: `this checkpoint's clock is ${clockText(c.clock_skew_s)}: its alerts are placed by central's clock`},
               `${c.clock_skew_s >= 0 ? "+" : "−"}${span(c.clock_skew_s).replace(" days", " d")}`)),
      Z.el("td", {}, c.alerts));
  }));
  const on = D.cps.filter((c) => c.online).length;
  $("cp-count").textContent = `${on} of ${D.cps.length} online`;
  $("summary").replaceChildren(
    Z.el("span", {class: "chip " + (on === D.cps.length ? "good" : "bad")}, `${on}/${D.cps.length} checkpoints online`),
    Z.el("span", {class: "chip"}, `backlog ${D.cps.reduce((s, c) => s + (c.backlog || 0), 0)}`));
  const sel = $("f-checkpoint");
  const have = new Set([...sel.options].map((o) => o.value));
  D.cps.forEach((c) => { if (!have.has(c.id)) sel.append(Z.el("option", {value: c.id}, c.id)); });
}

function renderTargets() {
  $("dl-targets").textContent = D.chosen.size ? "to: " + [...D.chosen].sort().join(", ") : "no checkpoint selected";
}

// ---------------------------------------------------------------- feed
function filters() {
  const f = {checkpoint: $("f-checkpoint").value, kind: $("f-kind").value, severity: $("f-severity").value};
  const s = $("f-since").value;
  if (s) f.since = Date.now() / 1000 - Number(s);
  return f;
}
function matches(a, f) {
  return (!f.checkpoint || a.checkpoint === f.checkpoint) && (!f.kind || a.kind.startsWith(f.kind)) &&
    (!f.severity || a.severity === f.severity) && (!f.since || a.t >= f.since);
}
let feedSeq = 0;
async function loadFeed(older) {
  // Filters can change faster than answers come back: only the answer to the latest request counts.
  const seq = ++feedSeq;
  const f = filters();
  const q = new URLSearchParams(Object.entries(f).filter(([, v]) => v !== "" && v !== undefined)).toString();
  const offset = older ? D.alerts.length : 0;
  const rows = await Z.get(`/api/alerts?limit=200&offset=${offset}&` + q);
  if (seq !== feedSeq) return;
  D.alerts = older ? D.alerts.concat(rows.filter((a) => !D.alerts.some((x) => x.uuid === a.uuid))) : rows;
  $("more").hidden = rows.length < 200;
  renderFeed();
}
$("more").onclick = () => loadFeed(true);
function feedRow(a, fresh) {
  return Z.el("tr", {"data-uuid": a.uuid, class: (a.uuid === D.sel ? "sel " : "") + (fresh ? "new" : ""), onclick: () => select(a.uuid)},
    Z.el("td", {title: Z.datetime(a.t)}, Z.datetime(a.t).slice(5)), Z.el("td", {}, a.checkpoint), Z.el("td", {}, a.source), Z.el("td", {}, a.kind),
    Z.el("td", {}, Z.el("span", {class: "sev " + a.severity}, a.severity)), Z.el("td", {}, (a.score * 100).toFixed(0) + "%"),
    Z.el("td", {class: "dec"}, decisionText(a.decision)));
}
function renderFeed() {
  document.querySelector("#feed tbody").replaceChildren(...D.alerts.map((a) => feedRow(a, false)));
}
["f-checkpoint", "f-kind", "f-severity", "f-since"].forEach((id) => { $(id).onchange = () => loadFeed(); });

async function select(uuid) {
  D.sel = uuid;
  document.querySelectorAll("#feed tbody tr").forEach((r) => r.classList.toggle("sel", r.dataset.uuid === uuid));
  const a = await Z.get("/api/alerts/" + encodeURIComponent(uuid));
  const d = a.data || {};
  const loc = d.location || {};
  const where = loc.box ? `box ${loc.box.join(", ")}` : loc.center_hz ? `${Z.mhz(loc.center_hz)} · ${((loc.bandwidth_hz || 0) / 1e3).toFixed(1)} kHz` : "—";
  const ev = (a.evidence || []).map((e) => e.missing || !e.path
    ? Z.el("p", {class: "muted"}, `${e.name}: not received (the checkpoint had lost it)`)
    : e.mime.startsWith("image/") ? Z.el("img", {class: "evidence", src: "/files/" + e.path, alt: e.name})
    : Z.el("p", {}, Z.el("a", {href: "/files/" + e.path, download: e.name}, `${e.name} (${(e.size / 1024).toFixed(0)} kB)`)));
  const decs = (a.decisions || []).map((x) => Z.el("div", {class: "decision"},
    Z.el("b", {}, decisionText(x.data)), Z.el("div", {class: "muted"}, Z.datetime(x.t) + (x.data.note ? " — " + x.data.note : ""))));
  $("detail").replaceChildren(...[
    Z.el("h2", {}, a.kind, " ", Z.el("span", {class: "sev " + a.severity}, a.severity)),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Checkpoint"), Z.el("b", {}, `${a.checkpoint} · ${a.source}${d.bag_id ? " · bag " + d.bag_id : ""}`)),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Time"), Z.el("b", {}, Z.datetime(a.t))),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Edge clock"), Z.el("b", {}, edgeClock(d))),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Received"), Z.el("b", {}, Z.datetime(a.received))),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Score"), Z.el("b", {}, (a.score * 100).toFixed(1) + "%")),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Location"), Z.el("b", {}, where)),
    Z.el("p", {}, Z.el("span", {class: "muted"}, "Reason: "), d.reason || ""),
    d.fusion ? Z.el("p", {class: "muted"}, "Fusion: " + d.fusion.reason) : null,
    Z.el("h3", {}, "Officer decision"),
    decs.length ? decs : Z.el("div", {class: "decision pending"}, "pending at the checkpoint"),
    Z.el("h3", {}, "Evidence"), ...ev,
  ].flat().filter(Boolean));
}

function onAlert(ev) {
  const a = ev.alert;
  if (D.alerts.some((x) => x.uuid === a.uuid) || !matches(a, filters())) return;
  D.alerts.unshift(a);
  D.alerts.sort((x, y) => y.t - x.t);
  const tb = document.querySelector("#feed tbody");
  const i = D.alerts.indexOf(a);
  tb.insertBefore(feedRow(a, true), tb.children[i] || null);
}
function onDecision(ev) {
  const a = D.alerts.find((x) => x.uuid === ev.alert_uuid);
  if (a) {
    a.decision = ev.decision;
    const td = document.querySelector(`#feed tr[data-uuid="${ev.alert_uuid}"] td.dec`);
    if (td) td.textContent = decisionText(a.decision);
  }
  if (D.sel === ev.alert_uuid) select(ev.alert_uuid);
}

// ---------------------------------------------------------------- downlinks
$("dl-file").onchange = async (e) => { const f = e.target.files[0]; if (f) $("dl-text").value = await f.text(); };
$("dl-send").onclick = async () => {
  const r = $("dl-result");
  r.className = "note";
  if (!D.chosen.size) { r.textContent = "Choose at least one checkpoint (tick it in the table)."; r.className = "note bad"; return; }
  try {
    const out = await Z.post("/api/downlinks", {kind: $("dl-kind").value, text: $("dl-text").value, targets: [...D.chosen]});
    r.textContent = `Queued ${out.kind} version ${out.version} for ${out.targets.join(", ")}. Offline checkpoints get it when they reconnect.`;
    loadDownlinks();
  } catch (e) { r.textContent = e.message; r.className = "note bad"; }
};
async function loadDownlinks() {
  if (!D.info.can_send) return;
  const rows = await Z.get("/api/downlinks");
  document.querySelector("#dl-table tbody").replaceChildren(...rows.slice(0, 30).map((x) => Z.el("tr", {},
    Z.el("td", {}, x.version), Z.el("td", {}, x.kind), Z.el("td", {}, x.checkpoint),
    Z.el("td", {}, x.acked ? (x.ok ? "applied " + Z.ago(x.acked) : "REFUSED: " + (x.error || "")) : "waiting"))));
}

// ---------------------------------------------------------------- start
(async function start() {
  await Z.me();
  D.info = await Z.get("/api/info");
  Z.csrf = D.info.csrf;
  $("user").textContent = `${D.info.user} · ${D.info.role}`;
  $("logout").onclick = () => Z.logout();
  $("link-engineer").hidden = !["engineer", "supervisor"].includes(D.info.role);
  $("send-box").hidden = !D.info.can_send;
  $("dl-kind").replaceChildren(...D.info.sendable.map((k) => Z.el("option", {value: k}, k.replace("_", " "))));
  $("f-severity").append(...D.info.severities.map((s) => Z.el("option", {value: s}, s)));
  D.cps = await Z.get("/api/checkpoints");
  renderCheckpoints();
  await loadFeed();
  await loadDownlinks();
  Z.events("/api/events", {
    checkpoints: (ev) => { D.cps = ev.checkpoints; renderCheckpoints(); },
    alert: onAlert, decision: onDecision, downlink: () => loadDownlinks(),
  }, (up) => { $("live").className = "live chip " + (up ? "good" : "bad"); $("live").textContent = up ? "live" : "live: reconnecting"; });
  setInterval(() => { renderCheckpoints(); loadDownlinks().catch(() => null); }, 5000);
  document.body.dataset.ready = "1";
})();
