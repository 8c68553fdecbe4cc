"""The command dashboard: checkpoints, a live alert feed across checkpoints, alert detail, downlinks.

    start_dashboard(cfg_dashboard, store, data_dir, stop=None) -> DashboardHandle   (handle.stop(timeout))
    build_dashboard(cfg_dashboard, store, data_dir) -> Dashboard                   (the app, for tests)

`store` is central's HubStore (central.store.open_store(url)); the dashboard only reads it, except to
queue downlink documents. Live updates: one poller thread per dashboard reads the store once a second
and fans new alerts, decisions and checkpoint states out to every browser over SSE, so the number of
open browsers does not multiply the database load. Like all of central, it never imports edge_agent.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from common import webauth
from common.webevents import Fanout
from common.webstatic import add_pages
from sync.wire import WireError, check_doc

log = logging.getLogger("zastava.dashboard")

STATIC = Path(__file__).parent / "static"
SEVERITIES = ("info", "low", "medium", "high", "critical")
SENDABLE = ("watchlist", "frequency_plan")
SENDING_ROLES = ("supervisor",)
ROLE_RULES = {"/engineer": ("engineer", "supervisor"), "/api/engineer": ("engineer", "supervisor")}
LANE_FAILED_RECENT_S = 900.0  # a lane's unscreened bag marks its checkpoint degraded this long (as on the console)
OFFLINE_AFTER_S = 15.0  # no heartbeat for this long -> offline (the sender beats every 2 s by default)
def fast_json(obj) -> Response:
    """Plain json.dumps: FastAPI's jsonable_encoder walks every value first, several times slower for a
    page of alerts (bench/bench_console.py measures it), and these are already plain JSON types."""
    return Response(json.dumps(obj, default=str), media_type="application/json")


SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class DownlinkIn(BaseModel):
    kind: str = Field(max_length=32)
    text: str = Field(max_length=8 << 20)  # the document as JSON or TOML, as an operator pastes or uploads it
    targets: list[str] = Field(min_length=1, max_length=2000)


def parse_doc(text: str) -> dict:
    """A document as JSON or TOML (the radio formats are TOML files); the error says what is wrong."""
    t = text.strip()
    if not t:
        raise ValueError("empty document")
    if t.startswith("{"):
        try:
            doc = json.loads(t)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
    else:
        try:
            doc = tomllib.loads(t)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"not valid TOML: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("the document must be an object/table")
    return doc


def checkpoint_row(c, now: float) -> dict:
    d = asdict(c)
    d["online"] = bool(c.last_seen and now - c.last_seen < OFFLINE_AFTER_S)
    devs = (c.health or {}).get("devices") or {}
    d["devices_total"] = len(devs)
    d["devices_bad"] = sorted(k for k, h in devs.items() if isinstance(h, dict) and h.get("state") != "ok")
    # lanes that let a bag through unscreened lately (their processing failed: edge_agent/xray_lane.py)
    lanes = (c.health or {}).get("pipelines") or {}
    d["lanes_failing"] = {k: p["last_failed"] for k, p in sorted(lanes.items())
                          if now - _failed_at(p) < LANE_FAILED_RECENT_S} if isinstance(lanes, dict) else {}
    disk = (c.health or {}).get("storage")
    d["disk_low"] = bool(disk.get("low")) if isinstance(disk, dict) else False
    return d


def _failed_at(pipeline) -> float:
    """When a pipeline's last unscreened bag was, from a checkpoint's health report; -inf when it
    reports none or something unreadable (a health report must never break the checkpoint list)."""
    f = pipeline.get("last_failed") if isinstance(pipeline, dict) else None
    t = f.get("t") if isinstance(f, dict) else None
    return float(t) if isinstance(t, int | float) and not isinstance(t, bool) else float("-inf")


def feed_row(a: dict, decisions: list[dict]) -> dict:
    """An alert as the feed shows it: the store's columns plus reason, location and the last decision."""
    data = a.get("data") or {}
    last = decisions[-1]["data"] if decisions else None
    return {"uuid": a["uuid"], "checkpoint": a["checkpoint"], "t": a["t"], "kind": a["kind"],
            "severity": a["severity"], "score": a["score"], "source": a["source"], "received": a.get("received"),
            "reason": data.get("reason"), "bag_id": data.get("bag_id"), "fusion": bool(data.get("fusion")),
            "decision": last}


