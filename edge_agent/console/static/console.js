// Officer console: lanes (X-ray viewer + TIP flag), alert queue with decisions, radio waterfall, status bar.
"use strict";

const S = {info: null, lanes: {}, lane: null, bag: null, alerts: [], sel: null, receivers: {}, wf: {},
           radioAlerts: [], decideTarget: null};
const viewer = new XrayViewer(document.getElementById("xray"));
const $ = (id) => document.getElementById(id);
const DECISION_LABEL = {cleared: "cleared", searched_nothing_found: "searched, nothing found",
                        contraband_found: "contraband found"};

// ---------------------------------------------------------------- tabs & keys
function showTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".pane").forEach((p) => p.classList.toggle("active", p.id === name));
  if (name === "lanes") viewer.fit();
  if (name === "radio") Object.values(S.wf).forEach((w) => w.redrawMarkers());
}
document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));

function activeTab() { return document.querySelector(".pane.active").id; }

document.addEventListener("keydown", (e) => {
  if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  if ($("kind-dialog").open) return;
  const k = e.key.toLowerCase();
  if (k === "?" || k === "h") { $("help").hidden = !$("help").hidden; return; }
  if (k === "escape") { $("help").hidden = true; return; }
  if (k === "1") return showTab("lanes");
  if (k === "2") return showTab("alerts");
  if (k === "3") return showTab("radio");
  const tab = activeTab();
  if (tab === "lanes") {
    const modes = {n: "colour", g: "grey", o: "organic", i: "inorganic", m: "metal"};
    if (modes[k]) return setMode(modes[k]);
    if (k === "v") return toggle("t-inverse", "inverse");
    if (k === "e") return toggle("t-edges", "edges");
    if (k === "0") return viewer.reset();
    if (k === "+" || k === "=") { $("t-contrast").value = Math.min(3, +$("t-contrast").value + 0.2); return viewer.set({contrast: +$("t-contrast").value}); }
    if (k === "-") { $("t-contrast").value = Math.max(0.4, +$("t-contrast").value - 0.2); return viewer.set({contrast: +$("t-contrast").value}); }
    if (k === "t" || k === "f") return flag();
    if (S.bag && S.bag.alert_uuids.length && "csx".includes(k)) return decideKey(k, S.bag.alert_uuids);
  } else if (tab === "alerts") {
    if (k === "j" || k === "arrowdown") return moveSel(1);
    if (k === "k" || k === "arrowup") return moveSel(-1);
    if (S.sel && "csx".includes(k)) return decideKey(k, [S.sel]);
  }
});

// ---------------------------------------------------------------- lane view
function setMode(m) {
  document.querySelectorAll("#tools [data-mode]").forEach((b) => b.classList.toggle("on", b.dataset.mode === m));
  viewer.set({mode: m});
}
function toggle(id, prop) {
  const on = !viewer[prop];
  $(id).classList.toggle("on", on);
  viewer.set({[prop]: on});
}
document.querySelectorAll("#tools [data-mode]").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
$("t-inverse").onclick = () => toggle("t-inverse", "inverse");
$("t-edges").onclick = () => toggle("t-edges", "edges");
$("t-contrast").oninput = (e) => viewer.set({contrast: +e.target.value});
$("t-bright").oninput = (e) => viewer.set({brightness: +e.target.value});
$("t-reset").onclick = () => viewer.reset();
$("lane-select").onchange = (e) => { S.lane = e.target.value; const b = (S.lanes[S.lane] || [])[0]; if (b) showBag(b); renderStrip(); };
$("flag").onclick = () => flag();

