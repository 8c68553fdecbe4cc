"""Officer console over HTTP: the real app on a real Store (tmp file) and a real AgentState."""

from __future__ import annotations

import json

import msgpack
import pytest
from fastapi.testclient import TestClient

from edge_agent.console.server import build_console
from tests.test_console_fixtures import add_bag, add_radio, csrf, login, world  # noqa: F401


@pytest.fixture
def console(world):  # noqa: F811
    cfg, state, store, files = world
    con = build_console(cfg, state, store.path, files.root)
    yield con, cfg, state, store, files
    con.stores.close_all()
    con.scores.close()


def client(con, name=None):
    c = TestClient(con.app)
    if name:
        assert login(c, name).status_code == 303
    return c


def concrete_paths(app) -> list[tuple[str, str]]:
    out = []
    for r in app.routes:
        path = getattr(r, "path", None)
        for m in getattr(r, "methods", None) or {"GET"}:
            if path and m in ("GET", "POST"):
                p = path.replace("{path:path}", "raw/x.jpg")
                for name in ("lane", "bag_id", "uuid", "name"):
                    p = p.replace("{" + name + "}", "x")
                out.append((m, p))
    return out


def test_every_route_refuses_anonymous(console):
    con, *_ = console
    c = client(con)
    paths = concrete_paths(con.app)
    assert len(paths) >= 15
    for method, path in paths:
        if path in ("/login", "/favicon.ico"):  # public by design
            continue
        r = c.request(method, path, follow_redirects=False, json={})
        assert r.status_code == 401, (method, path, r.status_code)
        r = c.request(method, path, follow_redirects=False, headers={"accept": "text/html"})
        assert r.status_code in (303, 401) and r.status_code != 200, (method, path)
    assert c.get("/", headers={"accept": "text/html"}, follow_redirects=False).headers["location"] == "/login"
    assert "Sign in" in c.get("/login").text


def test_roles(console):
    con, *_ = console
    officer, sup, eng = client(con, "olga"), client(con, "sam"), client(con, "eve")
    for path in ("/engineer", "/api/engineer/health", "/supervisor", "/api/supervisor/tip"):
        assert officer.get(path).status_code == 403, path
    assert eng.get("/engineer").status_code == 200
    assert "devices" in eng.get("/api/engineer/health").json()["snapshot"]
    assert eng.get("/supervisor").status_code == 403
    for path in ("/engineer", "/api/engineer/health", "/supervisor", "/api/supervisor/tip"):
        assert sup.get(path).status_code == 200, path
    for c in (officer, sup, eng):
        assert c.get("/").status_code == 200 and c.get("/static/console.js").status_code == 200
    assert con.auth.counters.forbidden == 5


def outbox_rows(store):
    return [dict(r) for r in store.db.query("SELECT msg_id, msg_type, body FROM outbox ORDER BY seq")]


def test_decision_stored_and_queued_for_central(console):
    con, cfg, state, store, files = console
    _, alerts = add_bag(state, store, files, "L1", "bag-1", seed=1, narcotics=True)
    uuid = alerts[0].uuid
    c = client(con, "olga")
    listed = c.get("/api/alerts").json()
    assert [a["uuid"] for a in listed] == [uuid] and listed[0]["decisions"] == []
    assert listed[0]["evidence"][0]["mime"] == "image/jpeg"
    r = c.post(f"/api/alerts/{uuid}/decision", json={"decision": "contraband_found", "contraband_kind": "narcotics",
                                                    "note": "bag opened, 2 kg"}, headers={"x-csrf-token": csrf(c)})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["officer"] == "olga" and d["decision"] == "contraband_found"
    assert store.decisions_for(uuid)[0]["contraband_kind"] == "narcotics"
    rows = outbox_rows(store)
    assert [x["msg_type"] for x in rows] == ["alert", "decision"]
    body = msgpack.unpackb(rows[1]["body"])
    assert body["alert_uuid"] == uuid and body["officer"] == "olga" and body["note"] == "bag opened, 2 kg"
    assert c.get(f"/api/alerts/{uuid}").json()["decisions"][0]["uuid"] == d["uuid"]


def test_decision_refusals(console):
    con, cfg, state, store, files = console
    _, alerts = add_bag(state, store, files, "L1", "bag-1", seed=1, narcotics=True)
    uuid = alerts[0].uuid
    c = client(con, "olga")
    h = {"x-csrf-token": csrf(c)}
    assert c.post(f"/api/alerts/{uuid}/decision", json={"decision": "cleared"}).status_code == 403  # no CSRF
    assert c.post(f"/api/alerts/{uuid}/decision", json={"decision": "shrug"}, headers=h).status_code == 400
    assert c.post(f"/api/alerts/{uuid}/decision", json={"decision": "contraband_found"}, headers=h).status_code == 400
    assert c.post(f"/api/alerts/{uuid}/decision", json={"decision": "cleared", "contraband_kind": "weapon"},
                  headers=h).status_code == 400
    assert c.post("/api/alerts/nope/decision", json={"decision": "cleared"}, headers=h).status_code == 404
    assert c.post(f"/api/alerts/{uuid}/decision", content=b"{not json", headers={**h, "content-type": "application/json"}
                  ).status_code == 422
    assert c.post(f"/api/alerts/{uuid}/decision", json={"decision": "cleared", "note": "x" * 600}, headers=h
                  ).status_code == 422
    eng = client(con, "eve")
    assert eng.post(f"/api/alerts/{uuid}/decision", json={"decision": "cleared"},
                    headers={"x-csrf-token": csrf(eng)}).status_code == 403
    assert store.decisions_for(uuid) == []
    assert [x["msg_type"] for x in outbox_rows(store)] == ["alert"]
    assert con.auth.counters.csrf_refused == 1


