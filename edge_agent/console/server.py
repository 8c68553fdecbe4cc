"""The officer console: a FastAPI app served by uvicorn in a thread of the agent process.

    start_console(cfg, state, store_path, files_root, stop) -> ConsoleHandle   (handle.stop(timeout))
    build_console(cfg, state, store_path, files_root) -> Console              (the app, for tests)

Pages are static HTML/JS/CSS (no build step) that fetch JSON from /api and follow /api/events (SSE).
Every route, static files included, sits behind common.webauth's AuthGate; writes need the CSRF header.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import uuid as _uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from common import clock, webauth
from common.webstatic import add_pages
from edge_agent.console.live import SCORED_ROLES, ConsoleLive
from edge_agent.console.tip import TipScores
from edge_agent.state import AgentState

log = logging.getLogger("zastava.console")

STATIC = Path(__file__).parent / "static"
DECISIONS = ("cleared", "searched_nothing_found", "contraband_found")
CONTRABAND_KINDS = ("narcotics", "weapon", "explosives", "currency", "tobacco", "alcohol", "wildlife",
                    "counterfeit", "other")
DECIDING_ROLES = ("officer", "supervisor")
ROLE_RULES = {
    "/engineer": ("engineer", "supervisor"),
    "/api/engineer": ("engineer", "supervisor"),
    "/supervisor": ("supervisor",),
    "/api/supervisor": ("supervisor",),
}
def fast_json(obj) -> Response:
    """Plain json.dumps: FastAPI's jsonable_encoder walks every value first, several times slower for a
    page of alerts (bench/bench_console.py measures it), and these are already plain JSON types."""
    return Response(json.dumps(obj, default=str), media_type="application/json")


SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


# How long a console request waits for a database another process holds locked before it is
# answered 503 (try again): an officer waiting half a minute on a button learns nothing.
CONSOLE_BUSY_S = 5.0


class Stores:
    """One Store (and FileStore) per thread: a sqlite3 connection belongs to the thread that made it."""

    def __init__(self, store_path: Path, files_root: Path, quota_bytes: int, hard_limit_bytes: int):
        self.store_path = Path(store_path)
        self.files_root = Path(files_root)
        self.quota = quota_bytes
        self.hard = hard_limit_bytes
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()

    def get(self):
        from edge_agent.evidence import FileStore
        from edge_agent.store import Store

        pair = getattr(self._local, "pair", None)
        if pair is None:
            s = Store(self.store_path, CONSOLE_BUSY_S)
            pair = (s, FileStore(s, self.files_root, self.quota, self.hard))
            self._local.pair = pair
            with self._lock:
                self._all.append(s)
        return pair

    def close_all(self) -> None:
        """Close what can be closed from this thread; sqlite3 refuses to close another thread's
        connection, and those go when their worker thread and its objects are collected."""
        with self._lock:
            for s in self._all:
                try:
                    s.close()
                except Exception as e:  # a connection of a finished thread; nothing more to do with it
                    log.debug("console: closing a store connection: %s", e)
            self._all.clear()


class DecisionIn(BaseModel):
    decision: str = Field(max_length=40)
    contraband_kind: str | None = Field(None, max_length=40)
    note: str | None = Field(None, max_length=500)


class FlagIn(BaseModel):
    bag_id: str = Field(max_length=128)


@dataclass
class Console:
    app: FastAPI
    live: ConsoleLive
    auth: webauth.Authenticator
    stores: Stores
    scores: TipScores


def users_path(cfg) -> Path:
    return Path(cfg.console.users_file) if cfg.console.users_file else Path(cfg.storage.dir) / "users.toml"


def build_console(cfg, state: AgentState, store_path: Path, files_root: Path, tip_seed: int | None = None) -> Console:
    root = Path(cfg.storage.dir)
    stores = Stores(store_path, files_root, cfg.storage.quota_mb << 20, cfg.storage.hard_limit_mb << 20)
    scores = TipScores(root / "console_tip.sqlite")
    live = ConsoleLive(state, stores, files_root, cfg.console.tip_rate, scores, cfg.checkpoint_id, seed=tip_seed)
    auth = webauth.Authenticator(users_path(cfg))
    app = FastAPI(title="Zastava officer console", docs_url=None, redoc_url=None, openapi_url=None)
    counters = {"bad_requests": 0, "decisions": 0, "refused_paths": 0}

    def bad(msg: str, code: int = 400):
        counters["bad_requests"] += 1
        raise HTTPException(code, msg)

    # --- pages -----------------------------------------------------------------------------
    add_pages(app, STATIC, {"/": "index.html", "/engineer": "engineer.html", "/supervisor": "supervisor.html"})

    # --- reads -----------------------------------------------------------------------------
    @app.get("/api/info")
    def info(request: Request):
        u = webauth.current_user(request)
        return {"checkpoint": cfg.checkpoint_id, "user": u.name, "role": u.role,
                "lanes": [x.id for x in cfg.lanes] or sorted(state.bags),
                "receivers": [x.id for x in cfg.receivers] or sorted(state.receivers),
                "decisions": DECISIONS, "contraband_kinds": CONTRABAND_KINDS,
                "csrf": webauth.new_csrf(request.session), "tip": cfg.console.tip_rate > 0}

    @app.get("/api/lanes")
    def lanes():
        with state.lock:
            snap = {lane: [dict(b.__dict__) for b in list(bags)[:12]] for lane, bags in state.bags.items()}
        return fast_json({lane: [live.bag_json(b) for b in bags] for lane, bags in snap.items()})

    @app.get("/api/bags/{lane}/{bag_id}/image")
    def bag_image(lane: str, bag_id: str):
        rel = live.image_rel(lane, bag_id)
        if rel is None:
            raise HTTPException(404, "no such bag")
        return serve_file(rel)

    @app.get("/api/alerts")
    def alerts(limit: int = 100, since: float | None = None):
        store, _ = stores.get()
        rows = store.alerts(limit=max(1, min(limit, 500)), since=since)
        for r in rows:
            r["decisions"] = store.decisions_for(r["uuid"])
        return fast_json(rows)

    @app.get("/api/alerts/{uuid}")
    def alert(uuid: str):
        store, _ = stores.get()
        a = store.get_alert(uuid)
        if a is None or a["tip"]:
            raise HTTPException(404, "no such alert")
        a["decisions"] = store.decisions_for(uuid)
        return a

    @app.get("/api/receivers")
    def receivers(rows: int = 120):
        out = {}
        with state.lock:
            views = list(state.receivers.values())
        for v in views:
            wf = list(v.waterfall)[-max(1, min(rows, 256)):]
            step = max(1, (len(wf[0]) if wf else 1) // 512)
            out[v.receiver] = {"center_hz": v.center_hz, "rate_hz": v.rate_hz, "emitters": list(v.emitters),
                               "waterfall": [[round(float(x), 1) for x in r[::step]] for r in wf]}
        return out

    @app.get("/api/status")
    def status():
        return live.status()

    @app.get("/files/{path:path}")
    def files(path: str):
        return serve_file(path)

    def serve_file(rel: str) -> FileResponse:
        _, fs = stores.get()
        try:
            p = fs.abspath(rel)
        except ValueError:
            counters["refused_paths"] += 1
            raise HTTPException(404, "not found") from None
        if not p.is_file() or p.name.startswith("."):
            raise HTTPException(404, "not found")
        return FileResponse(p, headers={"cache-control": "private, max-age=3600"})

    # --- writes ----------------------------------------------------------------------------
    @app.post("/api/alerts/{uuid}/decision")
    def decide(uuid: str, body: DecisionIn, request: Request):
        u = webauth.current_user(request)
        if u.role not in DECIDING_ROLES:
            counters["bad_requests"] += 1
            raise HTTPException(403, "only officers and supervisors record decisions")
        if body.decision not in DECISIONS:
            bad(f"decision must be one of {DECISIONS}")
        kind = body.contraband_kind
        if body.decision == "contraband_found":
            if kind not in CONTRABAND_KINDS:
                bad(f"contraband_kind must be one of {CONTRABAND_KINDS}")
        elif kind:
            bad("contraband_kind only goes with contraband_found")
        store, _ = stores.get()
        a = store.get_alert(uuid)
        if a is None or a["tip"]:
            bad("no such alert", 404)
        d = {"uuid": str(_uuid.uuid4()), "alert_uuid": uuid, "officer": u.name, "decision": body.decision,
             "contraband_kind": kind, "note": (body.note or None), "t": time.time(),
             "clock_offset_s": clock.offset_now(state.link.get("clock_measure"))}  # for central (common/clock.py)
        store.add_decision(d)
        counters["decisions"] += 1
        live.bus.publish("decision", {"decision": d})
        log.info("console: %s decided %s on alert %s", u.name, body.decision, uuid)
        return d

    @app.post("/api/lanes/{lane}/flag")
    def flag(lane: str, body: FlagIn, request: Request):
        u = webauth.current_user(request)
        if u.role not in SCORED_ROLES:
            bad("only officers flag bags", 403)
        if not SAFE_ID.match(lane) or not SAFE_ID.match(body.bag_id):
            bad("bad lane or bag id")
        r = live.flag(u.name, lane, body.bag_id)
        if not r["ok"]:
            bad(r["error"], 404)
        return r

    # --- live events (SSE) -------------------------------------------------------------------
    @app.get("/api/events")
    async def events(request: Request):
        u = webauth.current_user(request)
        scored = u.role in SCORED_ROLES

        async def gen():
            # Whoever has the stream open is watching the lanes: scored on projections shown meanwhile.
            if scored:
                live.watch(u.name)
            try:
                async for chunk in live.bus.stream():
                    yield chunk
            finally:
                if scored:
                    live.unwatch(u.name)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    # --- role pages' data ----------------------------------------------------------------------
    @app.get("/api/engineer/health")
    def engineer_health():
        store, fs = stores.get()
        return {"snapshot": state.snapshot(), "stored_health": store.health(), "backlog": store.backlog(),
                "alerts_stored": store.count_alerts(), "storage_used_bytes": fs.used(),
                "event_bus_dropped": state.events.dropped,
                "console": {**counters, "sse_clients": live.bus.clients, "sse_dropped": live.bus.dropped},
                "console_live": dict(live.counters), "auth": asdict(auth.counters),
                "receivers": {k: {"center_hz": v.center_hz, "rate_hz": v.rate_hz, "rows": len(v.waterfall)}
                              for k, v in list(state.receivers.items())}}

    @app.get("/api/supervisor/tip")
    def supervisor_tip():
        return {"tip_rate": cfg.console.tip_rate, "scores": [asdict(s) for s in scores.scores()],
                "recent": scores.trials()[-50:][::-1]}

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(sqlite3.OperationalError)
    async def store_busy(request: Request, exc: sqlite3.OperationalError):
        # a database another process holds locked, a disk that refuses: the write was one
        # transaction, so nothing of it stands; the officer is told to try again, not shown a 500
        log.warning("console: %s %s: the store failed: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"the checkpoint's store is busy ({exc}): not saved, try again in a moment"},
                            status_code=503, headers={"retry-after": "5"})

    webauth.install(app, auth, webauth.session_secret(root / "console_session.key"), cfg.console.secure_cookies,
                    cookie_name="zastava_console", rules=ROLE_RULES, title=f"Zastava console — {cfg.checkpoint_id}")
    return Console(app, live, auth, stores, scores)


class ConsoleHandle:
    def __init__(self, console: Console, server, thread: threading.Thread):
        self.console = console
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        for s in getattr(self.server, "servers", []) or []:
            for sock in s.sockets:
                return sock.getsockname()[1]
        return 0

    def stop(self, timeout: float = 1.5) -> None:
        self.console.live.stop(timeout=min(timeout, 0.6))  # ends SSE streams so uvicorn can shut down
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(0.5)
        self.console.scores.close()


def start_console(cfg, state: AgentState, store_path: Path, files_root: Path, stop: threading.Event | None = None,
                  tip_seed: int | None = None) -> ConsoleHandle:
    """Serve the console on cfg.console.bind in a daemon thread; returns once it is listening.

    `stop` is the agent's stop event; the agent ends the console with handle.stop(), so it is not waited on.
    """
    from common.webserve import serve_in_thread

    console = build_console(cfg, state, Path(store_path), Path(files_root), tip_seed=tip_seed)
    console.live.start()
    try:
        server, t = serve_in_thread(console.app, cfg.console.bind, "console-http", "console")
    except RuntimeError:
        console.live.stop()
        raise
    log.info("console listening on http://%s", cfg.console.bind)
    if not console.auth.users():
        log.warning("console: no users in %s; add one with: python -m common.webauth add-user %s NAME ROLE",
                    users_path(cfg), users_path(cfg))
    return ConsoleHandle(console, server, t)