async function showBag(bag) {
  S.bag = bag;
  $("noimage").hidden = true;
  $("tipbanner").hidden = true;
  $("flag-result").textContent = "";
  $("flag").disabled = false;
  $("bag-id").textContent = bag.bag_id;
  $("bag-time").textContent = Z.datetime(bag.t);
  $("bag-count").textContent = bag.findings.length ? bag.findings.length : "none";
  const risk = $("bag-risk");
  risk.hidden = !bag.risk;
  if (bag.risk) risk.textContent = "Risk raised: " + bag.risk.reason;
  const ul = $("findings");
  ul.replaceChildren(...bag.findings.map((f) => Z.el("li", {class: "f-" + f.cls},
    Z.el("b", {}, f.cls), ` ${(f.score * 100).toFixed(0)}% · ${f.material || ""}${f.concealed ? " · concealed" : ""}`)));
  $("bag-decide").hidden = !bag.alert_uuids.length || !canDecide();
  renderBagDecisions();
  await viewer.load(bag.image_url, bag.findings).catch((e) => { $("noimage").hidden = false; $("noimage").textContent = e.message; });
  renderStrip();
}

function renderBagDecisions() {
  // What has been decided on this bag's alerts so far (from the queue we hold, updated live).
  const el = $("bag-decided");
  if (!S.bag || !S.bag.alert_uuids.length) { el.textContent = ""; return; }
  const ds = S.bag.alert_uuids.map((u) => S.alerts.find((a) => a.uuid === u)).filter(Boolean)
    .map((a) => a.decisions[a.decisions.length - 1]).filter(Boolean);
  el.textContent = ds.length ? "Decided: " + [...new Set(ds.map((d) => `${DECISION_LABEL[d.decision] || d.decision}${d.contraband_kind ? " (" + d.contraband_kind + ")" : ""} by ${d.officer}`))].join("; ") : "";
}

function renderStrip() {
  const bags = S.lanes[S.lane] || [];
  $("strip").replaceChildren(...bags.slice(0, 12).map((b) => Z.el("div",
    {class: "thumb" + (S.bag && b.bag_id === S.bag.bag_id ? " cur" : "") + (b.findings.length ? " hit" : ""),
     title: `${b.bag_id} ${Z.time(b.t)}`, onclick: () => showBag(b)},
    Z.el("img", {src: b.image_url, alt: b.bag_id, loading: "lazy"}),
    Z.el("span", {}, `${Z.time(b.t)}${b.findings.length ? " · " + b.findings.map((f) => f.cls).join(", ") : ""}`))));
}

function onBag(ev) {
  const list = S.lanes[ev.lane] || (S.lanes[ev.lane] = []);
  list.unshift(ev.bag);
  list.length = Math.min(list.length, 12);
  if (![...$("lane-select").options].some((o) => o.value === ev.lane)) {
    $("lane-select").append(Z.el("option", {value: ev.lane}, "Lane " + ev.lane));
  }
  if (!S.lane) { S.lane = ev.lane; $("lane-select").value = ev.lane; }
  if (ev.lane === S.lane) showBag(ev.bag); else renderStrip();
}

async function flag() {
  if (!S.bag || $("flag").disabled) return;
  $("flag").disabled = true;
  try {
    const r = await Z.post(`/api/lanes/${encodeURIComponent(S.lane)}/flag`, {bag_id: S.bag.bag_id});
    const b = $("tipbanner");
    b.hidden = false;
    b.className = "banner " + (r.result === "hit" ? "hit" : "fa");
    b.textContent = r.message;
    $("flag-result").textContent = r.tip ? `TIP ${r.result}${r.response_s !== undefined ? " · " + r.response_s + " s" : ""}` : "flag recorded";
    if (r.tip && r.box) { viewer.reveal = {box: r.box, label: "TIP: " + r.threat, tip: true}; viewer.draw(); }
  } catch (e) {
    $("flag-result").textContent = "flag failed: " + e.message;
    $("flag").disabled = false;
  }
}

// ---------------------------------------------------------------- decisions
function canDecide() { return S.info && ["officer", "supervisor"].includes(S.info.role); }

function decideKey(k, uuids) {
  if (!canDecide()) return;
  if (k === "c") return decide(uuids, "cleared");
  if (k === "s") return decide(uuids, "searched_nothing_found");
  if (k === "x") return askKind(uuids);
}

