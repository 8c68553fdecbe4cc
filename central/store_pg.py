"""Central's store on PostgreSQL: the same `HubStore` interface as `SQLiteStore`, for several hubs at once.

Chosen by `hub.store = "postgresql://user@host:port/db"` (any libpq URI: `?host=/run/postgresql` for a
unix socket, `?sslmode=require` for TLS). Why each choice:

- psycopg 3 with a `psycopg_pool.ConnectionPool`: the hub thread writes while dashboard threads read;
  a pool gives each caller its own connection and replaces broken ones (the pool checks a connection
  before handing it out, so a restarted PostgreSQL costs one failed batch, never a wedged hub).
- Durable before the ack: every connection runs with `synchronous_commit = on`, so `write_batch`
  returns only after PostgreSQL has flushed the commit to its WAL (on a server with `fsync = on`).
- Several hubs on one database: nothing is read-modify-written in Python. Alerts and decisions go in
  with `INSERT ... ON CONFLICT DO NOTHING` keyed by their edge UUID (the same alert reaching two hubs
  is stored once, whichever commits first); rows are inserted in UUID order so two hubs writing the
  same batch take row locks in the same order and cannot deadlock; checkpoint rows are upserts that
  never move `last_seen` or the health snapshot backwards; downlink versions come from an identity
  column under a transaction-scoped advisory lock, so versions commit in the order they are numbered
  (a reader that sees version v sees every version before it); a downlink ack is one conditional
  UPDATE, so only one hub can record it first.
- Migrations are forward only, listed in `MIGRATIONS`, each applied in one transaction (PostgreSQL's
  DDL is transactional: a failed migration leaves nothing behind) under an advisory lock, and
  recorded in `schema_version`; hubs starting together apply each migration exactly once, and a hub
  older than its database refuses to start.

The logical schema is SQLiteStore's (central/store.py): same tables, columns and meaning; times are
Unix seconds as double precision (PostgreSQL's REAL is 4 bytes and would round them), JSON as text.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from central.store import _SEEN_FIELDS, HubReads, Inbound, _bin, _num, _s, central_time, check_downlink

# Advisory lock keys (pg_advisory_xact_lock takes one bigint): ASCII of "ZSTV" plus a role number.
LOCK_MIGRATE = 0x5A535456_0001
LOCK_DOWNLINK = 0x5A535456_0002


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema (same logical schema as SQLiteStore v1)", (
        """CREATE TABLE checkpoints (
            id TEXT PRIMARY KEY, first_seen DOUBLE PRECISION, last_seen DOUBLE PRECISION, backlog BIGINT,
            health TEXT, health_t DOUBLE PRECISION, skew_s DOUBLE PRECISION, rtt_s DOUBLE PRECISION,
            software TEXT, proto INTEGER)""",
        """CREATE TABLE alerts (
            uuid TEXT PRIMARY KEY, checkpoint TEXT NOT NULL, t DOUBLE PRECISION, kind TEXT, severity TEXT,
            score DOUBLE PRECISION, source TEXT, created DOUBLE PRECISION NOT NULL,
            received DOUBLE PRECISION NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX alerts_t ON alerts (t)",
        "CREATE INDEX alerts_cp_t ON alerts (checkpoint, t)",
        """CREATE TABLE evidence (
            alert_uuid TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL, size BIGINT NOT NULL,
            sha256 TEXT NOT NULL, path TEXT, missing INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (alert_uuid, name))""",
        """CREATE TABLE decisions (
            uuid TEXT PRIMARY KEY, alert_uuid TEXT, checkpoint TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
            received DOUBLE PRECISION NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX decisions_alert ON decisions (alert_uuid)",
        """CREATE TABLE downlink_docs (
            version BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, doc TEXT NOT NULL,
            sha256 TEXT NOT NULL, created DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE downlink_targets (
            version BIGINT NOT NULL, checkpoint TEXT NOT NULL, acked DOUBLE PRECISION, ok INTEGER, error TEXT,
            PRIMARY KEY (version, checkpoint))""",
        "CREATE INDEX downlink_targets_cp ON downlink_targets (checkpoint, version)",
    )),
    Migration(2, "index for retention: alerts by time received at central", (
        "CREATE INDEX alerts_received ON alerts (received)",
    )),
)

# Errors after which the same transaction may simply be tried again (two hubs racing).
_RETRY = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


class StoreUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused us; the message names the server, never a password."""


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable URL>"
    info.pop("password", None)
    host, port, db, user = info.get("host", ""), info.get("port", ""), info.get("dbname", ""), info.get("user", "")
    return f"postgresql://{user + '@' if user else ''}{host}{':' + port if port else ''}/{db}"


class SchemaTooNew(RuntimeError):
    """The database was migrated by newer software: refuse to run rather than misread it."""


def migrate(conn: psycopg.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the missing migrations in order, each in its own transaction; returns the versions applied.

    `conn` must be in autocommit mode (each migration opens its own transaction). Safe to call from
    several processes at once: the advisory lock makes the others wait, then find nothing to do.
    """
    known = max((m.version for m in migrations), default=0)
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migrations must have unique, increasing versions")
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                     " description TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)")
    for m in migrations:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_MIGRATE,))
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > known:
                raise SchemaTooNew(f"database schema v{current} is newer than this software (v{known})")
            if m.version <= current:
                continue
            for stmt in m.statements:
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_version (version, description, applied) VALUES (%s, %s, %s)",
                         (m.version, m.description, time.time()))
            applied.append(m.version)
    with conn.transaction():  # also refuse when there was nothing to apply
        current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        if current > known:
            raise SchemaTooNew(f"database schema v{current} is newer than this software (v{known})")
    return applied


def schema_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0])


# How long a statement waits for a lock another session holds (PostgreSQL waits forever by
# default): an administrator's open transaction, a LOCK TABLE, another hub's schema migration.
# The hub's loop, which pings systemd's watchdog (WatchdogSec=30), makes some of these calls
# itself; a statement that waits longer fails, is not acked, and is sent again by the sender.
LOCK_TIMEOUT_S = 5


def _configure(conn: psycopg.Connection) -> None:
    """Every pooled connection: autocommit (transactions are explicit), durable commits, and a
    bounded wait for locks (LOCK_TIMEOUT_S)."""
    conn.autocommit = True
    conn.execute("SET synchronous_commit = on")
    conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
    conn.execute("SET application_name = 'zastava-central'")


class PostgresStore(HubReads):
    """HubStore on PostgreSQL. Safe to share between threads (each call borrows a pooled connection)
    and between hub processes (see the module docstring)."""

    # the server away or restarting, the pool's wait run out, a lock past lock_timeout (all
    # psycopg.OperationalError), or our own disk refusing an evidence file
    TRANSIENT = (OSError, psycopg.OperationalError)
    MARK = "%s"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 4, timeout_s: float = 5.0,
                 migrations: Sequence[Migration] = MIGRATIONS):
        """timeout_s bounds the wait for a connection: while PostgreSQL is away, a hub's write fails
        after this long (nothing is acked, the senders retry) instead of stalling the hub's loop."""
        self.url = url
        try:  # one plain connection first: libpq's own message ("connection refused", "no such
            # database", "password authentication failed") is clearer than the pool's timeout
            psycopg.connect(url, connect_timeout=max(1, int(timeout_s))).close()
        except psycopg.Error as e:
            raise StoreUnavailable(f"PostgreSQL store {redact(url)}: {str(e).strip()}") from e
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, timeout=timeout_s,
                                   configure=_configure, check=ConnectionPool.check_connection,
                                   name="zastava-central", open=False)
        self.pool.open(wait=True, timeout=timeout_s)
        try:
            with self.pool.connection() as conn:
                migrate(conn, migrations)
        except BaseException:
            self.pool.close()
            raise

    # --- plumbing --------------------------------------------------------------------------------
    def _tx(self, fn: Callable[[psycopg.Connection], Any], retries: int = 5) -> Any:
        """Run fn in one transaction; a deadlock/serialization failure against another hub is retried."""
        for attempt in range(retries + 1):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return fn(conn)
            except _RETRY:
                if attempt == retries:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _query(self, sql: str, args: Sequence | dict = ()) -> list[dict]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def close(self) -> None:
        self.pool.close()

    # --- hub writes -------------------------------------------------------------------------------
    def write_batch(self, items: list[Inbound]) -> list[bool]:
        """Insert-or-ignore every item in one durable transaction; True where the row was new.

        Each table gets one INSERT whose rows arrive as a single JSON parameter, unpacked by the
        server (json_to_recordset): a hub batch of 500 alerts is three statements, and the encoding is
        the C json module's instead of psycopg adapting 5,000 Python values one by one (measured
        in-process: 32-55 ms per 500 alerts against 115 ms with one array parameter per column;
        bench/bench_central_store.py compares it with psycopg's executemany).
        """
        now = time.time()
        alerts = sorted((it for it in items if it.msg_type == "alert"), key=lambda it: it.msg_id)
        decisions = sorted((it for it in items if it.msg_type != "alert"), key=lambda it: it.msg_id)

        def tx(c: psycopg.Connection) -> set[str]:
            new: set[str] = set()
            if alerts:
                rows = [{"uuid": it.msg_id, "checkpoint": _text(it.checkpoint), "t": _fnum(central_time(it.data)),
                         "kind": _text(_s(it.data.get("kind"))), "severity": _text(_s(it.data.get("severity"))),
                         "score": _fnum(it.data.get("score")), "source": _text(_s(it.data.get("source"))),
                         "created": _fnum(it.created), "received": now,
                         "data": json.dumps(it.data, default=_bin)} for it in alerts]
                cur = c.execute(
                    "INSERT INTO alerts (uuid, checkpoint, t, kind, severity, score, source, created, received, data)"
                    " SELECT * FROM json_to_recordset(%s::json) AS u(uuid text, checkpoint text, t float8, kind text,"
                    " severity text, score float8, source text, created float8, received float8, data text)"
                    " ORDER BY uuid ON CONFLICT DO NOTHING RETURNING uuid", (_dumps(rows),))
                fresh = {r[0] for r in cur.fetchall()}
                new |= fresh
                ev = [{"alert_uuid": it.msg_id, "name": _text(e.name), "mime": _text(e.mime), "size": e.size,
                       "sha256": _text(e.sha256), "path": _text(e.path), "missing": int(e.missing)}
                      for it in alerts if it.msg_id in fresh for e in it.evidence]
                if ev:
                    c.execute(
                        "INSERT INTO evidence (alert_uuid, name, mime, size, sha256, path, missing)"
                        " SELECT * FROM json_to_recordset(%s::json) AS u(alert_uuid text, name text, mime text,"
                        " size int8, sha256 text, path text, missing int4) ORDER BY 1, 2 ON CONFLICT DO NOTHING",
                        (_dumps(ev),))
            if decisions:
                rows = [{"uuid": it.msg_id, "alert_uuid": _text(_s(it.data.get("alert_uuid"))),
                         "checkpoint": _text(it.checkpoint), "created": _fnum(it.created), "received": now,
                         "data": json.dumps(it.data, default=_bin)} for it in decisions]
                cur = c.execute(
                    "INSERT INTO decisions (uuid, alert_uuid, checkpoint, created, received, data)"
                    " SELECT * FROM json_to_recordset(%s::json) AS u(uuid text, alert_uuid text, checkpoint text,"
                    " created float8, received float8, data text)"
                    " ORDER BY uuid ON CONFLICT DO NOTHING RETURNING uuid", (_dumps(rows),))
                new |= {r[0] for r in cur.fetchall()}
            return new

        fresh = self._tx(tx) if items else set()
        out: list[bool] = []
        for it in items:  # a UUID twice in one batch: the first is new, the repeat is not
            out.append(it.msg_id in fresh)
            fresh.discard(it.msg_id)
        return out

    def update_checkpoints(self, t: float, updates: dict[str, dict]) -> None:
        """Mark checkpoints seen at hub time t, with any of backlog, skew_s, rtt_s, software, proto,
        health (a map) and health_t; one transaction for all (the hub flushes once a second).

        Several hubs report the same checkpoint: last_seen only moves forward, first_seen only back,
        and a health snapshot replaces the stored one only if it is newer by the edge's clock. Rows
        are upserted in checkpoint-id order, so two hubs' flushes lock rows in the same order and
        cannot deadlock; pipeline mode sends all statements in one round trip.
        """
        stmts = []
        for cp in sorted(updates):
            fields = updates[cp]
            bad = set(fields) - _SEEN_FIELDS
            if bad:
                raise ValueError(f"unknown checkpoint fields {sorted(bad)}")
            f = dict(fields)
            if "health" in f:
                f["health"] = json.dumps(f["health"], default=_bin)
            cols = ["id", "first_seen", "last_seen", *f]  # names checked against _SEEN_FIELDS above
            newer = "(checkpoints.health_t IS NULL OR excluded.health_t >= checkpoints.health_t)"
            upd = ["first_seen = LEAST(checkpoints.first_seen, excluded.first_seen)",
                   "last_seen = GREATEST(checkpoints.last_seen, excluded.last_seen)"]
            for k in f:
                if k in ("health", "health_t") and "health_t" in f:
                    upd.append(f"{k} = CASE WHEN {newer} THEN excluded.{k} ELSE checkpoints.{k} END")
                else:
                    upd.append(f"{k} = excluded.{k}")
            stmts.append((f"INSERT INTO checkpoints ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                          f" ON CONFLICT (id) DO UPDATE SET {', '.join(upd)}", [cp, t, t, *f.values()]))
        if not stmts:
            return

        def tx(c: psycopg.Connection) -> None:
            with c.pipeline():
                for sql, args in stmts:
                    c.execute(sql, args)

        self._tx(tx)

    # --- downlink ---------------------------------------------------------------------------------
    def queue_downlink(self, kind: str, doc: dict, targets: list[str]) -> int:
        """Store a new version of a document for these checkpoints; returns its version number.

        The advisory lock serialises writers, so version numbers commit in increasing order.
        """
        digest = check_downlink(kind, doc, targets)

        def tx(c: psycopg.Connection) -> int:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_DOWNLINK,))
            v = c.execute("INSERT INTO downlink_docs (kind, doc, sha256, created) VALUES (%s, %s, %s, %s)"
                          " RETURNING version", (kind, json.dumps(doc), digest, time.time())).fetchone()[0]
            c.execute("INSERT INTO downlink_targets (version, checkpoint) SELECT %s, unnest(%s::text[])"
                      " ON CONFLICT DO NOTHING", (v, list(targets)))
            return int(v)

        return self._tx(tx)

    def record_downlink_ack(self, checkpoint: str, kind: str, version: int, ok: bool, error: str | None) -> bool:
        def tx(c: psycopg.Connection) -> bool:
            cur = c.execute(
                "UPDATE downlink_targets SET acked = %s, ok = %s, error = %s WHERE version = %s AND checkpoint = %s"
                " AND acked IS NULL AND version IN (SELECT version FROM downlink_docs WHERE kind = %s)",
                (time.time(), int(ok), error, version, checkpoint, kind))
            return cur.rowcount == 1

        return self._tx(tx)


def _text(v: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL, which a wire string may carry (msgpack allows it): store it as
    U+FFFD in the short columns (the full body in `data` keeps it, JSON-escaped), so one odd alert can
    never fail its whole batch again and again. Invalid UTF-8 never gets this far: sync.wire refuses it."""
    if v is None or "\x00" not in v:
        return v
    return v.replace("\x00", "\ufffd")


def _fnum(v: object) -> float | None:
    """A number column: NaN and infinities become NULL (JSON cannot carry them; SQLite stores NaN as NULL)."""
    f = _num(v)
    return f if f is not None and math.isfinite(f) else None


def _dumps(rows: list[dict]) -> str:
    """The batch as one JSON text; ensure_ascii keeps every character escaped, so the server's JSON
    parser sees only ASCII (and the `data` column, itself JSON text, nests as a plain string)."""
    return json.dumps(rows, allow_nan=False)


def open_postgres(url: str) -> PostgresStore:
    """`open_store`'s opener for postgresql:// and postgres:// URLs."""
    return PostgresStore(url)
