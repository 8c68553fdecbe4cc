"""The edge's durable outbox: a table in the agent's SQLite file.

Whoever commits an alert enqueues its message in the same transaction (`enqueue` takes the
caller's sqlite-utils Database inside its `atomic()` block), so an alert is never committed
without being queued, nor queued without being committed. The sender marks rows delivered
only on the hub's ack; ZeroMQ's own queues are never trusted to hold anything.

Order: higher priority first, then oldest first, so a backlog flush never starves a new
high-severity alert.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import msgpack
import sqlite_utils

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT NOT NULL UNIQUE,
    msg_type TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    evidence TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt REAL,
    delivered REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered, priority DESC, seq);
"""


@dataclass
class OutMsg:
    seq: int
    msg_id: str
    msg_type: str
    priority: int
    body: dict
    evidence: list[dict]
    created: float
    attempts: int


def ensure_schema(db: sqlite_utils.Database) -> None:
    db.executescript(SCHEMA)


def enqueue(
    db: sqlite_utils.Database,
    msg_id: str,
    msg_type: str,
    body: dict,
    evidence: list[dict] | None = None,
    priority: int = 0,
) -> bool:
    """Queue one message; a second enqueue of the same msg_id is ignored (returns False)."""
    cur = db.execute(
        "INSERT OR IGNORE INTO outbox (msg_id, msg_type, priority, body, evidence, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            msg_id,
            msg_type,
            int(priority),
            msgpack.packb(body, use_bin_type=True),
            json.dumps(evidence or []),
            time.time(),
        ],
    )
    return cur.rowcount == 1


def pending(db: sqlite_utils.Database, limit: int = 100, exclude: set[str] | None = None) -> list[OutMsg]:
    rows = db.execute(
        "SELECT seq, msg_id, msg_type, priority, body, evidence, created, attempts FROM outbox "
        "WHERE delivered IS NULL ORDER BY priority DESC, seq LIMIT ?",
        [limit + len(exclude or ())],
    ).fetchall()
    out = []
    for seq, mid, mt, pr, body, ev, created, att in rows:
        if exclude and mid in exclude:
            continue
        out.append(OutMsg(seq, mid, mt, pr, msgpack.unpackb(body, raw=False), json.loads(ev), created, att))
        if len(out) >= limit:
            break
    return out


def mark_attempt(db: sqlite_utils.Database, msg_ids: list[str]) -> None:
    now = time.time()
    with db.atomic():
        db.conn.executemany(
            "UPDATE outbox SET attempts = attempts + 1, last_attempt = ? WHERE msg_id = ?",
            [(now, m) for m in msg_ids],
        )


def mark_delivered(db: sqlite_utils.Database, msg_ids: list[str]) -> int:
    now = time.time()
    with db.atomic():
        cur = db.conn.executemany(
            "UPDATE outbox SET delivered = ? WHERE msg_id = ? AND delivered IS NULL",
            [(now, m) for m in msg_ids],
        )
    return cur.rowcount


def backlog(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM outbox WHERE delivered IS NULL").fetchone()[0]


def is_delivered(db: sqlite_utils.Database, msg_id: str) -> bool:
    row = db.execute("SELECT delivered FROM outbox WHERE msg_id = ?", [msg_id]).fetchone()
    return bool(row and row[0])