function askKind(uuids) {
  S.decideTarget = uuids;
  $("kind-note").value = "";
  $("kind-dialog").showModal();
}
$("kind-form").addEventListener("submit", (e) => {
  if (e.submitter && e.submitter.value === "ok") {
    decide(S.decideTarget, "contraband_found", $("kind-select").value, $("kind-note").value);
  }
});

async function decide(uuids, decision, kind, note) {
  for (const u of uuids) {
    try {
      const d = await Z.post(`/api/alerts/${u}/decision`, {decision, contraband_kind: kind || null, note: note || null});
      onDecision({decision: d});
    } catch (e) { toast("Decision not recorded: " + e.message, true); return; }
  }
  toast(`Recorded: ${DECISION_LABEL[decision]}${kind ? " (" + kind + ")" : ""}`);
  if (activeTab() === "alerts") moveSel(1);
}

document.querySelectorAll("#bag-decide [data-decision]").forEach((b) => b.addEventListener("click", () => {
  if (!S.bag) return;
  decideKey({cleared: "c", searched_nothing_found: "s", contraband_found: "x"}[b.dataset.decision], S.bag.alert_uuids);
}));

function toast(msg, bad) {
  document.querySelectorAll(".toast").forEach((x) => x.remove());
  const t = Z.el("div", {class: "toast" + (bad ? " bad" : "")}, msg);
  document.body.append(t);
  setTimeout(() => t.remove(), 3500);
}

// ---------------------------------------------------------------- alert queue
function status(a) {
  const d = a.decisions && a.decisions[a.decisions.length - 1];
  return d ? DECISION_LABEL[d.decision] || d.decision : "pending";
}

function renderAlerts() {
  const pendingOnly = $("only-pending").checked;
  const xs = S.alerts.filter((a) => !pendingOnly || !a.decisions.length);
  const pending = S.alerts.filter((a) => !a.decisions.length).length;
  $("pending").textContent = pending;
  $("pending").hidden = !pending;
  const tb = document.querySelector("#alert-table tbody");
  tb.replaceChildren(...xs.map((a) => Z.el("tr", {class: `sev-${a.severity}${a.uuid === S.sel ? " sel" : ""}`, "data-uuid": a.uuid,
    onclick: () => select(a.uuid)},
    Z.el("td", {}, Z.time(a.t)), Z.el("td", {}, a.source), Z.el("td", {}, a.kind, a.fusion ? Z.el("span", {class: "tag"}, "risk↑") : null),
    Z.el("td", {}, Z.el("span", {class: "sev " + a.severity}, a.severity)), Z.el("td", {}, (a.score * 100).toFixed(0) + "%"),
    Z.el("td", {}, status(a)))));
  if (!S.sel && xs.length) select(xs[0].uuid);
  renderRadioAlerts();
}
$("only-pending").onchange = renderAlerts;

function moveSel(d) {
  const rows = [...document.querySelectorAll("#alert-table tbody tr")];
  if (!rows.length) return;
  let i = rows.findIndex((r) => r.dataset.uuid === S.sel);
  i = Math.max(0, Math.min(rows.length - 1, i + d));
  select(rows[i].dataset.uuid);
}

