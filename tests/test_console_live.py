"""The console served by uvicorn in a thread (as the agent runs it): SSE live updates and TIP scoring."""

from __future__ import annotations

import json
import threading
import time

import cv2
import httpx
import numpy as np
import pytest

from edge_agent.console.server import start_console
from edge_agent.evidence import FileStore
from edge_agent.state import AgentState
from edge_agent.store import Store
from tests.conftest import free_port, wait_for
from tests.test_console_fixtures import PASSWORDS, add_bag, make_cfg, make_users


def http_login(base: str, name: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=10)
    page = c.get("/login").text
    tok = page.split('name="csrf" value="')[1].split('"')[0]
    r = c.post("/login", data={"username": name, "password": PASSWORDS[name], "csrf": tok})
    assert r.status_code in (200, 303), r.text
    c.headers["x-csrf-token"] = c.get("/api/me").json()["csrf"]
    return c


class SSE:
    """Reads /api/events in a thread and keeps every event, as the browser's EventSource would."""

    def __init__(self, client: httpx.Client):
        self.events: list[tuple[str, dict]] = []
        self.client = client
        self.open = threading.Event()
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.open.wait(5)

    def _run(self):
        try:
            self._read()
        except (httpx.ReadError, httpx.StreamError, httpx.RemoteProtocolError):
            if not self._stop:  # closing the client under a blocked read ends it this way
                raise

    def _read(self):
        with self.client.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=None)) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            self.open.set()
            name = None
            for line in r.iter_lines():
                if self._stop:
                    break
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    self.events.append((name, json.loads(line[6:])))

    def of(self, kind: str) -> list[dict]:
        return [d for n, d in self.events if n == kind]

    def close(self):
        self._stop = True
        self.client.close()


@pytest.fixture
def running(tmp_path):
    cfg = make_cfg(tmp_path, tip_rate=0.5, bind=f"127.0.0.1:{free_port()}")
    make_users(cfg)
    root = cfg.storage.dir
    store = Store(root / "store.sqlite")
    files = FileStore(store, root / "files", 1 << 30, 1 << 31)
    state = AgentState(cfg.checkpoint_id)
    handle = start_console(cfg, state, store.path, files.root, threading.Event(), tip_seed=2)  # seeded: the first bag stays clear
    yield f"http://{cfg.console.bind}", handle, cfg, state, store, files
    t0 = time.monotonic()
    handle.stop(timeout=3)
    assert time.monotonic() - t0 < 3.5 and not handle.thread.is_alive()
    store.close()


def test_refuses_anonymous_over_real_http(running):
    base, *_ = running
    with httpx.Client(base_url=base) as c:
        assert c.get("/api/events").status_code == 401
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"accept": "text/html"}).headers["location"] == "/login"


def tip_bags(store) -> dict[str, dict]:
    return {a["bag_id"]: a for a in store.alerts(limit=500, include_tip=True) if a["tip"]}


