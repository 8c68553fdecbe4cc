"""Officer console and command dashboard: what the web layer costs over the bare store and queues.

Measured in one run, each beside the bare library doing the same work:
  console  GET /api/alerts?limit=100 over HTTP (uvicorn thread, keep-alive)  vs  Store.alerts + decisions_for
  dashboard GET /api/alerts?limit=100 over HTTP                              vs  HubStore.alerts + alert() per row
  live     AgentState event -> browser SSE line                              vs  queue.Queue put -> get across threads
  TIP      draw_threat into a 1024x640 bag (+ JPEG encode)                   vs  bare OpenCV fillPoly + multiply (+ encode)

    .venv/bin/python bench/bench_console.py [--quick]
writes bench/results/console.json
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
import tempfile
import threading
import time
import uuid as _uuid
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from central.config import DashboardConfig  # noqa: E402
from central.dashboard.server import start_dashboard  # noqa: E402
from central.store import Inbound, open_store  # noqa: E402
from common import webauth  # noqa: E402
from edge_agent.alerts import Alert  # noqa: E402
from edge_agent.config import AgentConfig  # noqa: E402
from edge_agent.console.server import start_console  # noqa: E402
from edge_agent.console.tip import draw_threat  # noqa: E402
from edge_agent.state import AgentState, BagView  # noqa: E402
from edge_agent.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"p50_ms": round(1000 * xs[len(xs) // 2], 3), "p99_ms": round(1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))], 3),
            "n": len(xs)}


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def login(base: str, name: str, pw: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=10)
    tok = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
    c.post("/login", data={"username": name, "password": pw, "csrf": tok})
    return c


def bench_console(tmp: Path, n: int) -> dict:
    cfg = AgentConfig.model_validate({"checkpoint_id": "bench", "storage": {"dir": str(tmp / "agent")},
                                      "console": {"secure_cookies": False, "bind": f"127.0.0.1:{free_port()}"}})
    webauth.add_user(cfg.storage.dir / "users.toml", "olga", "officer", "bench-password")
    store = Store(cfg.storage.dir / "store.sqlite")
    now = time.time()
    for i in range(1000):
        a = Alert(checkpoint="bench", source="L1", kind="xray.narcotics", score=0.9, severity="high", t=now - i,
                  location={"box": [1, 2, 3, 4]}, reason="bench")
        store.add_alert(a)
        if i % 3 == 0:
            store.add_decision({"uuid": str(_uuid.uuid4()), "alert_uuid": a.uuid, "officer": "olga",
                                "decision": "cleared", "contraband_kind": None, "note": None, "t": now})
    state = AgentState("bench")
    h = start_console(cfg, state, store.path, cfg.storage.dir / "files", threading.Event())
    base = f"http://{cfg.console.bind}"
    c = login(base, "olga", "bench-password")

    def bare():
        rows = store.alerts(limit=100)
        for r in rows:
            r["decisions"] = store.decisions_for(r["uuid"])
        return json.dumps(rows)

    for _ in range(5):
        c.get("/api/alerts?limit=100")
    http = timed(lambda: c.get("/api/alerts?limit=100").raise_for_status(), n)
    base_t = timed(bare, n)

    # live: a bag event published on the agent's bus until its SSE line arrives
    lat: list[float] = []
    got = threading.Event()
    sent_at: dict[str, float] = {}

    def reader():
        with c.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=None)) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and '"bag"' in line[:40]:
                    ev = json.loads(line[6:])
                    t = sent_at.get(ev["bag"]["bag_id"])
                    if t is not None:
                        lat.append(time.perf_counter() - t)
                        got.set()
                if stop.is_set():
                    break

    stop = threading.Event()
    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.5)
    for i in range(max(20, n // 5)):
        got.clear()
        bid = f"b{i}"
        sent_at[bid] = time.perf_counter()
        state.add_bag(BagView("L1", bid, time.time(), "raw/x.jpg", [], [], 640, 400))
        got.wait(5)
    stop.set()
    q: queue.Queue = queue.Queue()
    qlat: list[float] = []

    def consumer():
        while True:
            t = q.get()
            if t is None:
                return
            qlat.append(time.perf_counter() - t)

    th = threading.Thread(target=consumer)
    th.start()
    for _ in range(max(20, n // 5)):
        q.put(time.perf_counter())
        time.sleep(0.01)
    q.put(None)
    th.join()
    h.stop(timeout=2)
    c.close()
    store.close()
    return {"console_alerts_http": pct(http), "bare_store_alerts_decisions": pct(base_t),
            "live_event_to_sse": pct(lat), "bare_queue_handoff": pct(qlat)}


def bench_dashboard(tmp: Path, n: int) -> dict:
    data = tmp / "central"
    data.mkdir()
    webauth.add_user(data / "users.toml", "sam", "supervisor", "bench-password")
    store = open_store(f"sqlite:///{data / 'central.sqlite'}")
    now = time.time()
    items = []
    for i in range(2000):
        uid = str(_uuid.uuid4())
        items.append(Inbound(uid, "alert", f"cp-{i % 20:02d}", now - i, {"uuid": uid, "t": now - i, "kind": "xray.narcotics",
                                                                        "severity": "high", "score": 0.9, "source": "L1",
                                                                        "reason": "bench"}))
        if i % 2:
            d = str(_uuid.uuid4())
            items.append(Inbound(d, "decision", f"cp-{i % 20:02d}", now, {"uuid": d, "alert_uuid": uid,
                                                                          "decision": "cleared", "officer": "olga"}))
    store.write_batch(items)
    cfg = DashboardConfig(secure_cookies=False, bind=f"127.0.0.1:{free_port()}")
    stop = threading.Event()
    h = start_dashboard(cfg, store, data, stop)
    c = login(f"http://{cfg.bind}", "sam", "bench-password")
    for _ in range(5):
        c.get("/api/alerts?limit=100")
    http = timed(lambda: c.get("/api/alerts?limit=100").raise_for_status(), n)
    bare_list = timed(lambda: json.dumps(store.alerts(limit=100)), n)
    bare_n1 = timed(lambda: json.dumps([store.alert(a["uuid"]) for a in store.alerts(limit=100)]), n)
    c.close()
    h.stop(timeout=2)
    store.close()
    return {"dashboard_alerts_http": pct(http), "bare_hubstore_alerts": pct(bare_list),
            "bare_hubstore_alerts_plus_detail_per_row": pct(bare_n1)}


def bench_tip(n: int) -> dict:
    rng = np.random.default_rng(1)
    img = np.full((640, 1024, 3), 240, np.uint8)
    cv2.rectangle(img, (150, 100), (880, 560), (120, 170, 215), -1)
    ours = timed(lambda: cv2.imencode(".jpg", draw_threat(img, "knife", rng)[0]), n)
    poly = np.array([[300, 300], [450, 290], [470, 310], [300, 320]], np.int32)

    def bare():
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [poly], 255)
        factor = np.where(mask[..., None] > 0, np.array([0.8, 0.34, 0.12], np.float32), 1.0).astype(np.float32)
        return cv2.imencode(".jpg", cv2.multiply(img.astype(np.float32), factor).astype(np.uint8))

    return {"tip_draw_threat_plus_jpeg": pct(ours), "bare_opencv_fillpoly_multiply_jpeg": pct(timed(bare, n))}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 40 if args.quick else 300
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res = {**bench_console(tmp, n), **bench_dashboard(tmp, n), **bench_tip(n)}
    res["quick"] = args.quick
    print(f"{'measure':<45} {'p50 ms':>9} {'p99 ms':>9} {'n':>5}")
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{k:<45} {v['p50_ms']:>9.3f} {v['p99_ms']:>9.3f} {v['n']:>5}")
    out = ROOT / "bench" / "results" / "console.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