function select(uuid) {
  S.sel = uuid;
  document.querySelectorAll("#alert-table tbody tr").forEach((r) => r.classList.toggle("sel", r.dataset.uuid === uuid));
  const a = S.alerts.find((x) => x.uuid === uuid);
  if (!a) return;
  const loc = a.location || {};
  const where = loc.box ? `box ${loc.box.join(", ")}` : loc.center_hz ? `${Z.mhz(loc.center_hz)} · ${(loc.bandwidth_hz / 1e3).toFixed(1)} kHz` : "";
  const ev = (a.evidence || []).map((e) => e.mime.startsWith("image/")
    ? Z.el("img", {class: "evidence", src: "/files/" + e.path, alt: e.name})
    : Z.el("a", {href: "/files/" + e.path, download: e.name}, `${e.name} (${(e.size / 1024).toFixed(0)} kB)`));
  $("alert-detail").replaceChildren(...[
    Z.el("h2", {}, a.kind, " ", Z.el("span", {class: "sev " + a.severity}, a.severity)),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Time"), Z.el("b", {}, Z.datetime(a.t) + ` (clock ${a.clock})`)),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Source"), Z.el("b", {}, a.source + (a.bag_id ? ` · bag ${a.bag_id}` : ""))),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Score"), Z.el("b", {}, (a.score * 100).toFixed(1) + "%")),
    Z.el("div", {class: "kv"}, Z.el("span", {}, "Location"), Z.el("b", {}, where)),
    Z.el("p", {class: "reason"}, Z.el("span", {}, "Reason: "), a.reason),
    a.fusion ? Z.el("p", {class: "risk"}, "Fusion risk raised: " + a.fusion.reason) : null,
    Z.el("div", {class: "evidencebox"}, ...ev),
    Z.el("h3", {}, "Decisions"),
    a.decisions.length ? Z.el("ul", {class: "decisions"}, ...a.decisions.map((d) => Z.el("li", {},
      `${Z.datetime(d.t)} · ${d.officer}: ${DECISION_LABEL[d.decision] || d.decision}${d.contraband_kind ? " (" + d.contraband_kind + ")" : ""}${d.note ? " — " + d.note : ""}`)))
      : Z.el("p", {class: "muted"}, "none yet"),
    canDecide() ? Z.el("div", {class: "btnrow"},
      Z.el("button", {class: "ok", id: "d-cleared", onclick: () => decide([uuid], "cleared")}, "Cleared ", Z.el("kbd", {}, "C")),
      Z.el("button", {id: "d-searched", onclick: () => decide([uuid], "searched_nothing_found")}, "Searched, nothing found ", Z.el("kbd", {}, "S")),
      Z.el("button", {class: "danger", id: "d-contraband", onclick: () => askKind([uuid])}, "Contraband found ", Z.el("kbd", {}, "X"))) : null,
  ].filter(Boolean));
}

function onAlert(ev) {
  const a = ev.alert;
  if (!a || S.alerts.some((x) => x.uuid === a.uuid)) return;
  a.decisions = a.decisions || [];
  S.alerts.unshift(a);
  S.alerts.length = Math.min(S.alerts.length, 500);
  renderAlerts();
}

function onDecision(ev) {
  const d = ev.decision;
  const a = S.alerts.find((x) => x.uuid === d.alert_uuid);
  if (a && !a.decisions.some((x) => x.uuid === d.uuid)) { a.decisions.push(d); }
  renderAlerts();
  renderBagDecisions();
  if (S.sel === d.alert_uuid) select(d.alert_uuid);
}