def test_lanes_images_and_path_traversal(console):
    con, cfg, state, store, files = console
    add_bag(state, store, files, "L1", "bag-1", seed=1)
    _, alerts = add_bag(state, store, files, "L1", "bag-2", seed=2, narcotics=True)
    c = client(con, "olga")
    lanes = c.get("/api/lanes").json()
    assert [b["bag_id"] for b in lanes["L1"]] == ["bag-2", "bag-1"]
    b = lanes["L1"][0]
    assert b["findings"][0]["cls"] == "narcotics" and b["findings"][0]["box"] == [200, 160, 300, 240]
    img = c.get(b["image_url"])
    assert img.status_code == 200 and img.content[:2] == b"\xff\xd8"
    ev = c.get("/files/" + alerts[0].evidence[0].path)
    assert ev.status_code == 200 and ev.content[:2] == b"\xff\xd8"
    assert c.get("/api/bags/L1/nope/image").status_code == 404
    for bad in ("../store.sqlite", "..%2Fstore.sqlite", "raw/../../store.sqlite", "%2e%2e/%2e%2e/etc/passwd",
                "/etc/passwd", "raw/L1/../../../users.toml"):
        r = c.get("/files/" + bad)
        assert r.status_code == 404, bad
        assert b"argon2" not in r.content and b"SQLite" not in r.content
    assert c.get("/static/..%2Fserver.py").status_code == 404


def test_radio_and_status(console):
    con, cfg, state, store, files = console
    a = add_radio(state, store)
    state.set_device("L1.source", "xray", {"url": "spool:///x", "state": "reconnecting", "last_error": "stalled 5 s"})
    c = client(con, "olga")
    rx = c.get("/api/receivers").json()["rx1"]
    assert rx["center_hz"] == 446.1e6 and len(rx["waterfall"]) == 60 and len(rx["waterfall"][0]) == 512
    assert {e["licensed"] for e in rx["emitters"]} == {True, False}
    st = c.get("/api/status").json()
    assert st["devices"]["L1.source"]["last_error"] == "stalled 5 s"
    assert st["link"] == {"configured": False, "connected": False}
    assert c.get("/api/alerts").json()[0]["uuid"] == a.uuid


def test_info_and_logout(console):
    con, *_ = console
    c = client(con, "olga")
    info = c.get("/api/info").json()
    assert info["user"] == "olga" and info["role"] == "officer" and "contraband_found" in info["decisions"]
    assert c.post("/logout", headers={"x-csrf-token": csrf(c)}).status_code == 200
    assert c.get("/api/info").status_code == 401
    assert json.loads(c.get("/api/me").text)["detail"] == "login required"


def test_a_store_locked_by_another_process_answers_503_then_the_decision_goes_through(console):
    """Another process (an engineer's sqlite3 shell, a tool) holds the store locked: an officer's
    decision is answered 503 with the reason within the console's 5 s wait, not after half a
    minute and not as a 500; nothing of it is stored; once the lock goes the same decision is."""
    import time

    from tests.conftest import hold_sqlite_lock

    con, cfg, state, store, files = console
    _, alerts = add_bag(state, store, files, "L1", "bag-locked", seed=5, narcotics=True)
    uuid = alerts[0].uuid
    c = client(con, "olga")
    token = csrf(c)
    body = {"decision": "cleared", "note": "x-ray rechecked"}
    locker = hold_sqlite_lock(store.path, 10)
    try:
        t0 = time.monotonic()
        r = c.post(f"/api/alerts/{uuid}/decision", json=body, headers={"x-csrf-token": token})
        waited = time.monotonic() - t0
        assert r.status_code == 503, r.text
        assert "busy" in r.json()["detail"] and "locked" in r.json()["detail"] and r.headers["retry-after"] == "5"
        assert waited < 9, f"answered after {waited:.1f} s"
        assert c.get(f"/api/alerts/{uuid}").json()["decisions"] == [], "reads go on while locked (WAL)"
    finally:
        assert locker.wait(timeout=30) == 0
    assert store.decisions_for(uuid) == []
    r = c.post(f"/api/alerts/{uuid}/decision", json=body, headers={"x-csrf-token": token})
    assert r.status_code == 200, r.text
    assert [d["decision"] for d in store.decisions_for(uuid)] == ["cleared"]
