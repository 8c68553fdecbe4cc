"""Command dashboard over HTTP: the real app on central's real SQLite store, filled through its hub API."""

from __future__ import annotations

import json
import threading
import time
import uuid as _uuid
from pathlib import Path

import cv2
import httpx
import pytest
from fastapi.testclient import TestClient

from central.config import DashboardConfig
from central.dashboard.server import build_dashboard, parse_doc, start_dashboard
from central.store import EvidenceRow, Inbound, open_store
from common import webauth
from tests.conftest import free_port, wait_for
from tests.test_console_fixtures import PASSWORDS, ROLES, bag_image, csrf, login


def fill_users(data_dir: Path) -> None:
    for name, pw in PASSWORDS.items():
        webauth.add_user(data_dir / "users.toml", name, ROLES[name], pw)


def put_alert(store, data_dir: Path, cp: str, kind: str, severity: str, t: float, seed: int = 1, **more) -> str:
    """An alert as a checkpoint sends it, through the hub's store API; `more` adds to its data
    (e.g. clock fields)."""
    uid = str(_uuid.uuid4())
    ev = []
    if kind.startswith("xray."):
        ok, jpg = cv2.imencode(".jpg", bag_image(seed))
        rel = f"evidence/{cp}/{uid}/frame.jpg"
        (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / rel).write_bytes(jpg.tobytes())
        ev = [EvidenceRow("frame.jpg", "image/jpeg", len(jpg), "0" * 64, rel)]
    data = {"uuid": uid, "checkpoint": cp, "source": "L1" if kind.startswith("xray.") else "rx1", "kind": kind,
            "score": 0.9, "severity": severity, "t": t, "clock": "ntp-synced", "bag_id": f"bag-{seed}",
            "location": {"box": [200, 160, 300, 240]} if kind.startswith("xray.") else
            {"center_hz": 446.1e6, "bandwidth_hz": 12.5e3},
            "reason": f"{kind.split('.')[1]} (score 0.90)", "evidence": [], "fusion": None, "extra": {}, **more}
    assert store.write_batch([Inbound(uid, "alert", cp, t, data, ev)]) == [True]
    return uid


def put_decision(store, cp: str, alert_uuid: str, officer: str = "olga", decision: str = "contraband_found",
                 kind: str | None = "narcotics") -> dict:
    d = {"uuid": str(_uuid.uuid4()), "alert_uuid": alert_uuid, "officer": officer, "decision": decision,
         "contraband_kind": kind, "note": "found in lining", "t": time.time()}
    assert store.write_batch([Inbound(d["uuid"], "decision", cp, d["t"], d)]) == [True]
    return d


@pytest.fixture
def central(tmp_path):
    data = tmp_path / "central"
    data.mkdir()
    fill_users(data)
    store = open_store(f"sqlite:///{data / 'central.sqlite'}")
    now = time.time()
    store.seen("cp-north", now, backlog=3, skew_s=0.012, health_t=now,
               health={"devices": {"L1.source": {"state": "ok"},
                                   "rx1.source": {"state": "stalled", "last_error": "no samples"}},
                       "pipelines": {"L1": {"bags_failed": 2, "last_failed": {
                                         "bag_id": "B9", "t": now - 60, "reason": "OSError: disk full"}},
                                     "L2": {"bags_failed": 1, "last_failed": {
                                         "bag_id": "B1", "t": now - 3600, "reason": "an hour ago"}},
                                     "rx1": {"frames": 10}, "L3": {"last_failed": {"t": "garbled"}},
                                     "L4": "not a map"},
                       "storage": {"free_bytes": 300 << 20, "min_free_bytes": 1 << 30, "low": True}})
    store.seen("cp-south", now - 600, backlog=120, health={"storage": "garbled"})
    yield store, data
    store.close()


@pytest.fixture
def dash(central):
    store, data = central
    d = build_dashboard(DashboardConfig(secure_cookies=False), store, data)
    return d, store, data


def client(d, name=None):
    c = TestClient(d.app)
    if name:
        assert login(c, name).status_code == 303
    return c


def test_refuses_anonymous_everywhere(dash):
    d, store, data = dash
    c = client(d)
    for r in d.app.routes:
        path = getattr(r, "path", "")
        if not path or path in ("/login", "/favicon.ico"):  # public by design
            continue
        p = path.replace("{path:path}", "evidence/x.jpg").replace("{uuid}", "x").replace("{name}", "x")
        for m in getattr(r, "methods", {"GET"}):
            assert c.request(m, p, json={}).status_code == 401, (m, p)


def test_checkpoints_online_offline_backlog_health(dash):
    d, store, data = dash
    c = client(d, "olga")
    cps = {x["id"]: x for x in c.get("/api/checkpoints").json()}
    assert cps["cp-north"]["online"] and not cps["cp-south"]["online"]
    assert cps["cp-north"]["backlog"] == 3 and cps["cp-south"]["backlog"] == 120
    assert cps["cp-north"]["devices_bad"] == ["rx1.source"] and cps["cp-north"]["devices_total"] == 2
    assert cps["cp-north"]["clock_skew_s"] == pytest.approx(0.012)
    # a lane that let a bag through unscreened in the last 15 min; one an hour ago no longer counts
    assert list(cps["cp-north"]["lanes_failing"]) == ["L1"] and cps["cp-north"]["lanes_failing"]["L1"]["bag_id"] == "B9"
    assert cps["cp-south"]["lanes_failing"] == {}
    # a checkpoint whose disk is under its floor (raw data being deleted to make room) says so
    assert cps["cp-north"]["disk_low"] is True and cps["cp-south"]["disk_low"] is False