// ---------------------------------------------------------------- radio
class Waterfall {
  constructor(id, rx) {
    this.id = id; this.rx = rx;
    this.lo = -100; this.hi = -20; this.rows = 0;
    const wrap = Z.el("div", {class: "rx", id: "rx-" + id});
    this.title = Z.el("h3", {});
    this.markers = Z.el("canvas", {class: "markers", height: 44});
    this.canvas = Z.el("canvas", {class: "wf", height: 220, width: 512});
    this.axis = Z.el("div", {class: "axis"});
    this.table = Z.el("table", {class: "emitters"});
    wrap.append(this.title, Z.el("div", {class: "wfbox"}, this.markers, this.canvas, this.axis), this.table);
    $("receivers").append(wrap);
    this.update(rx);
    (rx.waterfall || []).forEach((r) => this.push(r));
  }
  update(rx) {
    Object.assign(this.rx, rx);
    this.title.textContent = `${this.id} · ${Z.mhz(this.rx.center_hz || 0)} ± ${((this.rx.rate_hz || 0) / 2e6).toFixed(2)} MHz`;
    const lo = (this.rx.center_hz - this.rx.rate_hz / 2) / 1e6, hi = (this.rx.center_hz + this.rx.rate_hz / 2) / 1e6;
    this.axis.replaceChildren(...[0, 0.25, 0.5, 0.75, 1].map((f) => Z.el("span", {}, (lo + f * (hi - lo)).toFixed(3))));
    this.redrawMarkers();
    this.renderTable();
  }
  push(row) {
    if (!row || !row.length) return;
    this.rows++;
    const c = this.canvas, ctx = c.getContext("2d");
    if (c.width !== row.length) { c.width = row.length; }
    const sorted = [...row].sort((a, b) => a - b);
    const lo = sorted[Math.floor(sorted.length * 0.1)] - 3;
    const hi = Math.max(sorted[sorted.length - 1], lo + 30);
    // Start from the first row, then follow the noise floor slowly so the colours stay put.
    const a = this.rows === 1 ? 1 : 0.1;
    this.lo = (1 - a) * this.lo + a * lo;
    this.hi = (1 - a) * this.hi + a * hi;
    ctx.drawImage(c, 0, 1);
    const line = ctx.createImageData(row.length, 1);
    for (let i = 0; i < row.length; i++) {
      const v = Math.max(0, Math.min(1, (row[i] - this.lo) / (this.hi - this.lo)));
      const [r, g, b] = turbo(v);
      line.data.set([r, g, b, 255], i * 4);
    }
    ctx.putImageData(line, 0, 0);
  }
  xOf(hz, w) { return ((hz - (this.rx.center_hz - this.rx.rate_hz / 2)) / this.rx.rate_hz) * w; }
  redrawMarkers() {
    const m = this.markers;
    m.width = m.clientWidth || 800;
    const ctx = m.getContext("2d");
    ctx.clearRect(0, 0, m.width, m.height);
    ctx.font = "11px 'DejaVu Sans', sans-serif";
    const ends = [-1e9, -1e9];  // right edge of the last label on each of two text rows
    const ems = [...(this.rx.emitters || [])].filter((e) => emHz(e)).sort((p, q) => emHz(p) - emHz(q));
    for (const e of ems) {
      const f = emHz(e);
      const x = this.xOf(f, m.width);
      const col = e.licensed === false ? "#ff453a" : e.licensed === true ? "#30d158" : "#ffd60a";
      ctx.fillStyle = col;
      ctx.beginPath(); ctx.moveTo(x, m.height); ctx.lineTo(x - 6, m.height - 10); ctx.lineTo(x + 6, m.height - 10); ctx.fill();
      const label = `${emClass(e)} ${(f / 1e6).toFixed(3)}`;
      const w = ctx.measureText(label).width;
      const lx = Math.min(m.width - w - 2, Math.max(2, x - 30));
      const row = lx > ends[0] + 6 ? 0 : 1;  // close emitters: the second label goes one line up
      ends[row] = lx + w;
      ctx.fillText(label, lx, m.height - 16 - 14 * row);
    }
  }
  renderTable() {
    const es = this.rx.emitters || [];
    this.table.replaceChildren(Z.el("tr", {}, ...["Class", "Frequency", "Bandwidth", "Power", "Licensed", "Allocation", "Duty"].map((h) => Z.el("th", {}, h))),
      ...es.map((e) => Z.el("tr", {class: e.licensed === false ? "unlicensed" : ""},
        Z.el("td", {}, emClass(e)), Z.el("td", {}, emHz(e) ? Z.mhz(emHz(e)) : "?"),
        Z.el("td", {}, e.bandwidth_hz ? (e.bandwidth_hz / 1e3).toFixed(1) + " kHz" : "—"),
        Z.el("td", {}, emPower(e) !== null ? emPower(e).toFixed(1) + " dB" : "—"),
        Z.el("td", {}, e.licensed === true ? "yes" : e.licensed === false ? "NO" : "unknown"),
        Z.el("td", {}, e.allocation || "—"),
        Z.el("td", {}, e.duty_cycle !== undefined ? (e.duty_cycle * 100).toFixed(0) + "%" : "—"))));
    if (!es.length) this.table.append(Z.el("tr", {}, Z.el("td", {colspan: 7, class: "muted"}, "no emitters now")));
  }
}
function emHz(e) { return e.center_hz ?? e.frequency_hz ?? e.freq_hz ?? null; }
function emClass(e) { return e.cls ?? e.class ?? e.label ?? "unclassified"; }
function emPower(e) { return e.power_db ?? e.power_dbfs ?? e.power ?? null; }
// Turbo colour map (Google, Apache-2.0), polynomial approximation: perceptually even for waterfalls.
function turbo(x) {
  const r = 34.61 + x * (1172.33 - x * (10793.56 - x * (33300.12 - x * (38394.49 - x * 14825.05))));
  const g = 23.31 + x * (557.33 + x * (1225.33 - x * (3574.96 - x * (1073.77 + x * 707.56))));
  const b = 27.2 + x * (3211.1 - x * (15327.97 - x * (27814 - x * (22569.18 - x * 6838.66))));
  return [r, g, b].map((v) => Math.max(0, Math.min(255, v)));
}

