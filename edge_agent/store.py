"""The agent's local store: alerts, officer decisions, device health and the sync outbox.

One SQLite file in WAL mode, through sqlite-utils. A sqlite3 connection belongs to the thread
that made it, so each thread opens its own `Store` on the same file; writes from several
connections are serialised by SQLite (busy_timeout), and every multi-row write is one
`db.atomic()` transaction. An alert and its outbox row commit together or not at all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import sqlite_utils

from edge_agent.alerts import SEVERITY_PRIORITY, Alert
from sync import outbox

log = logging.getLogger("zastava.store")


def _m1(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE alerts (
            uuid TEXT PRIMARY KEY,
            t REAL NOT NULL,
            checkpoint TEXT NOT NULL,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            score REAL NOT NULL,
            severity TEXT NOT NULL,
            location TEXT NOT NULL,
            reason TEXT NOT NULL,
            bag_id TEXT,
            evidence TEXT NOT NULL DEFAULT '[]',
            committed REAL NOT NULL
        );
        CREATE INDEX alerts_t ON alerts (t);
        CREATE TABLE decisions (
            uuid TEXT PRIMARY KEY,
            alert_uuid TEXT NOT NULL REFERENCES alerts(uuid),
            officer TEXT NOT NULL,
            decision TEXT NOT NULL,
            contraband_kind TEXT,
            note TEXT,
            t REAL NOT NULL
        );
        CREATE TABLE device_health (
            device TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            t REAL NOT NULL,
            state TEXT NOT NULL,
            health TEXT NOT NULL
        );
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('raw', 'evidence')),
            alert_uuid TEXT,
            size INTEGER NOT NULL,
            created REAL NOT NULL
        );
        CREATE INDEX files_role ON files (role, created);
        """
    )
    outbox.ensure_schema(db)


def _m2(db: sqlite_utils.Database) -> None:
    """v2: clock quality, cross-sensor fusion, TIP flag and free-form extras on alerts."""
    db.executescript(
        """
        ALTER TABLE alerts ADD COLUMN clock TEXT NOT NULL DEFAULT 'unsynced';
        ALTER TABLE alerts ADD COLUMN fusion TEXT;
        ALTER TABLE alerts ADD COLUMN tip INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE alerts ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';
        CREATE INDEX decisions_alert ON decisions (alert_uuid);
        """
    )


def _m3(db: sqlite_utils.Database) -> None:
    """v3: central's clock minus ours when the alert was made, where the link had measured it
    (common/clock.py)."""
    db.execute("ALTER TABLE alerts ADD COLUMN clock_offset_s REAL")


def _m4(db: sqlite_utils.Database) -> None:
    """v4: retention deletes files in the order they were written (their rowid: a file written again
    gets a new one), which an index on role alone keeps in order, rowid being every index's last
    column. Not by `created`, the wall clock's word, which NTP may step back: a box whose clock
    ran ahead would then delete its newest files first."""
    db.execute("CREATE INDEX files_written ON files (role)")


# Forward migrations, in order; the schema version is the number applied (PRAGMA user_version).
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1, _m2, _m3, _m4]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    pass


# How long a write waits for another writer (SQLite's busy timeout) before it fails with
# "database is locked". The agent's threads that feed the watchdog wait less (runner, lanes):
# a database held locked must cost them a failed write, which they retry, never the heartbeat
# systemd restarts the agent on.
BUSY_S = 30.0


def connect(path: str | Path, busy_s: float = BUSY_S) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=busy_s, isolation_level=None, check_same_thread=True)
    db = sqlite_utils.Database(conn)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # an alert committed is on disk, power cut or not
    db.execute("PRAGMA foreign_keys=ON")
    return db


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database, target: int = SCHEMA_VERSION) -> int:
    """Apply the missing forward migrations, each in its own transaction; returns the version."""
    current = schema_version(db)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"store schema v{current} is newer than this software (v{SCHEMA_VERSION}): refusing to touch it"
        )
    for v in range(current, target):
        with db.atomic():
            MIGRATIONS[v](db)
            db.execute(f"PRAGMA user_version = {v + 1}")
        log.info("store migrated to schema v%d", v + 1)
    return schema_version(db)


