"""The local store: migrations, atomic alert+outbox commits, quota and retention."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edge_agent import store as store_mod
from edge_agent.alerts import Alert
from edge_agent.evidence import FileStore
from edge_agent.store import SCHEMA_VERSION, SchemaTooNew, Store, connect, migrate
from sync import outbox
from tests.conftest import REPO, shift_clock


def make_alert(**kw) -> Alert:
    base = dict(checkpoint="CP-1", source="lane1", kind="xray.narcotics", score=0.9, severity="high",
                location={"box": [1, 2, 3, 4]}, reason="dense organic block")
    base.update(kw)
    return Alert(**base)


def test_migration_from_v1_keeps_data_and_adds_columns(tmp_path):
    path = tmp_path / "store.sqlite"
    db = connect(path)
    migrate(db, target=1)
    assert store_mod.schema_version(db) == 1
    db.execute(
        "INSERT INTO alerts (uuid, t, checkpoint, source, kind, score, severity, location, reason, committed) "
        "VALUES ('old-1', 1.0, 'CP-1', 'lane1', 'xray.weapon', 0.8, 'high', '{}', 'knife', 1.0)"
    )
    db.close()
    s = Store(path)  # opening migrates forward
    assert store_mod.schema_version(s.db) == SCHEMA_VERSION
    a = s.get_alert("old-1")
    assert a["kind"] == "xray.weapon" and a["clock"] == "unsynced" and a["tip"] is False
    s.close()


def test_store_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        Store(path)


def test_alert_commit_queues_it_once(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    a = make_alert()
    assert s.add_alert(a) is True
    assert s.add_alert(a) is False  # same UUID: ignored, not duplicated
    assert s.count_alerts() == 1
    pend = outbox.pending(s.db)
    assert [m.msg_id for m in pend] == [a.uuid]
    assert pend[0].body["kind"] == "xray.narcotics" and "tip" not in pend[0].body
    assert s.backlog() == 1
    outbox.mark_delivered(s.db, [a.uuid])
    assert s.backlog() == 0


def test_tip_alerts_never_reach_the_outbox(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    tip = make_alert(tip=True)
    s.add_alert(tip)
    s.add_decision({"uuid": "d1", "alert_uuid": tip.uuid, "officer": "o1", "decision": "contraband_found",
                    "t": 1.0})
    assert s.backlog() == 0
    assert s.alerts() == [] and len(s.alerts(include_tip=True)) == 1


def test_high_severity_jumps_the_backlog(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    low = [make_alert(severity="low") for _ in range(50)]
    for a in low:
        s.add_alert(a)
    urgent = make_alert(severity="critical")
    s.add_alert(urgent)
    assert outbox.pending(s.db, limit=5)[0].msg_id == urgent.uuid


def test_kill_during_commit_leaves_no_half_alert(tmp_path):
    """A process killed inside the transaction leaves neither the alert nor its outbox row."""
    path = tmp_path / "s.sqlite"
    Store(path).close()
    code = textwrap.dedent(f"""
        import os
        from edge_agent.store import Store
        from edge_agent.alerts import Alert
        from sync import outbox
        s = Store({str(path)!r})
        a = Alert(checkpoint="CP", source="l", kind="xray.weapon", score=1, severity="high", location={{}}, reason="r")
        orig = outbox.enqueue
        def dying(*args, **kw):
            orig(*args, **kw)
            os.kill(os.getpid(), 9)  # after both inserts, before COMMIT
        outbox.enqueue = dying
        s.add_alert(a)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -9
    s = Store(path)
    assert s.count_alerts() == 0 and s.backlog() == 0
    assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_decisions_and_health_round_trip(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    a = make_alert()
    s.add_alert(a)
    assert s.add_decision({"uuid": "d1", "alert_uuid": a.uuid, "officer": "ana", "decision": "cleared", "t": 2.0})
    assert s.decisions_for(a.uuid)[0]["officer"] == "ana"
    assert {m.msg_type for m in outbox.pending(s.db)} == {"alert", "decision"}
    s.record_health("lane1", "xray", "ok", {"items": 3})
    s.record_health("lane1", "xray", "stalled", {"items": 4})
    h = s.health()
    assert len(h) == 1 and h[0]["state"] == "stalled" and h[0]["health"]["items"] == 4


def test_quota_drops_raw_first_and_keeps_undelivered_evidence(tmp_path, caplog):
    s = Store(tmp_path / "s.sqlite")
    fs = FileStore(s, tmp_path / "files", quota_bytes=10_000, hard_limit_bytes=20_000)
    delivered, pending_ = make_alert(), make_alert()
    ev_d = fs.save(f"evidence/{delivered.uuid}.jpg", b"d" * 3000, "evidence", "image/jpeg")
    ev_p = fs.save(f"evidence/{pending_.uuid}.jpg", b"p" * 3000, "evidence", "image/jpeg")
    delivered.evidence, pending_.evidence = [ev_d], [ev_p]
    s.add_alert(delivered)
    s.add_alert(pending_)
    outbox.mark_delivered(s.db, [delivered.uuid])
    raws = [fs.save(f"raw/frame{i}.npy", b"r" * 2000, "raw", "application/octet-stream") for i in range(4)]
    assert fs.used() == 14_000

    removed = fs.enforce()  # 14k > 10k quota: raw goes first, oldest first
    assert removed == {"raw": 2, "delivered": 0, "undelivered": 0}
    assert not fs.abspath(raws[0].path).exists() and fs.abspath(raws[3].path).exists()

    # new undelivered evidence: all raw goes, then evidence central already has
    newer = make_alert()
    newer.evidence = [fs.save(f"evidence/{newer.uuid}.jpg", b"n" * 5000, "evidence", "image/jpeg")]
    s.add_alert(newer)
    removed = fs.enforce()
    assert removed == {"raw": 2, "delivered": 1, "undelivered": 0}
    assert fs.abspath(ev_p.path).exists(), "undelivered evidence must survive while under the hard limit"
    assert not fs.abspath(ev_d.path).exists()
    assert fs.used() <= 10_000

    # past the hard limit, undelivered evidence goes too, with a loud log line
    big = make_alert()
    ev_big = fs.save(f"evidence/{big.uuid}.bin", b"b" * 25_000, "evidence", "application/octet-stream")
    big.evidence = [ev_big]
    s.add_alert(big)
    fs.enforce()
    assert fs.dropped_undelivered >= 1
    assert "DISK HARD LIMIT" in caplog.text


def test_paths_cannot_escape_the_evidence_dir(tmp_path):
    fs = FileStore(Store(tmp_path / "s.sqlite"), tmp_path / "files", 1000, 2000)
    with pytest.raises(ValueError):
        fs.save("../outside.txt", b"x", "raw", "text/plain")
    assert not (tmp_path / "outside.txt").exists()
    assert json.loads(json.dumps(os.listdir(tmp_path / "files"))) == []


_WRITER = """
import sys, time
from pathlib import Path
from edge_agent.evidence import FileStore
from edge_agent.store import Store

tmp, shift = Path(sys.argv[1]), Path(sys.argv[2])
fs = FileStore(Store(tmp / "s.sqlite"), tmp / "files", quota_bytes=6000, hard_limit_bytes=12000)
for i in range(3):  # written while the clock runs a year ahead
    fs.save(f"raw/ahead{i}.npy", b"a" * 2000, "raw", "application/octet-stream")
shift.write_text("0")  # NTP steps it back
time.sleep(0.5)
for i in range(3):
    fs.save(f"raw/after{i}.npy", b"b" * 2000, "raw", "application/octet-stream")
rows = dict(fs.store.db.execute("SELECT path, created FROM files").fetchall())
print((rows["raw/ahead2.npy"] - rows["raw/after0.npy"]) / 86400)  # what the wall clock says of the order
print(fs.enforce()["raw"])
"""


def test_retention_deletes_the_first_written_first_when_the_clock_was_stepped_back(tmp_path):
    """A box whose clock ran a year ahead until NTP stepped it back: by the wall clock its newest
    files look a year older than the rest. Retention must still delete the first written."""
    env, shift = shift_clock(tmp_path, 365 * 86400)
    r = subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path), str(shift)], capture_output=True, text=True,
                       env={**os.environ, **env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert r.returncode == 0, r.stderr
    days_ahead, removed = r.stdout.split()
    assert float(days_ahead) > 364  # by their stamps the files written first are the newest
    assert removed == "3"
    left = sorted(p.name for p in (tmp_path / "files" / "raw").iterdir())
    assert left == ["after0.npy", "after1.npy", "after2.npy"], left
