"""Central's durable store, behind one small interface so PostgreSQL can be added beside SQLite.

`open_store(url)` picks the implementation from the URL scheme: `sqlite:///path/to/central.sqlite`
today; issue 10 registers `postgresql://...` in `BACKENDS` with a class implementing `HubStore`,
and the hub and the dashboard do not change. The SQL is kept to what both databases accept
(INSERT ... ON CONFLICT DO NOTHING, no SQLite-only types), JSON is stored as text.

Writes: the hub calls `write_batch` with many validated messages at once and acks them only after
it returns, so one transaction (one fsync with synchronous=FULL) covers a whole batch.
Reads: the dashboard calls `checkpoints`, `alerts`, `alert`, `downlinks`, and `queue_downlink`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from sync.wire import DOWNLINK_KINDS, check_doc, doc_digest


@dataclass
class EvidenceRow:
    name: str
    mime: str
    size: int
    sha256: str
    path: str | None  # relative to the hub's data dir; None when the edge had lost the file
    missing: bool = False


@dataclass
class Inbound:
    """One alert or decision the hub has validated and whose evidence is already on disk."""

    msg_id: str
    msg_type: str  # "alert" | "decision"
    checkpoint: str
    created: float  # edge clock: when the edge committed it
    data: dict
    evidence: list[EvidenceRow] = field(default_factory=list)


@dataclass
class CheckpointStatus:
    id: str
    first_seen: float | None
    last_seen: float | None
    backlog: int | None
    health: dict | None
    health_t: float | None
    clock_skew_s: float | None  # central clock minus edge clock, from heartbeats
    rtt_s: float | None
    software: str | None
    proto: int | None
    alerts: int


@dataclass
class Downlink:
    version: int
    kind: str
    doc: dict
    sha256: str
    created: float


class HubStore(Protocol):
    """What the hub and the dashboard need; each implementation is safe to use from one thread."""

    # the errors of a store that is there but cannot serve just now (locked, full, restarting):
    # the hub logs them in one line and leaves the batch unacked; anything else is a bug
    TRANSIENT: tuple[type[BaseException], ...]

    def write_batch(self, items: list[Inbound]) -> list[bool]: ...
    def update_checkpoints(self, t: float, updates: dict[str, dict]) -> None: ...
    def queue_downlink(self, kind: str, doc: dict, targets: list[str]) -> int: ...
    def pending_downlinks(self, checkpoint: str) -> list[Downlink]: ...
    def latest_downlink_version(self) -> int: ...
    def record_downlink_ack(self, checkpoint: str, kind: str, version: int, ok: bool, error: str | None) -> bool: ...
    def checkpoints(self) -> list[CheckpointStatus]: ...
    def alerts(self, checkpoint: str | None = None, kind: str | None = None, severity: str | None = None,
               since: float | None = None, until: float | None = None, limit: int = 100,
               offset: int = 0) -> list[dict]: ...
    def alert(self, uuid: str) -> dict | None: ...
    def count_alerts(self) -> int: ...
    def downlinks(self, checkpoint: str | None = None) -> list[dict]: ...
    def close(self) -> None: ...


SCHEMA = [
    """CREATE TABLE IF NOT EXISTS checkpoints (
        id TEXT PRIMARY KEY, first_seen REAL, last_seen REAL, backlog INTEGER, health TEXT, health_t REAL,
        skew_s REAL, rtt_s REAL, software TEXT, proto INTEGER)""",
    """CREATE TABLE IF NOT EXISTS alerts (
        uuid TEXT PRIMARY KEY, checkpoint TEXT NOT NULL, t REAL, kind TEXT, severity TEXT, score REAL,
        source TEXT, created REAL NOT NULL, received REAL NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alerts_t ON alerts (t)",
    "CREATE INDEX IF NOT EXISTS alerts_cp_t ON alerts (checkpoint, t)",
    """CREATE TABLE IF NOT EXISTS evidence (
        alert_uuid TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL, size INTEGER NOT NULL,
        sha256 TEXT NOT NULL, path TEXT, missing INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (alert_uuid, name))""",
    """CREATE TABLE IF NOT EXISTS decisions (
        uuid TEXT PRIMARY KEY, alert_uuid TEXT, checkpoint TEXT NOT NULL, created REAL NOT NULL,
        received REAL NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS decisions_alert ON decisions (alert_uuid)",
    """CREATE TABLE IF NOT EXISTS downlink_docs (
        version INTEGER PRIMARY KEY, kind TEXT NOT NULL, doc TEXT NOT NULL, sha256 TEXT NOT NULL,
        created REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS downlink_targets (
        version INTEGER NOT NULL, checkpoint TEXT NOT NULL, acked REAL, ok INTEGER, error TEXT,
        PRIMARY KEY (version, checkpoint))""",
    "CREATE INDEX IF NOT EXISTS downlink_targets_cp ON downlink_targets (checkpoint, version)",
]
SCHEMA_VERSION = 1

_SEEN_FIELDS = {"backlog", "skew_s", "rtt_s", "software", "proto", "health", "health_t"}


def check_downlink(kind: str, doc: dict, targets: list[str]) -> str:
    """A downlink document fit to queue, for either store: returns its digest."""
    if kind not in DOWNLINK_KINDS:
        raise ValueError(f"unknown downlink kind {kind!r}; one of {DOWNLINK_KINDS}")
    check_doc(kind, doc)
    if not targets:
        raise ValueError("no target checkpoints")
    return doc_digest(doc)


class HubReads:
    """The reads the hub and the dashboard make, written once for both stores. Their SQL is the
    same on SQLite and PostgreSQL but for the parameter mark, so it is written with `?` and `_read`
    gives each driver the mark it wants (psycopg's is `%s`). Each store brings `_query(sql, args)`,
    returning rows as dicts, and `update_checkpoints`."""

    MARK = "?"

    def _read(self, sql: str, args: list | tuple = ()) -> list[dict]:
        return self._query(sql if self.MARK == "?" else sql.replace("?", self.MARK), args)  # type: ignore[attr-defined]

    def seen(self, checkpoint: str, t: float, **fields: object) -> None:
        self.update_checkpoints(t, {checkpoint: fields})  # type: ignore[attr-defined]

    # --- downlink ---------------------------------------------------------------------------------
    def pending_downlinks(self, checkpoint: str) -> list[Downlink]:
        rows = self._read(
            "SELECT d.version, d.kind, d.doc, d.sha256, d.created, t.acked, t.ok FROM downlink_docs d"
            " JOIN downlink_targets t ON t.version = d.version"
            " WHERE t.checkpoint = ? AND d.version = (SELECT max(d2.version) FROM downlink_docs d2"
            "   JOIN downlink_targets t2 ON t2.version = d2.version WHERE t2.checkpoint = ? AND d2.kind = d.kind)",
            (checkpoint, checkpoint))
        return [Downlink(int(r["version"]), r["kind"], json.loads(r["doc"]), r["sha256"], r["created"])
                for r in rows if r["acked"] is None]

    def latest_downlink_version(self) -> int:
        return int(self._read("SELECT coalesce(max(version), 0) AS v FROM downlink_docs")[0]["v"])

    def downlinks(self, checkpoint: str | None = None) -> list[dict]:
        sql = ("SELECT d.version, d.kind, d.sha256, d.created, t.checkpoint, t.acked, t.ok, t.error"
               " FROM downlink_docs d JOIN downlink_targets t ON t.version = d.version")
        args: list = []
        if checkpoint:
            sql += " WHERE t.checkpoint = ?"
            args.append(checkpoint)
        rows = self._read(sql + " ORDER BY d.version DESC, t.checkpoint", args)
        for r in rows:
            r["version"] = int(r["version"])
            r["ok"] = None if r["ok"] is None else bool(r["ok"])
        return rows

    # --- dashboard reads --------------------------------------------------------------------------
    def checkpoints(self) -> list[CheckpointStatus]:
        rows = self._read(
            "SELECT c.*, (SELECT count(*) FROM alerts a WHERE a.checkpoint = c.id) AS n FROM checkpoints c ORDER BY c.id")
        return [CheckpointStatus(r["id"], r["first_seen"], r["last_seen"], r["backlog"],
                                 json.loads(r["health"]) if r["health"] else None, r["health_t"], r["skew_s"],
                                 r["rtt_s"], r["software"], r["proto"], int(r["n"])) for r in rows]

    def alerts(self, checkpoint: str | None = None, kind: str | None = None, severity: str | None = None,
               since: float | None = None, until: float | None = None, limit: int = 100,
               offset: int = 0) -> list[dict]:
        """Newest first by the alert's time on central's clock (`central_time`); `kind` matches a prefix
        ("rf." for all radio)."""
        where, args = [], []
        if checkpoint:
            where.append("checkpoint = ?")
            args.append(checkpoint)
        if kind:
            where.append("kind LIKE ? ESCAPE '\\'")
            args.append(kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if severity:
            where.append("severity = ?")
            args.append(severity)
        if since is not None:
            where.append("t >= ?")
            args.append(since)
        if until is not None:
            where.append("t < ?")
            args.append(until)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        # NULL last in both (SQLite sorts it lowest, PostgreSQL highest)
        sql += " ORDER BY t DESC NULLS LAST, uuid LIMIT ? OFFSET ?"
        rows = self._read(sql, [*args, int(limit), int(offset)])
        for r in rows:
            r["data"] = json.loads(r["data"])
        return rows

    def alert(self, uuid: str) -> dict | None:
        """One alert with its evidence (paths relative to the hub's data dir) and officer decisions."""
        rows = self._read("SELECT * FROM alerts WHERE uuid = ?", (uuid,))
        if not rows:
            return None
        a = rows[0]
        a["data"] = json.loads(a["data"])
        a["evidence"] = self._read("SELECT name, mime, size, sha256, path, missing FROM evidence"
                                    " WHERE alert_uuid = ? ORDER BY name", (uuid,))
        for e in a["evidence"]:
            e["missing"] = bool(e["missing"])
        a["decisions"] = self._read("SELECT * FROM decisions WHERE alert_uuid = ? ORDER BY created", (uuid,))
        for d in a["decisions"]:
            d["data"] = json.loads(d["data"])
            d["t"] = central_time(d["data"])  # the officer's moment on central's clock, as for alerts
        return a

    def count_alerts(self) -> int:
        return int(self._read("SELECT count(*) AS n FROM alerts")[0]["n"])


# How long a statement waits for a lock another process holds (SQLite's busy timeout; the hub's
# own threads share one connection and never wait on each other this way). Short, because the
# hub's loop, which pings systemd's watchdog (WatchdogSec=30), waits behind it, and behind this
# store's lock while the writer thread waits, several times in a pass: a write that waits longer
# fails, is not acked, and the sender sends it again later; nothing is lost.
BUSY_S = 2.0


class SQLiteStore(HubReads):
    """The embedded default: one file, WAL, synchronous=FULL (an acked alert survives power loss)."""

    TRANSIENT = (OSError, sqlite3.OperationalError)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=BUSY_S, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()  # the hub thread writes while a CLI/dashboard thread may read
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.migrate()

    # --- plumbing --------------------------------------------------------------------------------
    def migrate(self) -> None:
        with self._lock:
            v = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if v > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: schema v{v} is newer than this software (v{SCHEMA_VERSION})")
            if v < SCHEMA_VERSION:
                self.conn.execute("BEGIN IMMEDIATE")
                for stmt in SCHEMA:
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.conn.execute("COMMIT")

    def _tx(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            return out

    def _query(self, sql: str, args: list | tuple = ()) -> list[dict]:
        with self._lock:
            cur = self.conn.execute(sql, args)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    # --- hub writes -------------------------------------------------------------------------------
    def write_batch(self, items: list[Inbound]) -> list[bool]:
        """Insert-or-ignore every item in one transaction; True where the row was new.

        Which ids are already stored is asked once per batch, then each table gets one
        executemany: a statement per row cost ~40 us each, a fifth of the hub's time at 500 per batch.
        The check and the inserts share the write transaction, so no other hub slips in between."""
        now = time.time()

        def tx(c: sqlite3.Connection) -> list[bool]:
            have: set[tuple[bool, str]] = set()  # (is an alert, id): the two tables are separate id spaces
            for table, is_alert in (("alerts", True), ("decisions", False)):
                ids = [it.msg_id for it in items if (it.msg_type == "alert") == is_alert]
                for i in range(0, len(ids), 900):  # well under SQLite's bound-parameter limit
                    chunk = ids[i:i + 900]
                    qs = ",".join("?" * len(chunk))
                    have.update((is_alert, r[0]) for r in
                                c.execute(f"SELECT uuid FROM {table} WHERE uuid IN ({qs})", chunk))
            out, alerts, evidence, decisions = [], [], [], []
            for it in items:
                key = (it.msg_type == "alert", it.msg_id)
                new = key not in have
                have.add(key)  # the same id twice in one batch: the first one wins
                out.append(new)
                if not new:
                    continue
                d = it.data
                if it.msg_type == "alert":
                    alerts.append((it.msg_id, it.checkpoint, central_time(d), _s(d.get("kind")), _s(d.get("severity")),
                                   _num(d.get("score")), _s(d.get("source")), it.created, now,
                                   json.dumps(d, default=_bin)))
                    evidence += [(it.msg_id, e.name, e.mime, e.size, e.sha256, e.path, int(e.missing))
                                 for e in it.evidence]
                else:
                    decisions.append((it.msg_id, _s(d.get("alert_uuid")), it.checkpoint, it.created, now,
                                      json.dumps(d, default=_bin)))
            c.executemany("INSERT INTO alerts (uuid, checkpoint, t, kind, severity, score, source, created, received,"
                          " data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", alerts)
            c.executemany("INSERT INTO evidence (alert_uuid, name, mime, size, sha256, path, missing)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", evidence)
            c.executemany("INSERT INTO decisions (uuid, alert_uuid, checkpoint, created, received, data)"
                          " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", decisions)
            return out

        return self._tx(tx)  # type: ignore[return-value]

    def update_checkpoints(self, t: float, updates: dict[str, dict]) -> None:
        """Mark checkpoints seen at hub time t, with any of backlog, skew_s, rtt_s, software, proto,
        health (a map) and health_t; one transaction for all, because the hub flushes the control
        plane of every connected checkpoint once a second."""
        stmts = []
        for cp, fields in updates.items():
            bad = set(fields) - _SEEN_FIELDS
            if bad:
                raise ValueError(f"unknown checkpoint fields {sorted(bad)}")
            f = dict(fields)
            if "health" in f:
                f["health"] = json.dumps(f["health"], default=_bin)
            cols = ["id", "first_seen", "last_seen", *f]
            upd = ", ".join(["last_seen = excluded.last_seen", *(f"{k} = excluded.{k}" for k in f)])
            stmts.append((f"INSERT INTO checkpoints ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                          f" ON CONFLICT (id) DO UPDATE SET {upd}", [cp, t, t, *f.values()]))
        if stmts:
            self._tx(lambda c: [c.execute(sql, args) for sql, args in stmts])

    # --- downlink ---------------------------------------------------------------------------------
    def queue_downlink(self, kind: str, doc: dict, targets: list[str]) -> int:
        """Store a new version of a document for these checkpoints; returns its version number.

        Versions are one increasing sequence over all kinds; a checkpoint is sent, per kind, only
        the newest version addressed to it, so one that was offline catches up in one step.
        """
        digest = check_downlink(kind, doc, targets)

        def tx(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO downlink_docs (kind, doc, sha256, created) VALUES (?, ?, ?, ?)",
                            (kind, json.dumps(doc), digest, time.time()))
            v = int(cur.lastrowid)
            c.executemany("INSERT INTO downlink_targets (version, checkpoint) VALUES (?, ?) ON CONFLICT DO NOTHING",
                          [(v, t) for t in targets])
            return v

        return self._tx(tx)  # type: ignore[return-value]

    def record_downlink_ack(self, checkpoint: str, kind: str, version: int, ok: bool, error: str | None) -> bool:
        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE downlink_targets SET acked = ?, ok = ?, error = ? WHERE version = ? AND checkpoint = ?"
                " AND acked IS NULL AND version IN (SELECT version FROM downlink_docs WHERE kind = ?)",
                (time.time(), int(ok), error, version, checkpoint, kind))
            return cur.rowcount == 1

        return self._tx(tx)  # type: ignore[return-value]


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


# Under this, an edge's measured offset is the link's own error (half its round trip and the
# two clocks' jitter), not a wrong clock: the edge's time stands.
CLOCK_CORRECT_S = 1.0


def central_time(d: dict) -> float | None:
    """An alert's time on central's clock, which the alerts' `t` column holds (and the dashboard
    sorts and filters by): the edge's `t` plus the offset to central it measured when it made the
    alert (common/clock.py), where that is a second or more and more than the measurement's own
    uncertainty (`clock_offset_err_s`, half the link's round trip); else the edge's `t`. The edge's
    own time stays in `data`. Without this, an alert from a box whose clock was reset falls out of
    every "last 24 h" view."""
    t, off, err = _num(d.get("t")), _num(d.get("clock_offset_s")), _num(d.get("clock_offset_err_s"))
    if t is None or off is None or not math.isfinite(off):
        return t
    if abs(off) < max(CLOCK_CORRECT_S, err if err is not None and math.isfinite(err) else 0.0):
        return t
    return t + off


def _s(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _bin(v: object) -> object:
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(type(v).__name__)


def _open_sqlite(url: str) -> HubStore:
    u = urlparse(url)
    path = (u.netloc + u.path) if u.netloc else u.path
    if not path:
        raise ValueError(f"store URL {url!r}: no file path (use sqlite:///path/to/central.sqlite)")
    return SQLiteStore(path)


def _open_postgres(url: str) -> HubStore:
    """Imported only when asked for: psycopg is the optional `postgres` extra (central/store_pg.py)."""
    from central.store_pg import open_postgres

    return open_postgres(url)


# scheme -> opener
BACKENDS: dict[str, Callable[[str], HubStore]] = {"sqlite": _open_sqlite, "postgresql": _open_postgres,
                                                   "postgres": _open_postgres}


def open_store(url: str) -> HubStore:
    scheme = urlparse(url).scheme
    if scheme not in BACKENDS:
        raise ValueError(f"store URL {url!r}: unsupported scheme {scheme!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[scheme](url)
