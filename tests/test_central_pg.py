"""The HubStore contract on BOTH stores (same assertions), PostgreSQL migrations, and several writers at once.

PostgreSQL is a real server started from Debian's binaries (tests/pg_rig.py); each test gets a fresh database.
"""

from __future__ import annotations

import json
import threading
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.store import EvidenceRow, Inbound, open_store
from central.store_pg import (
    MIGRATIONS,
    Migration,
    PostgresStore,
    SchemaTooNew,
    StoreUnavailable,
    migrate,
    schema_version,
)
from sync.wire import WireError

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(pg):
    url = pg.create_db()
    yield url
    pg.drop_db(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'c.sqlite'}")
        yield s
        s.close()
    else:
        url = request.getfixturevalue("pg_url")
        s = open_store(url)
        yield s
        s.close()


def _alert(uid: str, cp: str = "CP-01", t: float | None = 100.0, kind: str = "xray.narcotics",
           sev: str = "high") -> Inbound:
    data = {"uuid": uid, "kind": kind, "severity": sev, "score": 0.9, "source": "lane1", "raw": b"\x01\x02"}
    if t is not None:
        data["t"] = t
    return Inbound(uid, "alert", cp, (t or 0) + 0.5, data,
                   [EvidenceRow("frame.jpg", "image/jpeg", 3, "ab" * 32, f"evidence/{cp}/{uid}/frame.jpg"),
                    EvidenceRow("iq.sigmf", "application/octet-stream", 0, "cd" * 32, None, missing=True)])


# --- the contract: the same assertions against both stores -------------------------------------------
def test_open_store_picks_the_implementation(store):
    assert type(store).__name__ in ("SQLiteStore", "PostgresStore")


def test_batches_are_insert_or_ignore(store):
    assert store.write_batch([]) == []
    assert store.write_batch([_alert("a1"), _alert("a2")]) == [True, True]
    assert store.write_batch([_alert("a2"), _alert("a3"), _alert("a3")]) == [False, True, False]
    dec = Inbound("d1", "decision", "CP-01", 200.0, {"uuid": "d1", "alert_uuid": "a1", "decision": "confirmed"})
    assert store.write_batch([dec, dec]) == [True, False]
    assert store.count_alerts() == 3
    a = store.alert("a1")
    assert a["t"] == 100.0 and a["created"] == 100.5 and a["checkpoint"] == "CP-01"  # the edge's times
    assert a["data"]["raw"] == "0102"  # bytes in the body are kept as hex, as SQLite does
    assert [(e["name"], e["path"], e["missing"]) for e in a["evidence"]] == [
        ("frame.jpg", "evidence/CP-01/a1/frame.jpg", False), ("iq.sigmf", None, True)]
    assert [d["data"]["decision"] for d in a["decisions"]] == ["confirmed"]
    assert store.alert("nope") is None


def test_a_timestamp_keeps_full_precision(store):
    t = 1795636204.123456
    store.write_batch([_alert("p1", t=t)])
    assert store.alert("p1")["t"] == t  # PostgreSQL REAL would round this to ~100 s


def test_odd_strings_and_numbers_never_fail_a_batch(store):
    """NUL, NaN and infinity can arrive in an alert body (msgpack carries them; it refuses invalid UTF-8,
    so lone surrogates cannot): the batch is stored anyway."""
    odd = Inbound("o1", "alert", "CP-01", 5.0, {"uuid": "o1", "t": float("nan"), "score": float("inf"),
                                                 "kind": "rf.\x00x", "severity": "hi\x00gh", "source": "é漢"},
                  [EvidenceRow("f.png", "image/png\x00", 1, "ab" * 32, "evidence/x")])
    assert store.write_batch([odd, _alert("o2")]) == [True, True]
    a = store.alert("o1")
    assert a["t"] is None and a["source"] == "é漢" and a["kind"].startswith("rf.") and a["created"] == 5.0
    assert a["data"]["source"] == "é漢" and a["evidence"][0]["mime"].startswith("image/png")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20), st.binary(max_size=8))
_plain = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                    st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                      max_leaves=12)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(["t", "kind", "severity", "score", "source", "alert_uuid", "x"]) |
                            st.text(max_size=6), _plain, max_size=8),
       name=st.text(min_size=1, max_size=12), mime=st.text(max_size=12), created=st.floats(0, 4e9))
