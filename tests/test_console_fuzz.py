"""Hypothesis against the console's and dashboard's write APIs: any body gets a 2xx or a clear 4xx, never a 5xx,
and nothing invalid is stored."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.config import DashboardConfig
from central.dashboard.server import build_dashboard
from central.store import open_store
from edge_agent.console.server import CONTRABAND_KINDS, DECISIONS, build_console
from tests.test_console_fixtures import add_bag, csrf, login, make_cfg, make_users
from tests.test_dashboard import fill_users

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                           max_leaves=12)


@pytest.fixture(scope="module")
def console_client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = make_cfg(tmp)
    make_users(cfg)
    from edge_agent.evidence import FileStore
    from edge_agent.state import AgentState
    from edge_agent.store import Store

    store = Store(cfg.storage.dir / "store.sqlite")
    files = FileStore(store, cfg.storage.dir / "files", 1 << 30, 1 << 31)
    state = AgentState(cfg.checkpoint_id)
    _, alerts = add_bag(state, store, files, "L1", "bag-1", seed=1, narcotics=True)
    con = build_console(cfg, state, store.path, files.root)
    c = TestClient(con.app)
    login(c, "olga")
    c.headers["x-csrf-token"] = csrf(c)
    yield c, store, alerts[0].uuid
    con.stores.close_all()
    store.close()


@FUZZ
@given(body=st.one_of(
    st.fixed_dictionaries({"decision": st.sampled_from([*DECISIONS, "", "CLEARED", "x" * 50]) | st.text(max_size=20)},
                          optional={"contraband_kind": st.none() | st.sampled_from(CONTRABAND_KINDS) | st.text(max_size=45),
                                    "note": st.none() | st.text(max_size=600)}),
    json_values))
def test_decision_api_never_5xx(console_client, body):
    c, store, uuid = console_client
    before = len(store.decisions_for(uuid))
    r = c.post(f"/api/alerts/{uuid}/decision", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    ok = (isinstance(body, dict) and body.get("decision") in DECISIONS
          and ((body["decision"] == "contraband_found") == (body.get("contraband_kind") is not None and body.get("contraband_kind") != ""))
          and (body["decision"] != "contraband_found" or body.get("contraband_kind") in CONTRABAND_KINDS)
          and len(body.get("note") or "") <= 500)
    if r.status_code == 200:
        assert ok, body
        assert len(store.decisions_for(uuid)) == before + 1
    else:
        assert r.status_code in (400, 422) and "detail" in r.json()
        assert len(store.decisions_for(uuid)) == before


@FUZZ
@given(lane=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and s not in (".", "..")),
       body=json_values)
def test_flag_api_never_5xx(console_client, lane, body):
    c, _, _ = console_client
    from urllib.parse import quote

    r = c.post(f"/api/lanes/{quote(lane, safe='')}/flag", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code < 500 and r.status_code in (200, 400, 404, 422), (r.status_code, r.text)


@pytest.fixture(scope="module")
def dash_client(tmp_path_factory):
    data = tmp_path_factory.mktemp("dashfuzz")
    fill_users(data)
    store = open_store(f"sqlite:///{data / 'central.sqlite'}")
    d = build_dashboard(DashboardConfig(secure_cookies=False), store, data)
    c = TestClient(d.app)
    login(c, "sam")
    c.headers["x-csrf-token"] = csrf(c)
    yield c, store
    store.close()


@FUZZ
@given(kind=st.sampled_from(["watchlist", "frequency_plan", "model_announcement", ""]) | st.text(max_size=10),
       text=st.one_of(st.text(max_size=300), json_values.map(json.dumps),
                      st.dictionaries(st.sampled_from(["entries", "bands", "name"]), json_values, max_size=3).map(json.dumps)),
       targets=st.lists(st.text(max_size=20), max_size=3))
def test_downlink_api_never_5xx(dash_client, kind, text, targets):
    c, store = dash_client
    before = len(store.downlinks())
    r = c.post("/api/downlinks", json={"kind": kind, "text": text, "targets": targets})
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert r.status_code in (400, 422) and len(store.downlinks()) == before


@FUZZ
@given(path=st.lists(st.sampled_from(["..", ".", "raw", "L1", "bag-1.jpg", "%2e%2e", "%2f", "store.sqlite",
                                      "users.toml", "", "~", "\\..\\"])
                     | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f"), max_size=8), max_size=6)
       .map(lambda parts: "/".join(p if isinstance(p, str) else "".join(p) for p in parts)))
def test_files_route_never_escapes(console_client, path):
    c, store, _ = console_client
    r = c.get("/files/" + path)
    if not r.request.url.path.startswith("/files/"):
        return  # the client itself resolved the dots away from /files/ (e.g. "/files/.." is "/")
    assert r.status_code in (200, 404), (path, r.status_code)
    if r.status_code == 200:
        assert r.content[:2] == b"\xff\xd8"  # only the JPEGs under files/ are ever served