function onWaterfall(ev) {
  const id = ev.receiver;
  const rx = {center_hz: ev.center_hz, rate_hz: ev.rate_hz, emitters: ev.emitters || []};
  if (!S.wf[id]) S.wf[id] = new Waterfall(id, rx);
  else S.wf[id].update(rx);
  S.wf[id].push(ev.row);
}

function renderRadioAlerts() {
  const xs = S.alerts.filter((a) => a.kind.startsWith("rf."));
  document.querySelector("#radio-alerts tbody").replaceChildren(...xs.slice(0, 50).map((a) => Z.el("tr", {class: "sev-" + a.severity},
    Z.el("td", {}, Z.time(a.t)), Z.el("td", {}, a.source), Z.el("td", {}, a.kind),
    Z.el("td", {}, a.location && a.location.center_hz ? Z.mhz(a.location.center_hz) : ""),
    Z.el("td", {}, Z.el("span", {class: "sev " + a.severity}, a.severity)), Z.el("td", {}, a.reason))));
}

// ---------------------------------------------------------------- status bar
function onStatus(s) {
  const link = s.link || {};
  const l = $("link");
  if (!link.configured) { l.className = "chip"; l.textContent = "central: not configured"; }
  else {
    l.className = "chip " + (link.connected ? "good" : "bad");
    l.replaceChildren(`central: ${link.connected ? "connected" : "DOWN"} · backlog ${link.backlog ?? "?"}`,
      link.connected ? "" : ` · last ack ${Z.ago(link.last_ack)}`,
      !link.connected && link.last_error ? Z.el("em", {}, " — " + link.last_error.slice(0, 80)) : "");
    l.title = link.last_error ? "last error: " + link.last_error : "";
  }
  // a lane that could not screen a bag says so in red for 15 min after it happened: the bag went
  // through unscreened (its files are set aside for the engineer), so the officer must know
  const failing = Object.entries(s.pipelines || {}).filter(([, p]) => p.bags_failed > 0 && p.last_failed).sort();
  // a lane held on a bag it is trying again (a passing fault: a locked database, a full disk)
  // shows no new bags meanwhile: amber, with why, so that the officer does not wait in silence
  const held = Object.entries(s.pipelines || {}).filter(([, p]) => p.retrying).sort();
  // a disk under its floor: retention is deleting raw data to make room, and writes may fail
  const disk = s.storage || {};
  const low = disk.low ? [Z.el("span", {class: "chip bad", title: "storage.min_free_mb: raw data, then evidence central has, are deleted to keep this free"},
    `disk: ${(disk.free_bytes / 2 ** 20).toFixed(0)} MB free`, Z.el("em", {}, ` — under the ${(disk.min_free_bytes / 2 ** 20).toFixed(0)} MB floor`))] : [];
  // a clock central finds wrong: the bags' and alerts' times shown here are this box's; central
  // places the alerts by its own clock (common/clock.py), but the officer's record should say so
  const ck = s.clock || {};
  const wrongClock = ck.offset_s !== null && ck.offset_s !== undefined && Math.abs(ck.offset_s) >= 2
    ? [Z.el("span", {class: "chip warn", title: "this box's clock disagrees with central's: set the time (NTP) — alerts are corrected at central"},
        `clock: ${Math.abs(ck.offset_s) < 7200 ? Math.abs(ck.offset_s).toFixed(0) + " s" : (Math.abs(ck.offset_s) / 86400).toFixed(1) + " days"} ${ck.offset_s > 0 ? "behind" : "ahead of"} central`)] : [];
  $("lanes-health").replaceChildren(...low, ...wrongClock, ...held.map(([id, p]) => {
    const r = p.retrying;
    return Z.el("span", {class: "chip warn", title: r.reason},
      `${id}: held on bag ${r.bag_id || "?"} — trying again (${r.failures} failed)`,
      Z.el("em", {}, ` — first failed ${Z.ago(r.since)}: ${r.reason.slice(0, 60)}`));
  }), ...failing.map(([id, p]) => {
    const f = p.last_failed;
    const recent = Date.now() / 1000 - f.t < 900;
    return Z.el("span", {class: "chip " + (recent ? "bad" : "warn"), title: f.reason},
      `${id}: ${p.bags_failed} bag${p.bags_failed > 1 ? "s" : ""} NOT screened`,
      Z.el("em", {}, ` — last ${f.bag_id || "?"} ${Z.ago(f.t)}: ${f.reason.slice(0, 60)}`));
  }));
  const devs = Object.entries(s.devices || {}).sort();
  $("devices").replaceChildren(...devs.map(([id, h]) => {
    const cls = h.state === "ok" ? "good" : ["starting", "reconnecting", "stalled"].includes(h.state) ? "warn" : "bad";
    return Z.el("span", {class: "chip " + cls, title: h.last_error ? `${h.last_error} (${Z.ago(h.last_error_t)})` : h.url || ""},
      `${id}: ${h.state}`, h.last_error && h.state !== "ok" ? Z.el("em", {}, " — " + h.last_error.slice(0, 60)) : null);
  }));
}
function onDevice(ev) {
  S.status = S.status || {devices: {}, link: {}};
  S.status.devices[ev.device] = ev.health;
  onStatus(S.status);
}
setInterval(() => { $("clock").textContent = new Date().toISOString().slice(0, 19).replace("T", " ") + "Z"; }, 1000);

