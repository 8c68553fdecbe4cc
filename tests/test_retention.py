"""Retention and export on both stores: old alerts to CSV, evidence moved to the archive folder, rows removed
only after the export is durable; an interrupted run is finished by the next; the CLI as a process."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.retention import COLUMNS, ArchiveError, _Side, archive, read_archive, stage_batch
from central.store import EvidenceRow, Inbound, open_store
from sync.keys import make_keypair
from tests.conftest import run_zastava

DAY = 86400.0
NOW = time.time()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'central.sqlite'}"
    else:
        pg = request.getfixturevalue("pg")
        url = pg.create_db("ret")
        yield url
        pg.drop_db(url)


@pytest.fixture
def central(store_url, tmp_path):
    s = open_store(store_url)
    yield s, tmp_path / "data"
    s.close()


def _put(store, data_dir: Path, age_days: float, cp: str = "CP-01", decision: bool = False,
         lose_file: bool = False) -> str:
    """One alert as the hub stores it: evidence file under data_dir/evidence/<cp>/<day>/, row in the store."""
    u = str(uuid.uuid4())
    t = NOW - age_days * DAY
    day = time.strftime("%Y-%m-%d", time.gmtime(t))
    rel = f"evidence/{cp}/{day}/{u}_frame.jpg"
    blob = os.urandom(500)
    p = data_dir / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if not lose_file:
        p.write_bytes(blob)
    ev = [EvidenceRow("frame.jpg", "image/jpeg", len(blob), hashlib.sha256(blob).hexdigest(), rel),
          EvidenceRow("iq.sigmf", "application/octet-stream", 0, "0" * 64, None, missing=True)]
    store.write_batch([Inbound(u, "alert", cp, t + 0.25, {"uuid": u, "t": t, "kind": "rf.drone", "severity": "high",
                                                          "score": 0.75, "source": "rx1", "note": "a,b\n\"c\""}, ev)])
    if decision:
        d = str(uuid.uuid4())
        store.write_batch([Inbound(d, "decision", cp, t + 60, {"uuid": d, "alert_uuid": u, "decision": "cleared"})])
    return u


def _archive_later(store, data_dir, dest, days: float = 30, **kw):
    """Run retention as if two days had passed since the rows were received (past the 1-day grace)."""
    return archive(store, data_dir, dest, days, now=time.time() + 2 * DAY, **kw)


def test_old_alerts_archived_to_csv_evidence_moved_rows_removed(central, tmp_path):
    store, data_dir = central
    old = [_put(store, data_dir, 40 + i, decision=i == 0) for i in range(5)]
    young = [_put(store, data_dir, 2)]  # its own time is recent: stays
    before = {u: store.alert(u) for u in old}
    dest = tmp_path / "archive"
    rep = _archive_later(store, data_dir, dest)
    assert (rep.alerts, rep.decisions, rep.evidence_files, rep.evidence_lost, rep.recovered) == (5, 1, 5, 0, 0)
    (f,) = [Path(p) for p in rep.files]
    assert f.name.endswith(".csv") and f.parent == dest and not list(dest.glob("*.pending"))
    rows = {r["uuid"]: r for r in read_archive(f)}
    assert set(rows) == set(old)
    for u, a in before.items():
        r = rows[u]
        assert (r["checkpoint"], r["t"], r["kind"], r["severity"], r["score"], r["source"], r["created"]) == (
            a["checkpoint"], a["t"], a["kind"], a["severity"], a["score"], a["source"], a["created"])
        assert r["received"] == a["received"] and r["data"] == a["data"]  # floats and awkward text round-trip
        assert [e["name"] for e in r["evidence"]] == ["frame.jpg", "iq.sigmf"]
        e = r["evidence"][0]
        assert hashlib.sha256((dest / e["path"]).read_bytes()).hexdigest() == e["sha256"]  # moved intact
        assert not (data_dir / e["path"]).exists()
        assert store.alert(u) is None
    assert [d["data"]["decision"] for d in rows[old[0]]["decisions"]] == ["cleared"]
    assert store.count_alerts() == 1 and store.alert(young[0])["evidence"][0]["path"]
    assert (data_dir / store.alert(young[0])["evidence"][0]["path"]).exists()
    # nothing older any more: a second run archives nothing and writes no file
    rep2 = _archive_later(store, data_dir, dest)
    assert (rep2.alerts, rep2.files) == (0, [])


def test_recently_received_old_alert_stays(central, tmp_path):
    """An alert from a long-offline checkpoint: old by its own clock, just arrived at central."""
    store, data_dir = central
    u = _put(store, data_dir, 100)
    rep = archive(store, data_dir, tmp_path / "a", 30)  # now: it was received seconds ago
    assert rep.alerts == 0 and store.alert(u) is not None
    rep = archive(store, data_dir, tmp_path / "a", 30, received_grace_days=0)
    assert rep.alerts == 1 and store.alert(u) is None


def test_batches_gzip_and_lost_evidence(central, tmp_path):
    store, data_dir = central
    ids = [_put(store, data_dir, 50) for _ in range(7)] + [_put(store, data_dir, 50, lose_file=True)]
    rep = _archive_later(store, data_dir, tmp_path / "a", batch=3, compress=True)
    assert rep.alerts == 8 and len(rep.files) == 3 and rep.evidence_lost == 1
    got = []
    for f in rep.files:
        assert f.endswith(".csv.gz") and gzip.open(f).read(4) == b"uuid"
        got += read_archive(Path(f))
    assert sorted(r["uuid"] for r in got) == sorted(ids) and store.count_alerts() == 0
    lost = [r for r in got if r["evidence"][0].get("lost")]
    assert [r["uuid"] for r in lost] == [ids[-1]]


def test_interrupted_run_is_finished_exactly_once(central, tmp_path):
    """The process stopped after the CSV became durable (.pending) but before the rows were deleted."""
    store, data_dir = central
    first = [_put(store, data_dir, 60) for _ in range(4)]
    dest = tmp_path / "a"
    dest.mkdir()
    from central.retention import ArchiveReport

    staged = stage_batch(_Side(store), data_dir, dest, time.time() - 30 * DAY, time.time() + DAY, 100, False,
                         ArchiveReport())
    assert staged is not None
    pending, _ = staged
    assert pending.name.endswith(".csv.pending") and store.count_alerts() == 4  # rows still there
    (dest / ".alerts-x.csv.1.tmp").write_text("half a file")  # an export that never became durable
    later = [_put(store, data_dir, 60) for _ in range(2)]
    rep = _archive_later(store, data_dir, dest)
    assert rep.recovered == 1 and rep.alerts == 6 and store.count_alerts() == 0
    seen: list[str] = []
    for f in sorted(dest.glob("alerts-*")):
        assert not f.name.endswith(".pending")
        seen += [r["uuid"] for r in read_archive(f)]
    assert sorted(seen) == sorted(first + later)  # every alert in exactly one file
    assert not list(dest.glob(".*.tmp"))
    for r in (r for f in dest.glob("alerts-*") for r in read_archive(f)):
        assert not (data_dir / r["evidence"][0]["path"]).exists() and (dest / r["evidence"][0]["path"]).exists()


def test_an_unreadable_pending_file_is_reported_and_left(central, tmp_path):
    store, data_dir = central
    dest = tmp_path / "a"
    dest.mkdir()
    bad = dest / "alerts-20200101T000000Z-0000.csv.pending"
    bad.write_bytes(b"\x1f\x8bnot gzip at all")
    u = _put(store, data_dir, 60)
    rep = _archive_later(store, data_dir, dest)
    assert rep.bad_pending == 1 and bad.exists() and rep.alerts == 1 and store.alert(u) is None


def test_bad_arguments_are_refused(central, tmp_path):
    store, data_dir = central
    with pytest.raises(ValueError):
        archive(store, data_dir, tmp_path / "a", -1)
    with pytest.raises(ValueError):
        archive(store, data_dir, tmp_path / "a", 1, batch=0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=400),
    st.lists(st.lists(st.text(max_size=12), max_size=14), max_size=4).map(
        lambda rows: "\n".join(",".join(r) for r in [COLUMNS, *rows]).encode()),
))
def test_read_archive_fuzz_never_crashes(tmp_path, blob):
    f = tmp_path / "x.csv.pending"
    f.write_bytes(blob)
    try:
        rows = read_archive(f)
    except ArchiveError:
        return
    assert all(set(r) == set(COLUMNS) for r in rows)


def test_cli_archive_as_a_process(tmp_path):
    make_keypair(tmp_path / "keys", "hub", overwrite=True)
    (tmp_path / "cps").mkdir()
    cfg = tmp_path / "central.toml"
    cfg.write_text('[hub]\nsecret_key = "keys/hub.key_secret"\ncheckpoints_dir = "cps"\ndata_dir = "data"\n')
    s = open_store(f"sqlite:///{tmp_path / 'data' / 'central.sqlite'}")
    u = _put(s, tmp_path / "data", 40)
    s.close()
    s = open_store(f"sqlite:///{tmp_path / 'data' / 'central.sqlite'}")
    s.conn.execute("UPDATE alerts SET received = received - 2 * 86400")  # central got it two days ago
    s.close()
    r = run_zastava("central", "archive", "--config", str(cfg), "--older-than-days", "30", "--to",
                    str(tmp_path / "arch"))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["alerts"] == 1 and read_archive(Path(rep["files"][0]))[0]["uuid"] == u
    r = run_zastava("central", "archive", "--config", str(cfg), "--to", str(tmp_path / "arch"))
    assert r.returncode == 2 and "--older-than-days" in r.stderr
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "f").write_text("")
    r = run_zastava("central", "archive", "--config", str(cfg), "--older-than-days", "1", "--to",
                    str(tmp_path / "ro" / "f"))
    assert r.returncode == 2 and "zastava central archive:" in r.stderr
