"""Central's store and config: idempotent batches, the dashboard's reads, downlink bookkeeping."""

from __future__ import annotations

import pytest

from central.config import load
from central.store import EvidenceRow, Inbound, open_store
from sync.keys import make_keypair
from sync.wire import WireError
from tests.conftest import run_zastava


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'c.sqlite'}")
    yield s
    s.close()


def _alert(uid: str, cp: str = "CP-01", t: float = 100.0, kind: str = "xray.narcotics", sev: str = "high") -> Inbound:
    return Inbound(uid, "alert", cp, t + 0.5, {"uuid": uid, "t": t, "kind": kind, "severity": sev, "score": 0.9,
                                               "source": "lane1"},
                   [EvidenceRow("frame.jpg", "image/jpeg", 3, "ab" * 32, f"evidence/{cp}/{uid}/frame.jpg")])


def test_batches_are_insert_or_ignore(store):
    assert store.write_batch([_alert("a1"), _alert("a2")]) == [True, True]
    assert store.write_batch([_alert("a2"), _alert("a3")]) == [False, True]
    dec = Inbound("d1", "decision", "CP-01", 200.0, {"uuid": "d1", "alert_uuid": "a1", "decision": "confirmed"})
    assert store.write_batch([dec, dec]) == [True, False]
    assert store.count_alerts() == 3
    a = store.alert("a1")
    assert a["t"] == 100.0 and a["created"] == 100.5  # the edge's times, untouched
    assert a["evidence"][0]["path"] == "evidence/CP-01/a1/frame.jpg" and not a["evidence"][0]["missing"]
    assert [d["data"]["decision"] for d in a["decisions"]] == ["confirmed"]
    assert store.alert("nope") is None


def test_alert_filters(store):
    store.write_batch([_alert("a1", t=10), _alert("a2", "CP-02", t=20, kind="rf.drone", sev="critical"),
                       _alert("a3", t=30, kind="rf.unlicensed", sev="medium"), _alert("a4", t=40)])
    ids = lambda rows: [r["uuid"] for r in rows]  # noqa: E731
    assert ids(store.alerts()) == ["a4", "a3", "a2", "a1"]
    assert ids(store.alerts(checkpoint="CP-02")) == ["a2"]
    assert ids(store.alerts(kind="rf.")) == ["a3", "a2"]
    assert ids(store.alerts(kind="rf%")) == []  # LIKE wildcards in a filter are literal
    assert ids(store.alerts(severity="high", since=20)) == ["a4"]
    assert ids(store.alerts(until=30, limit=1, offset=1)) == ["a1"]


def test_checkpoint_status_and_downlinks(store):
    store.seen("CP-01", 1000.0, software="zastava-edge/0.1", proto=1)
    store.seen("CP-01", 1001.0, backlog=7, skew_s=-0.4, rtt_s=0.002)
    store.update_checkpoints(1002.0, {"CP-01": {"backlog": 6, "health": {"lane1": "ok"}, "health_t": 999.0},
                                      "CP-02": {}})
    store.write_batch([_alert("a1")])
    c, c2 = store.checkpoints()
    assert (c2.id, c2.first_seen, c2.last_seen, c2.backlog) == ("CP-02", 1002.0, 1002.0, None)
    assert (c.id, c.first_seen, c.backlog, c.clock_skew_s, c.software, c.alerts) == ("CP-01", 1000.0, 6, -0.4,
                                                                                     "zastava-edge/0.1", 1)
    assert c.health == {"lane1": "ok"} and c.health_t == 999.0
    with pytest.raises(ValueError):
        store.seen("CP-01", 1.0, password="x")

    v1 = store.queue_downlink("watchlist", {"entries": [{"plate": "A"}]}, ["CP-01", "CP-02"])
    v2 = store.queue_downlink("watchlist", {"entries": [{"plate": "B"}]}, ["CP-01"])
    v3 = store.queue_downlink("model_announcement", {"name": "x.onnx", "version": "2", "sha256": "0" * 64}, ["CP-01"])
    assert v1 < v2 < v3 == store.latest_downlink_version()
    assert sorted(d.version for d in store.pending_downlinks("CP-01")) == [v2, v3]  # latest per kind only
    assert [d.version for d in store.pending_downlinks("CP-02")] == [v1]
    assert store.record_downlink_ack("CP-01", "watchlist", v2, True, None)
    assert not store.record_downlink_ack("CP-01", "watchlist", v2, True, None)  # once
    assert not store.record_downlink_ack("CP-01", "frequency_plan", v3, True, None)  # wrong kind for v3
    assert [d.version for d in store.pending_downlinks("CP-01")] == [v3]
    rows = {(r["version"], r["checkpoint"]): r for r in store.downlinks()}
    assert rows[(v2, "CP-01")]["ok"] is True and rows[(v1, "CP-01")]["acked"] is None
    with pytest.raises(WireError):
        store.queue_downlink("frequency_plan", {"bands": "all"}, ["CP-01"])
    with pytest.raises(ValueError, match="unknown downlink kind"):
        store.queue_downlink("firmware", {}, ["CP-01"])


def test_unknown_store_scheme_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported scheme"):
        open_store("mysql://x")


def _config(tmp_path, extra: str = "") -> str:
    make_keypair(tmp_path / "keys", "hub", overwrite=True)
    (tmp_path / "cps").mkdir(exist_ok=True)
    p = tmp_path / "central.toml"
    p.write_text(f'[hub]\nsecret_key = "keys/hub.key_secret"\ncheckpoints_dir = "cps"\ndata_dir = "data"\n{extra}')
    return str(p)


def test_config_defaults_and_check_config(tmp_path):
    cfg = load(_config(tmp_path))
    assert cfg.hub.bind == "tcp://127.0.0.1:7100"  # loopback unless configured
    assert cfg.hub.store == f"sqlite:///{(tmp_path / 'data').resolve() / 'central.sqlite'}"
    r = run_zastava("check-config", "--central", _config(tmp_path))
    assert r.returncode == 0, r.stderr


def test_bad_config_names_the_key(tmp_path):
    r = run_zastava("check-config", "--central", _config(tmp_path, 'bind = "http://x"\nbatchsize = 3\n'))
    assert r.returncode == 2
    assert "hub.bind" in r.stderr and "unknown key 'hub.batchsize'" in r.stderr
    r = run_zastava("central", "--config", _config(tmp_path, 'store = "mysql://x"\n'))
    assert r.returncode == 2 and "hub.store" in r.stderr