class Poller:
    """Reads the store on a timer and publishes what changed; SSE clients each get a bounded queue."""

    def __init__(self, store, store_lock: threading.Lock, interval_s: float = 1.0):
        self.store = store
        self.store_lock = store_lock
        self.interval = interval_s
        self.fanout = Fanout()  # to browsers (SSE)
        self.seen: collections.OrderedDict[str, int] = collections.OrderedDict()  # uuid -> decision count
        self.stop_ev = threading.Event()
        self.errors = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._run, name="dashboard-poll", daemon=True)
        self._primed = False

    def publish(self, kind: str, data: dict) -> None:
        self.fanout.publish(kind, data)

    def stop(self) -> None:
        self.stop_ev.set()
        self.fanout.close()

    def _run(self) -> None:
        while not self.stop_ev.wait(self.interval if self._primed else 0):
            try:
                with self.store_lock:
                    self.poll()
            except Exception as e:  # a locked or briefly unavailable database: say so, try again next tick
                self.errors += 1
                self.last_error = str(e)
                log.warning("dashboard: store poll failed: %s", e)

    def poll(self) -> None:
        now = time.time()
        cps = [checkpoint_row(c, now) for c in self.store.checkpoints()]
        self.publish("checkpoints", {"checkpoints": cps})
        recent = self.store.alerts(limit=100)
        for a in reversed(recent):
            known = self.seen.get(a["uuid"])
            if known is not None and known > 0:
                continue  # decided alerts are final for the feed; later decisions show in the detail
            full = self.store.alert(a["uuid"])
            decisions = (full or {}).get("decisions") or []
            if known is None:
                self.seen[a["uuid"]] = len(decisions)
                if self._primed:
                    self.publish("alert", {"alert": feed_row(a, decisions)})
            elif len(decisions) > known:
                self.seen[a["uuid"]] = len(decisions)
                self.publish("decision", {"alert_uuid": a["uuid"], "decision": decisions[-1]["data"]})
        while len(self.seen) > 5000:
            self.seen.popitem(last=False)
        self._primed = True


@dataclass
class Dashboard:
    app: FastAPI
    auth: webauth.Authenticator
    poller: Poller
    store: object


