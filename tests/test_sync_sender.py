"""The Sender class as the agent uses it (in-process thread) against a real hub process."""

from __future__ import annotations

import json
import time

import pytest

from central.store import open_store
from sync import outbox
from sync.harness import Rig, free_port, wait_for
from sync.sender import Sender


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path / "rig", checkpoints=["CP-01"])
    yield r
    r.stop_all()


def _sender(rig: Rig, **kw) -> Sender:
    rig.edge_db()
    return Sender(rig.edge_db_path("CP-01"), "CP-01", kw.pop("endpoints", [rig.endpoint]), rig.hub_pub,
                  rig.cp_keys["CP-01"][1], rig.evidence_dir("CP-01"), heartbeat_s=rig.heartbeat_s, **kw)


def test_link_state_health_and_skew(rig):
    s = _sender(rig)
    s.start()
    try:
        time.sleep(0.5)
        st = s.link_state()
        assert st["connected"] is False and st["last_ack"] is None  # no hub yet
        rig.add_alerts(3)
        wait_for(lambda: s.link_state()["backlog"] == 3, 10, what="backlog reported with the hub down")
        rig.start_hub()
        s.set_health({"lane1": {"state": "ok", "fps": 7.5, "nan": float("nan")}, "path": rig.root})
        wait_for(lambda: s.link_state()["acked"] == 3, 20, what="acks")
        st = s.link_state()
        assert st["connected"] and st["endpoints"][rig.endpoint] and st["last_ack"] > 0
        wait_for(lambda: s.link_state()["clock_skew_s"] is not None, 10, what="skew measured")
        assert abs(s.link_state()["clock_skew_s"]) < 0.5 and s.link_state()["rtt_s"] >= 0
        # the hub shows what the sender measured, and the latest health snapshot
        wait_for(lambda: rig.hub_query("SELECT health FROM checkpoints WHERE health IS NOT NULL"), 15, what="health")
        (health,) = rig.hub_query("SELECT health FROM checkpoints")[0]
        assert json.loads(health)["lane1"] == {"state": "ok", "fps": 7.5, "nan": None}
    finally:
        s.stop()


def test_new_critical_alerts_overtake_a_backlog(rig):
    rig.add_alerts(3000, evidence_bytes=100, severity="low", priority=0)
    rig.start_hub()
    s = _sender(rig, batch=50)
    s.start()
    try:
        wait_for(lambda: len(rig.hub_alert_ids()) >= 200, 30, what="flush under way")
        crit = rig.add_alerts(5, evidence_bytes=100, severity="critical", priority=4)
        stored_before = len(rig.hub_alert_ids())
        wait_for(lambda: rig.backlog() == 0, 60, what="flush")
    finally:
        s.stop()
    order = [r[0] for r in rig.hub_query("SELECT uuid FROM alerts ORDER BY rowid")]
    assert stored_before < 2900  # the backlog was far from done...
    # ...and the critical ones went out within the next few windows, not after the backlog
    assert max(order.index(c) for c in crit) < stored_before + 3 * 50


def test_several_hubs_one_dead(rig, tmp_path):
    """A DEALER connected to two endpoints keeps delivering through the one that is up."""
    rig.start_hub()
    dead = f"tcp://127.0.0.1:{free_port()}"
    s = _sender(rig, endpoints=[dead, rig.endpoint])
    s.start()
    try:
        ids = rig.add_alerts(100)
        wait_for(lambda: rig.backlog() == 0, 20, what="delivery via the live hub")
        assert set(rig.hub_alert_ids()) == set(ids)
        assert s.link_state()["endpoints"] == {dead: False, rig.endpoint: True}
    finally:
        s.stop()


def test_downlink_applied_refused_and_not_reapplied(rig):
    applied: list[tuple[str, dict]] = []

    def apply(kind: str, doc: dict) -> None:
        if doc.get("name") == "broken":
            raise ValueError("watchlist entry 0 has no plate")
        applied.append((kind, doc))

    rig.start_hub()
    store = open_store(f"sqlite:///{rig.data_dir / 'central.sqlite'}")
    v1 = store.queue_downlink("watchlist", {"entries": [{"plate": "AB123"}], "name": "w1"}, ["CP-01"])
    s = _sender(rig, on_downlink=apply)
    s.start()
    try:
        wait_for(lambda: applied, 15, what="first document applied")
        wait_for(lambda: not store.pending_downlinks("CP-01"), 10, what="ack stored")
        v2 = store.queue_downlink("watchlist", {"entries": [{}], "name": "broken"}, ["CP-01"])
        wait_for(lambda: not store.pending_downlinks("CP-01"), 15, what="refusal stored")
        rows = {r["version"]: r for r in store.downlinks("CP-01")}
        assert rows[v1]["ok"] is True and rows[v2]["ok"] is False and "no plate" in rows[v2]["error"]
        v3 = store.queue_downlink("model_announcement", {"name": "xray.onnx", "version": "3", "sha256": "a" * 64},
                                  ["CP-01"])
        wait_for(lambda: len(applied) == 2, 15, what="model announcement applied")
        wait_for(lambda: not store.pending_downlinks("CP-01"), 10, what="its ack stored")
        assert applied[1] == ("model_announcement", {"name": "xray.onnx", "version": "3", "sha256": "a" * 64})
        assert {r["version"] for r in store.downlinks("CP-01") if r["ok"]} == {v1, v3}
        db = rig.edge_db()
        assert db.execute("SELECT count(*) FROM downlink_applied").fetchone()[0] == 2
    finally:
        s.stop()
        store.close()
    assert s.link_state()["downlinks_applied"] == 2


def test_outbox_rows_the_hub_refuses_stay_undelivered(rig):
    """Evidence edited on disk after the commit is sent as missing; an id the wire refuses stays put."""
    rig.start_hub()
    db = rig.edge_db()
    (good,) = rig.add_alerts(1)
    (rig.evidence_dir("CP-01") / f"{good}.jpg").write_bytes(b"tampered")
    secret = rig.root / "secret.txt"
    secret.write_text("not evidence")
    with db.atomic():
        outbox.enqueue(db, "bad id with spaces", "alert", {"t": 1.0}, [], 1)
        outbox.enqueue(db, "escape", "alert", {"t": 2.0}, [{"name": "x.txt", "path": "../../secret.txt",
                                                           "mime": "text/plain", "size": 12, "sha256": "0" * 64}], 1)
    s = _sender(rig)
    s.start()
    try:
        wait_for(lambda: sorted(rig.hub_alert_ids()) == sorted([good, "escape"]), 15,
                 what="alerts with missing evidence stored")
        time.sleep(0.5)
        assert rig.backlog() == 1 and not outbox.is_delivered(db, "bad id with spaces")
        assert "cannot be sent" in (s.link_state()["last_error"] or "") or s.link_state()["errors"] >= 1
    finally:
        s.stop()
    ev = rig.hub_query("SELECT missing, path FROM evidence")
    assert ev == [(1, None), (1, None)]  # tampered file and a path outside the evidence folder