// ---------------------------------------------------------------- start
(async function start() {
  const me = await Z.me();
  S.info = await Z.get("/api/info");
  Z.csrf = S.info.csrf || me.csrf;
  $("checkpoint").textContent = S.info.checkpoint;
  $("user").textContent = `${S.info.user} · ${S.info.role}`;
  $("link-supervisor").hidden = S.info.role !== "supervisor";
  $("link-engineer").hidden = !["engineer", "supervisor"].includes(S.info.role);
  $("flag").hidden = !canDecide();
  $("logout").onclick = () => Z.logout();
  $("kind-select").replaceChildren(...S.info.contraband_kinds.map((k) => Z.el("option", {value: k}, k)));
  const lanes = await Z.get("/api/lanes");
  S.lanes = lanes;
  const ids = [...new Set([...S.info.lanes, ...Object.keys(lanes)])];
  $("lane-select").replaceChildren(...ids.map((id) => Z.el("option", {value: id}, "Lane " + id)));
  S.lane = ids[0] || null;
  if (S.lane && (lanes[S.lane] || []).length) showBag(lanes[S.lane][0]);
  S.alerts = await Z.get("/api/alerts?limit=200");
  renderAlerts();
  const rxs = await Z.get("/api/receivers");
  for (const [id, rx] of Object.entries(rxs)) S.wf[id] = new Waterfall(id, rx);
  if (!Object.keys(rxs).length) $("receivers").append(Z.el("p", {class: "muted", id: "no-rx"}, "No receivers configured."));
  S.status = await Z.get("/api/status");
  onStatus(S.status);
  Z.events("/api/events", {
    bag: onBag, alert: onAlert, decision: onDecision, waterfall: (ev) => { $("no-rx")?.remove(); onWaterfall(ev); },
    device: onDevice, status: (s) => { S.status = s; onStatus(s); },
  }, (up) => { $("live").className = "chip " + (up ? "good" : "bad"); $("live").textContent = up ? "live" : "live: reconnecting"; });
  document.body.dataset.ready = "1";
})();