def build_dashboard(cfg, store, data_dir: Path, poll_s: float = 1.0) -> Dashboard:
    """cfg: central.config.DashboardConfig (bind, users_file, secure_cookies)."""
    data_dir = Path(data_dir)
    users = Path(cfg.users_file) if cfg.users_file else data_dir / "users.toml"
    auth = webauth.Authenticator(users)
    store_lock = threading.Lock()  # the store is safe from one thread at a time (HubStore contract)
    poller = Poller(store, store_lock, poll_s)
    app = FastAPI(title="Zastava command", docs_url=None, redoc_url=None, openapi_url=None)
    counters = collections.Counter()

    def bad(msg: str, code: int = 400):
        counters["bad_requests"] += 1
        raise HTTPException(code, msg)

    add_pages(app, STATIC, {"/": "index.html", "/engineer": "engineer.html"})

    @app.get("/api/info")
    def info(request: Request):
        u = webauth.current_user(request)
        return {"user": u.name, "role": u.role, "csrf": webauth.new_csrf(request.session),
                "can_send": u.role in SENDING_ROLES, "severities": SEVERITIES, "sendable": SENDABLE,
                "offline_after_s": OFFLINE_AFTER_S}

    @app.get("/api/checkpoints")
    def checkpoints():
        now = time.time()
        with store_lock:
            return [checkpoint_row(c, now) for c in store.checkpoints()]

    @app.get("/api/alerts")
    def alerts(checkpoint: str | None = None, kind: str | None = None, severity: str | None = None,
               since: float | None = None, until: float | None = None, limit: int = 100, offset: int = 0):
        if severity and severity not in SEVERITIES:
            bad(f"severity must be one of {SEVERITIES}")
        if checkpoint and not SAFE_ID.match(checkpoint):
            bad("bad checkpoint id")
        if kind and len(kind) > 64:
            bad("kind too long")
        with store_lock:
            rows = store.alerts(checkpoint=checkpoint or None, kind=kind or None, severity=severity or None,
                                since=since, until=until, limit=max(1, min(limit, 500)), offset=max(0, offset))
            out = []
            for a in rows:
                full = store.alert(a["uuid"]) or {}
                out.append(feed_row(a, full.get("decisions") or []))
        return fast_json(out)

    @app.get("/api/alerts/{uuid}")
    def alert(uuid: str):
        with store_lock:
            a = store.alert(uuid)
        if a is None:
            raise HTTPException(404, "no such alert")
        return a

    @app.get("/files/{path:path}")
    def files(path: str):
        root = data_dir.resolve()
        p = (root / path).resolve()
        if root not in p.parents or not p.is_file() or p.name.startswith(".") or p.suffix in (".sqlite", ".toml", ".key"):
            counters["refused_paths"] += 1
            raise HTTPException(404, "not found")
        return FileResponse(p, headers={"cache-control": "private, max-age=3600"})

    @app.get("/api/downlinks")
    def downlinks():
        with store_lock:
            return store.downlinks()[:300]

    @app.post("/api/downlinks")
    def send_downlink(body: DownlinkIn, request: Request):
        u = webauth.current_user(request)
        if u.role not in SENDING_ROLES:
            bad("only supervisors send documents to checkpoints", 403)
        if body.kind not in SENDABLE:
            bad(f"kind must be one of {SENDABLE}")
        bad_ids = [t for t in body.targets if not SAFE_ID.match(t)]
        if bad_ids:
            bad(f"bad checkpoint ids: {bad_ids[:5]}")
        try:
            doc = parse_doc(body.text)
            check_doc(body.kind, doc)
        except (ValueError, WireError) as e:
            bad(f"document refused: {e}")
        with store_lock:
            version = store.queue_downlink(body.kind, doc, sorted(set(body.targets)))
        counters["downlinks_sent"] += 1
        log.info("dashboard: %s queued %s v%d for %s", u.name, body.kind, version, ",".join(body.targets))
        poller.publish("downlink", {"version": version, "kind": body.kind, "targets": body.targets, "by": u.name})
        return {"version": version, "kind": body.kind, "targets": sorted(set(body.targets))}

    @app.get("/api/engineer/status")
    def engineer_status():
        now = time.time()
        with store_lock:
            cps = [checkpoint_row(c, now) for c in store.checkpoints()]
            n = store.count_alerts()
        return {"checkpoints": cps, "alerts_stored": n, "dashboard": dict(counters), "auth": asdict(auth.counters),
                "poller": {"errors": poller.errors, "last_error": poller.last_error, "clients": poller.fanout.clients,
                           "dropped": poller.fanout.dropped}}

    @app.get("/api/events")
    async def events(request: Request):
        return StreamingResponse(poller.fanout.stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    webauth.install(app, auth, webauth.session_secret(data_dir / "dashboard_session.key"), cfg.secure_cookies,
                    cookie_name="zastava_command", rules=ROLE_RULES, title="Zastava command")
    return Dashboard(app, auth, poller, store)


class DashboardHandle:
    def __init__(self, dash: Dashboard, server, thread: threading.Thread):
        self.dashboard = dash
        self.server = server
        self.thread = thread

    def stop(self, timeout: float = 1.5) -> None:
        self.dashboard.poller.stop()  # ends the SSE streams so uvicorn can shut down
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(0.5)
        self.dashboard.poller.thread.join(1.0)


def start_dashboard(cfg, store, data_dir: Path, stop: threading.Event | None = None,
                    poll_s: float = 1.0) -> DashboardHandle:
    """Serve the dashboard on cfg.bind (127.0.0.1:8090 by default) in a daemon thread.

    `stop`, if given, is the central process's stop event: when it is set the dashboard stops itself.
    """
    from common.webserve import serve_in_thread

    dash = build_dashboard(cfg, store, data_dir, poll_s=poll_s)
    dash.poller.thread.start()
    try:
        server, t = serve_in_thread(dash.app, cfg.bind, "dashboard-http", "dashboard")
    except RuntimeError:
        dash.poller.stop()
        raise
    handle = DashboardHandle(dash, server, t)
    if stop is not None:
        threading.Thread(target=lambda: (stop.wait(), handle.stop()), name="dashboard-stop", daemon=True).start()
    log.info("dashboard listening on http://%s", cfg.bind)
    return handle