def test_feed_filters_detail_and_evidence(dash):
    d, store, data = dash
    now = time.time()
    a1 = put_alert(store, data, "cp-north", "xray.narcotics", "high", now - 10)
    a2 = put_alert(store, data, "cp-south", "rf.unlicensed", "medium", now - 20)
    a3 = put_alert(store, data, "cp-north", "xray.weapon", "critical", now - 7200)
    put_decision(store, "cp-north", a1)
    c = client(d, "olga")
    ids = lambda **q: [a["uuid"] for a in c.get("/api/alerts", params=q).json()]  # noqa: E731
    assert ids() == [a1, a2, a3]
    assert ids(checkpoint="cp-north") == [a1, a3]
    assert ids(kind="xray.") == [a1, a3] and ids(kind="rf.") == [a2]
    assert ids(severity="critical") == [a3]
    assert ids(limit=1, offset=1) == [a2]  # the page's "load older"
    assert ids(since=now - 3600) == [a1, a2]
    assert ids(since=now - 3600, checkpoint="cp-north", kind="xray.narcotics", severity="high") == [a1]
    assert c.get("/api/alerts", params={"severity": "apocalyptic"}).status_code == 400
    assert c.get("/api/alerts", params={"checkpoint": "../x"}).status_code == 400
    feed = c.get("/api/alerts").json()
    assert feed[0]["decision"]["decision"] == "contraband_found" and feed[1]["decision"] is None
    det = c.get(f"/api/alerts/{a1}").json()
    assert det["decisions"][0]["data"]["officer"] == "olga"
    img = c.get("/files/" + det["evidence"][0]["path"])
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    for bad in ("../central/users.toml", "central.sqlite", "users.toml", "%2e%2e/%2e%2e/etc/passwd",
                "dashboard_session.key"):
        assert c.get("/files/" + bad).status_code == 404, bad
    assert c.get("/api/alerts/nope").status_code == 404


def test_downlink_roles_validation_and_queue(dash):
    d, store, data = dash
    plan = ('name = "north plan"\n[[bands]]\nstart_hz = 446.0e6\nstop_hz = 446.2e6\nlabel = "PMR446"\n'
            'licensed = true\n')
    body = {"kind": "frequency_plan", "text": plan, "targets": ["cp-north", "cp-south"]}
    officer = client(d, "olga")
    assert officer.post("/api/downlinks", json=body, headers={"x-csrf-token": csrf(officer)}).status_code == 403
    sup = client(d, "sam")
    assert sup.post("/api/downlinks", json=body).status_code == 403  # no CSRF token
    h = {"x-csrf-token": csrf(sup)}
    r = sup.post("/api/downlinks", json=body, headers=h)
    if r.status_code == 400:  # the band schema is sync/wire.py's: show what it wants
        pytest.fail(r.text)
    v = r.json()["version"]
    assert {(x["checkpoint"], x["version"]) for x in store.downlinks()} == {("cp-north", v), ("cp-south", v)}
    assert [p.version for p in store.pending_downlinks("cp-south")] == [v]
    wl = {"kind": "watchlist", "text": json.dumps({"entries": [{"plate": "AB123CD"}]}), "targets": ["cp-north"]}
    assert sup.post("/api/downlinks", json=wl, headers=h).status_code == 200
    for bad in ({**wl, "text": "{not json"}, {**wl, "text": "[[[["}, {**wl, "kind": "model_announcement"},
                {**wl, "targets": []}, {**wl, "targets": ["../etc"]}, {**wl, "text": json.dumps({"entries": 5})},
                {**body, "text": 'bands = [{start_hz = 5.0, stop_hz = 1.0}]'}):
        r = sup.post("/api/downlinks", json=bad, headers=h)
        assert r.status_code in (400, 422), (bad, r.status_code, r.text)
    assert len({x["version"] for x in store.downlinks()}) == 2
    assert sup.get("/api/downlinks").json()[0]["kind"] == "watchlist"


def test_engineer_page_role(dash):
    d, store, data = dash
    assert client(d, "olga").get("/api/engineer/status").status_code == 403
    assert client(d, "olga").get("/engineer").status_code == 403
    s = client(d, "eve").get("/api/engineer/status").json()
    assert {c["id"] for c in s["checkpoints"]} == {"cp-north", "cp-south"}


def test_parse_doc():
    assert parse_doc('{"entries": []}') == {"entries": []}
    assert parse_doc('name = "x"') == {"name": "x"}
    for bad in ("", "   ", "{", "[1, 2]", "= = ="):
        with pytest.raises(ValueError):
            parse_doc(bad)


def test_live_feed_over_sse(central):
    store, data = central
    cfg = DashboardConfig(secure_cookies=False, bind=f"127.0.0.1:{free_port()}")
    stop = threading.Event()
    h = start_dashboard(cfg, store, data, stop, poll_s=0.2)
    base = f"http://{cfg.bind}"
    try:
        c = httpx.Client(base_url=base, timeout=10)
        tok = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        c.post("/login", data={"username": "olga", "password": PASSWORDS["olga"], "csrf": tok})
        events: list[tuple[str, dict]] = []

        def read():
            with c.stream("GET", "/api/events", timeout=httpx.Timeout(10, read=None)) as r:
                name = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line[6:])))

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: any(n == "checkpoints" for n, _ in events), 5, what="checkpoints event")
        uid = put_alert(store, data, "cp-north", "xray.narcotics", "high", time.time())
        wait_for(lambda: any(n == "alert" and e["alert"]["uuid"] == uid for n, e in events), 5, what="alert event")
        put_decision(store, "cp-north", uid)
        wait_for(lambda: any(n == "decision" and e["alert_uuid"] == uid for n, e in events), 5, what="decision")
    finally:
        stop.set()
        wait_for(lambda: not h.thread.is_alive(), 5, what="dashboard stopped")