def test_any_wire_shaped_body_is_stored_and_read_back(store, data, name, mime, created):
    """Whatever a valid wire message can carry in its body (sync.wire accepts any plain map) is stored on
    both stores, in one batch with a normal alert, and the body reads back as the JSON it was stored as."""
    u, d = str(uuid.uuid4()), str(uuid.uuid4())
    items = [Inbound(u, "alert", "CP-01", created, data, [EvidenceRow(name, mime, 1, "ab" * 32, None, missing=True)]),
             Inbound(d, "decision", "CP-01", created, data), _alert(str(uuid.uuid4()))]
    assert store.write_batch(items) == [True, True, True]
    got = store.alert(u)
    as_json = lambda v: json.dumps(v, default=lambda b: b.hex(), sort_keys=True)  # noqa: E731
    assert as_json(got["data"]) == as_json(data)
    assert got["created"] == created and len(got["evidence"]) == 1


def test_alert_filters(store):
    store.write_batch([_alert("a1", t=10), _alert("a2", "CP-02", t=20, kind="rf.drone", sev="critical"),
                       _alert("a3", t=30, kind="rf.unlicensed", sev="medium"), _alert("a4", t=40),
                       _alert("a5", t=None, kind="rf_x")])
    ids = lambda rows: [r["uuid"] for r in rows]  # noqa: E731
    assert ids(store.alerts()) == ["a4", "a3", "a2", "a1", "a5"]  # no time sorts last
    assert ids(store.alerts(checkpoint="CP-02")) == ["a2"]
    assert ids(store.alerts(kind="rf.")) == ["a3", "a2"]
    assert ids(store.alerts(kind="rf%")) == []  # LIKE wildcards in a filter are literal
    assert ids(store.alerts(kind="rf_")) == ["a5"]
    assert ids(store.alerts(severity="high", since=20)) == ["a4"]
    assert ids(store.alerts(until=30, limit=1, offset=1)) == ["a1"]


def test_checkpoint_status_and_downlinks(store):
    store.seen("CP-01", 1000.0, software="zastava-edge/0.1", proto=1)
    store.seen("CP-01", 1001.0, backlog=7, skew_s=-0.4, rtt_s=0.002)
    store.update_checkpoints(1002.0, {"CP-01": {"backlog": 6, "health": {"lane1": "ok"}, "health_t": 999.0},
                                      "CP-02": {}})
    store.update_checkpoints(1003.0, {})
    store.write_batch([_alert("a1")])
    c, c2 = store.checkpoints()
    assert (c2.id, c2.first_seen, c2.last_seen, c2.backlog, c2.alerts) == ("CP-02", 1002.0, 1002.0, None, 0)
    assert (c.id, c.first_seen, c.backlog, c.clock_skew_s, c.software, c.alerts) == ("CP-01", 1000.0, 6, -0.4,
                                                                                     "zastava-edge/0.1", 1)
    assert c.health == {"lane1": "ok"} and c.health_t == 999.0 and c.proto == 1
    with pytest.raises(ValueError):
        store.seen("CP-01", 1.0, password="x")

    assert store.latest_downlink_version() == 0
    v1 = store.queue_downlink("watchlist", {"entries": [{"plate": "A"}]}, ["CP-01", "CP-02"])
    v2 = store.queue_downlink("watchlist", {"entries": [{"plate": "B"}]}, ["CP-01"])
    v3 = store.queue_downlink("model_announcement", {"name": "x.onnx", "version": "2", "sha256": "0" * 64}, ["CP-01"])
    assert v1 < v2 < v3 == store.latest_downlink_version()
    assert sorted(d.version for d in store.pending_downlinks("CP-01")) == [v2, v3]  # latest per kind only
    (d1,) = store.pending_downlinks("CP-02")
    assert d1.version == v1 and d1.kind == "watchlist" and d1.doc == {"entries": [{"plate": "A"}]}
    assert store.record_downlink_ack("CP-01", "watchlist", v2, True, None)
    assert not store.record_downlink_ack("CP-01", "watchlist", v2, True, None)  # once
    assert not store.record_downlink_ack("CP-01", "frequency_plan", v3, True, None)  # wrong kind for v3
    assert store.record_downlink_ack("CP-01", "model_announcement", v3, False, "sha256 mismatch")
    assert store.pending_downlinks("CP-01") == []
    rows = {(r["version"], r["checkpoint"]): r for r in store.downlinks()}
    assert rows[(v2, "CP-01")]["ok"] is True and rows[(v1, "CP-01")]["acked"] is None
    assert rows[(v3, "CP-01")]["ok"] is False and rows[(v3, "CP-01")]["error"] == "sha256 mismatch"
    assert [r["version"] for r in store.downlinks("CP-02")] == [v1]
    with pytest.raises(WireError):
        store.queue_downlink("frequency_plan", {"bands": "all"}, ["CP-01"])
    with pytest.raises(ValueError, match="unknown downlink kind"):
        store.queue_downlink("firmware", {}, ["CP-01"])
    with pytest.raises(ValueError, match="no target"):
        store.queue_downlink("watchlist", {"entries": []}, [])
    assert store.latest_downlink_version() == v3  # refused documents left nothing behind


