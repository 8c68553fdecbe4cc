"""Files on disk under a quota: raw frames/IQ kept for the console, evidence kept for central.

Retention order when the directory is over its quota:
  1. raw data (frames, IQ) oldest first;
  2. evidence of alerts central has acknowledged, oldest first;
  3. only past the hard limit: evidence not yet acknowledged, oldest first, each with a loud
     log line, because that is evidence central will never see.
Each file is written to a temporary name, fsynced and renamed, so a crash leaves either the
whole file or none, and it is recorded in the store's `files` table in the same breath.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from common.durable import write_atomic
from edge_agent.alerts import Evidence
from edge_agent.store import Store

log = logging.getLogger("zastava.evidence")


class FileStore:
    def __init__(self, store: Store, root: Path, quota_bytes: int, hard_limit_bytes: int):
        if hard_limit_bytes < quota_bytes:
            raise ValueError("hard limit must be at least the quota")
        self.store = store
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota = quota_bytes
        self.hard_limit = hard_limit_bytes
        self.dropped_undelivered = 0

    def abspath(self, rel: str) -> Path:
        p = (self.root / rel).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"path escapes the evidence directory: {rel}")
        return p

    def save(self, rel: str, data: bytes, role: str, mime: str, alert_uuid: str | None = None) -> Evidence:
        """Write a file and record it; `role` is 'raw' or 'evidence'."""
        path = self.abspath(rel)
        write_atomic(path, data)
        self.store.db.execute(
            "INSERT OR REPLACE INTO files (path, role, alert_uuid, size, created) VALUES (?, ?, ?, ?, ?)",
            [rel, role, alert_uuid, len(data), time.time()],
        )
        return Evidence(
            name=path.name, path=rel, mime=mime, size=len(data), sha256=hashlib.sha256(data).hexdigest()
        )

    def register(self, rel: str, role: str, mime: str, alert_uuid: str | None = None) -> Evidence:
        """Record a file another library wrote in place (e.g. a SigMF pair written by `sigmf`)."""
        path = self.abspath(rel)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        size = path.stat().st_size
        self.store.db.execute(
            "INSERT OR REPLACE INTO files (path, role, alert_uuid, size, created) VALUES (?, ?, ?, ?, ?)",
            [rel, role, alert_uuid, size, time.time()],
        )
        return Evidence(name=path.name, path=rel, mime=mime, size=size, sha256=h.hexdigest())

    def used(self) -> int:
        return self.store.db.execute("SELECT coalesce(sum(size), 0) FROM files").fetchone()[0]

    def _candidates(self, which: str) -> list[tuple[str, int, str | None]]:
        if which == "raw":
            sql = "SELECT path, size, alert_uuid FROM files WHERE role = 'raw' ORDER BY created"
        elif which == "delivered":
            sql = (
                "SELECT f.path, f.size, f.alert_uuid FROM files f JOIN outbox o ON o.msg_id = f.alert_uuid "
                "WHERE f.role = 'evidence' AND o.delivered IS NOT NULL ORDER BY f.created"
            )
        else:
            sql = (
                "SELECT f.path, f.size, f.alert_uuid FROM files f LEFT JOIN outbox o ON o.msg_id = f.alert_uuid "
                "WHERE f.role = 'evidence' AND (o.delivered IS NULL) ORDER BY f.created"
            )
        return self.store.db.execute(sql).fetchall()

    def _delete(self, rel: str) -> None:
        try:
            self.abspath(rel).unlink()
        except FileNotFoundError:
            pass
        self.store.db.execute("DELETE FROM files WHERE path = ?", [rel])

    def enforce(self) -> dict:
        """Bring usage under the quota (or the hard limit, for undelivered evidence)."""
        used = self.used()
        removed = {"raw": 0, "delivered": 0, "undelivered": 0}
        for which, limit in (("raw", self.quota), ("delivered", self.quota), ("undelivered", self.hard_limit)):
            if used <= limit:
                continue
            for rel, size, alert_uuid in self._candidates(which):
                if used <= limit:
                    break
                if which == "undelivered":
                    log.error(
                        "DISK HARD LIMIT: deleting evidence %s of alert %s that central has NOT received "
                        "(usage %d > hard limit %d bytes)", rel, alert_uuid, used, self.hard_limit,
                    )
                    self.dropped_undelivered += 1
                self._delete(rel)
                used -= size
                removed[which] += 1
        return removed