class Store:
    def __init__(self, path: str | Path, busy_s: float = BUSY_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(self.path, busy_s)
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    # --- alerts -------------------------------------------------------------------------------
    def add_alert(self, alert: Alert, sync: bool = True) -> bool:
        """Commit an alert (and its outbox message) durably; False if that UUID already exists."""
        row = {
            "uuid": alert.uuid,
            "t": alert.t,
            "checkpoint": alert.checkpoint,
            "source": alert.source,
            "kind": alert.kind,
            "score": float(alert.score),
            "severity": alert.severity,
            "location": json.dumps(alert.location),
            "reason": alert.reason,
            "bag_id": alert.bag_id,
            "evidence": json.dumps([asdict(e) for e in alert.evidence]),
            "committed": time.time(),
            "clock": alert.clock,
            "clock_offset_s": alert.clock_offset_s,
            "fusion": json.dumps(alert.fusion) if alert.fusion else None,
            "tip": int(alert.tip),
            "extra": json.dumps(alert.extra),
        }
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.db.atomic():
            cur = self.db.execute(f"INSERT OR IGNORE INTO alerts ({cols}) VALUES ({marks})", list(row.values()))
            if cur.rowcount != 1:
                return False
            for e in alert.evidence:
                self.db.execute("UPDATE files SET alert_uuid = ?, role = 'evidence' WHERE path = ?", [alert.uuid, e.path])
            if sync and not alert.tip:
                outbox.enqueue(
                    self.db,
                    alert.uuid,
                    "alert",
                    alert.wire_body(),
                    [asdict(e) for e in alert.evidence],
                    priority=SEVERITY_PRIORITY[alert.severity],
                )
        return True

    def alerts(self, limit: int = 100, since: float | None = None, include_tip: bool = False) -> list[dict]:
        where, args = [], []
        if since is not None:
            where.append("t >= ?")
            args.append(since)
        if not include_tip:
            where.append("tip = 0")
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY t DESC LIMIT ?"
        return [self._alert_row(r) for r in self.db.query(sql, [*args, limit])]

    def get_alert(self, uuid: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM alerts WHERE uuid = ?", [uuid]))
        return self._alert_row(rows[0]) if rows else None

    def has_alert(self, uuid: str) -> bool:
        return self.db.execute("SELECT 1 FROM alerts WHERE uuid = ?", [uuid]).fetchone() is not None

    def count_alerts(self) -> int:
        return self.db.execute("SELECT count(*) FROM alerts").fetchone()[0]

    @staticmethod
    def _alert_row(r: dict) -> dict:
        r = dict(r)
        r["location"] = json.loads(r["location"])
        r["evidence"] = json.loads(r["evidence"])
        r["fusion"] = json.loads(r["fusion"]) if r.get("fusion") else None
        r["extra"] = json.loads(r.get("extra") or "{}")
        r["tip"] = bool(r.get("tip"))
        return r

    # --- officer decisions --------------------------------------------------------------------
    def add_decision(self, decision: dict, sync: bool = True) -> bool:
        """decision: uuid, alert_uuid, officer, decision, contraband_kind, note, t."""
        keys = ("uuid", "alert_uuid", "officer", "decision", "contraband_kind", "note", "t")
        row = {k: decision.get(k) for k in keys}
        with self.db.atomic():
            cur = self.db.execute(
                f"INSERT OR IGNORE INTO decisions ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                list(row.values()),
            )
            if cur.rowcount != 1:
                return False
            tip = self.db.execute("SELECT tip FROM alerts WHERE uuid = ?", [row["alert_uuid"]]).fetchone()
            if sync and not (tip and tip[0]):
                off = decision.get("clock_offset_s")  # central's clock minus ours: for central only
                body = row if off is None else {**row, "clock_offset_s": round(float(off), 3)}
                outbox.enqueue(self.db, row["uuid"], "decision", body, priority=2)
        return True

    def decisions_for(self, alert_uuid: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM decisions WHERE alert_uuid = ? ORDER BY t", [alert_uuid]))

    # --- device health ------------------------------------------------------------------------
    def record_health(self, device: str, kind: str, state: str, health: dict) -> None:
        self.db.execute(
            "INSERT INTO device_health (device, kind, t, state, health) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(device) DO UPDATE SET kind=excluded.kind, t=excluded.t, state=excluded.state, "
            "health=excluded.health",
            [device, kind, time.time(), state, json.dumps(health, default=str)],
        )

    def health(self) -> list[dict]:
        out = []
        for r in self.db.query("SELECT * FROM device_health ORDER BY device"):
            r = dict(r)
            r["health"] = json.loads(r["health"])
            out.append(r)
        return out

    # --- sync -------------------------------------------------------------------------------
    def backlog(self) -> int:
        return outbox.backlog(self.db)