def test_live_events_and_tip_scoring(running):
    base, handle, cfg, state, store, files = running
    olga = http_login(base, "olga")
    sse = SSE(olga)
    # Clear bags until the console has projected two threats (tip_rate 0.5, seeded) and left some clear.
    n = 0
    while len(tip_bags(store)) < 2 and n < 40:
        n += 1
        add_bag(state, store, files, "L1", f"bag-{n}", seed=n)
        wait_for(lambda n=n: any(b["bag"]["bag_id"] == f"bag-{n}" for b in sse.of("bag")), 5, what="bag event")
        tips = tip_bags(store)
        if f"bag-{n}" in tips and len(tips) == 1:
            first = f"bag-{n}"
            # the officer finds the first projection
            time.sleep(0.3)
            r = olga.post("/api/lanes/L1/flag", json={"bag_id": first}).json()
            assert r["tip"] and r["result"] == "hit" and r["response_s"] >= 0.3 and len(r["box"]) == 4
            assert olga.post("/api/lanes/L1/flag", json={"bag_id": first}).json()["result"] == "hit"  # not twice
    tips = tip_bags(store)
    assert len(tips) == 2, f"no two projections in {n} bags"
    second = max(tips, key=lambda b: int(b.split("-")[1]))
    # the second projection passes unflagged: the next bag replaces it -> a miss
    add_bag(state, store, files, "L1", "bag-next", seed=99, narcotics=True)
    wait_for(lambda: any(b["bag"]["bag_id"] == "bag-next" for b in sse.of("bag")), 5, what="next bag")
    # a flag on a bag with no projection is a false alarm
    clear = next(f"bag-{i}" for i in range(1, n + 1) if f"bag-{i}" not in tips)
    fa = olga.post("/api/lanes/L1/flag", json={"bag_id": clear}).json()
    assert fa["tip"] is False and fa["result"] == "false_alarm"
    assert olga.post("/api/lanes/L1/flag", json={"bag_id": "no-such-bag"}).status_code == 404

    # a projected bag looks like any clear bag to the browser: same fields, no findings, image URL by bag
    proj = next(b["bag"] for b in sse.of("bag") if b["bag"]["bag_id"] == second)
    plain = next(b["bag"] for b in sse.of("bag") if b["bag"]["bag_id"] == clear)
    assert proj.keys() == plain.keys() and proj["findings"] == []
    shown = cv2.imdecode(np.frombuffer(olga.get(proj["image_url"]).content, np.uint8), cv2.IMREAD_COLOR)
    raw = cv2.imread(str(files.root / state_bag(state, second).image_path))
    x1, y1, x2, y2 = tips[second]["location"]["box"]
    diff = np.abs(shown.astype(int) - raw.astype(int))[y1:y2, x1:x2].mean()
    assert diff > 8, "the projected threat is not visible in the image the officer gets"

    sam = http_login(base, "sam")
    score = {s["officer"]: s for s in sam.get("/api/supervisor/tip").json()["scores"]}["olga"]
    assert (score["projections"], score["hits"], score["misses"], score["false_alarms"]) == (2, 1, 1, 1)
    assert score["hit_rate"] == 0.5 and score["mean_response_s"] >= 0.3

    # projections never reach central: TIP alerts and their decisions have no outbox rows
    out_ids = {r["msg_id"] for r in store.db.query("SELECT msg_id FROM outbox")}
    assert not set(a["uuid"] for a in tips.values()) & out_ids
    assert not any(":" in i for i in out_ids)  # TIP decisions are "<tip uuid>:<officer>"
    assert {d["decision"] for a in tips.values() for d in store.decisions_for(a["uuid"])} == {"tip_hit", "tip_miss"}
    # and the officer's alert queue never lists them
    assert not any(a["kind"].startswith("tip.") for a in olga.get("/api/alerts").json())
    # the live feed carried the real alert, the status heartbeat too
    assert any(a["alert"]["kind"] == "xray.narcotics" for a in sse.of("alert"))
    wait_for(lambda: sse.of("status"), 5, what="status event")
    sse.close()
    sam.close()


def state_bag(state, bag_id):
    return next(b for b in state.bags["L1"] if b.bag_id == bag_id)


def test_decision_published_live(running):
    base, handle, cfg, state, store, files = running
    olga = http_login(base, "olga")
    sse = SSE(http_login(base, "oleg"))
    _, alerts = add_bag(state, store, files, "L1", "bag-x", seed=3, narcotics=True)
    wait_for(lambda: sse.of("alert"), 5, what="alert event")
    r = olga.post(f"/api/alerts/{alerts[0].uuid}/decision", json={"decision": "searched_nothing_found"})
    assert r.status_code == 200
    wait_for(lambda: sse.of("decision"), 5, what="decision event")
    assert sse.of("decision")[0]["decision"]["officer"] == "olga"
    sse.close()
    olga.close()


def test_busy_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = make_cfg(tmp_path, bind=f"127.0.0.1:{port}")
        make_users(cfg)
        store = Store(cfg.storage.dir / "store.sqlite")
        with pytest.raises(RuntimeError, match=f"could not listen on 127.0.0.1:{port}: .*in use"):
            start_console(cfg, AgentState("cp-test"), store.path, cfg.storage.dir / "files", threading.Event())
        store.close()