# --- PostgreSQL only: what several hubs on one database rely on ------------------------------------------
def test_pg_checkpoint_rows_never_move_backwards(pg_url):
    s = PostgresStore(pg_url)
    try:
        s.update_checkpoints(2000.0, {"CP-01": {"health": {"v": "new"}, "health_t": 50.0}})
        s.update_checkpoints(1500.0, {"CP-01": {"backlog": 3, "health": {"v": "old"}, "health_t": 40.0}})  # late hub
        (c,) = s.checkpoints()
        assert (c.first_seen, c.last_seen, c.backlog) == (1500.0, 2000.0, 3)
        assert c.health == {"v": "new"} and c.health_t == 50.0
    finally:
        s.close()


def test_pg_two_writers_same_alerts_stored_once_without_deadlock(pg_url):
    """Two 'hubs' (own pools) write the same 300 alerts in opposite orders, many rounds at once."""
    a, b = PostgresStore(pg_url), PostgresStore(pg_url)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    results: dict[str, list[bool]] = {}
    errors: list[BaseException] = []

    def run(name, s, order):
        try:
            out = []
            for i in range(0, len(order), 50):
                out += s.write_batch([_alert(u) for u in order[i:i + 50]])
            results[name] = out
        except BaseException as e:  # surfaced below: a deadlock error would fail the test
            errors.append(e)

    try:
        ts = [threading.Thread(target=run, args=("a", a, ids)), threading.Thread(target=run, args=("b", b, ids[::-1]))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        assert sum(results["a"]) + sum(results["b"]) == len(ids)  # each alert new exactly once
        assert a.count_alerts() == len(ids)
        with psycopg.connect(pg_url) as c:
            assert c.execute("SELECT count(*) FROM evidence").fetchone()[0] == 2 * len(ids)
    finally:
        a.close()
        b.close()


def test_pg_concurrent_downlinks_get_distinct_increasing_versions_and_one_ack(pg_url):
    stores = [PostgresStore(pg_url) for _ in range(4)]
    got: list[list[int]] = [[] for _ in stores]

    def queue(i):
        for n in range(10):
            got[i].append(stores[i].queue_downlink("watchlist", {"entries": [{"plate": f"{i}-{n}"}]}, ["CP-01"]))

    try:
        ts = [threading.Thread(target=queue, args=(i,)) for i in range(len(stores))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        allv = [v for g in got for v in g]
        assert len(set(allv)) == 40 and all(g == sorted(g) for g in got)
        latest = stores[0].latest_downlink_version()
        assert latest == max(allv)
        (pending,) = stores[1].pending_downlinks("CP-01")
        assert pending.version == latest
        oks: list[bool] = []
        ts = [threading.Thread(target=lambda s=s: oks.append(s.record_downlink_ack("CP-01", "watchlist", latest,
                                                                                    True, None))) for s in stores]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert sorted(oks) == [False, False, False, True]  # several hubs, one ack recorded
    finally:
        for s in stores:
            s.close()


# --- migrations ---------------------------------------------------------------------------------------------
def test_pg_migrations_apply_once_in_order_and_record_versions(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert migrate(c) == [m.version for m in MIGRATIONS]
        assert migrate(c) == []
        assert schema_version(c) == MIGRATIONS[-1].version
        rows = c.execute("SELECT version, description FROM schema_version ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS] and all(r[1] for r in rows)
        # the same logical schema as SQLite: the table names and columns the hub and dashboard use
        cols = c.execute("SELECT table_name, column_name FROM information_schema.columns"
                         " WHERE table_schema = 'public'").fetchall()
    tables = {t for t, _ in cols}
    assert {"checkpoints", "alerts", "evidence", "decisions", "downlink_docs", "downlink_targets"} <= tables


def test_pg_a_later_migration_upgrades_an_existing_database_forward_only(pg_url):
    s = PostgresStore(pg_url)
    s.write_batch([_alert("keep")])
    s.close()
    extra = Migration(MIGRATIONS[-1].version + 1, "test: alerts get a note column",
                      ("ALTER TABLE alerts ADD COLUMN note TEXT",))
    s = PostgresStore(pg_url, migrations=(*MIGRATIONS, extra))
    try:
        assert s.alert("keep")["note"] is None  # data kept, column added
    finally:
        s.close()
    # the database is now newer than the released software: it must refuse, not misread
    with pytest.raises(SchemaTooNew, match="newer than this software"):
        PostgresStore(pg_url)


def test_pg_a_failing_migration_leaves_nothing_behind(pg_url):
    PostgresStore(pg_url).close()
    v = MIGRATIONS[-1].version + 1
    bad = Migration(v, "test: half-good migration", ("CREATE TABLE half_done (x INT)", "ALTER TABLE nope ADD y INT"))
    with psycopg.connect(pg_url, autocommit=True) as c:
        with pytest.raises(psycopg.errors.UndefinedTable):
            migrate(c, (*MIGRATIONS, bad))
        assert schema_version(c) == MIGRATIONS[-1].version
        assert c.execute("SELECT to_regclass('half_done')").fetchone()[0] is None


def test_pg_hubs_starting_together_migrate_once(pg_url):
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one():
        try:
            stores.append(PostgresStore(pg_url))
        except BaseException as e:  # surfaced below
            errors.append(e)

    ts = [threading.Thread(target=open_one) for _ in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    try:
        assert not errors, errors
        with psycopg.connect(pg_url) as c:
            assert c.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        for s in stores:
            s.close()


def test_pg_unreachable_server_is_a_clear_error(pg):
    from tests.conftest import free_port

    port = free_port()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}/x: .*(?i:refused)") as e:
        PostgresStore(f"postgresql://zastava:s3cret@127.0.0.1:{port}/x", timeout_s=1.5)
    assert "s3cret" not in str(e.value)  # no secrets in messages or logs
    with pytest.raises(StoreUnavailable, match="does not exist"):
        PostgresStore(pg.url("no_such_db"))


def test_pg_dashboard_reads_the_same_as_on_sqlite(pg_url, tmp_path):
    """The command dashboard (real app, HTTP through its test client) on the PostgreSQL store."""
    import time as _time

    from central.config import DashboardConfig
    from central.dashboard.server import build_dashboard
    from tests.test_dashboard import client, fill_users, put_alert, put_decision

    data = tmp_path / "central"
    data.mkdir()
    fill_users(data)
    store = open_store(pg_url)
    try:
        now = _time.time()
        store.seen("cp-north", now, backlog=3, skew_s=0.012, health_t=now,
                   health={"devices": {"L1.source": {"state": "ok"}, "rx1.source": {"state": "stalled"}}})
        a1 = put_alert(store, data, "cp-north", "xray.narcotics", "high", now - 10)
        a2 = put_alert(store, data, "cp-north", "rf.unlicensed", "medium", now - 20)
        put_decision(store, "cp-north", a1)
        d = build_dashboard(DashboardConfig(secure_cookies=False), store, data)
        c = client(d, "olga")
        (cp,) = c.get("/api/checkpoints").json()
        assert cp["id"] == "cp-north" and cp["online"] and cp["backlog"] == 3 and cp["devices_bad"] == ["rx1.source"]
        assert [a["uuid"] for a in c.get("/api/alerts").json()] == [a1, a2]
        assert [a["uuid"] for a in c.get("/api/alerts", params={"kind": "rf."}).json()] == [a2]
        det = c.get(f"/api/alerts/{a1}").json()
        assert det["decisions"][0]["data"]["officer"] == "olga"
        assert c.get("/files/" + det["evidence"][0]["path"]).content[:2] == b"\xff\xd8"
    finally:
        store.close()


def test_an_alert_is_placed_by_centrals_clock_where_its_box_measured_its_clock_wrong(store):
    """`t` (what the dashboard sorts and filters by, retention ages by) is the edge's time plus the
    offset it measured to central where that is a second or more; `data.t` stays the box's own."""
    behind = 1095 * 86400.0
    wrong = _alert("w1", t=5000.0 - behind)
    wrong.data.update(clock="unsynced", clock_offset_s=behind)
    close = _alert("c1", t=4000.0)
    close.data.update(clock="ntp-synced", clock_offset_s=0.4)  # the link's own error: the box's time stands
    odd = _alert("o1", t=3000.0)
    odd.data.update(clock_offset_s="soon")  # not a number: ignored, the batch is not refused
    slow = _alert("s1", t=2500.0)  # 5 s off, measured over a link with a 16 s round trip: within its error
    slow.data.update(clock_offset_s=5.0, clock_offset_err_s=8.0)
    assert store.write_batch([wrong, close, odd, slow]) == [True, True, True, True]
    assert [r["uuid"] for r in store.alerts(since=2000.0)] == ["w1", "c1", "o1", "s1"]
    assert store.alert("s1")["t"] == 2500.0
    w = store.alert("w1")
    assert w["t"] == 5000.0 and w["data"]["t"] == 5000.0 - behind and w["data"]["clock_offset_s"] == behind
    assert store.alert("c1")["t"] == 4000.0 and store.alert("o1")["t"] == 3000.0
