"""Files on disk under a quota: raw frames/IQ kept for the console, evidence kept for central.

Retention order when the directory is over its quota:
  1. raw data (frames, IQ) oldest first;
  2. evidence of alerts central has acknowledged, oldest first;
  3. only past the hard limit: evidence not yet acknowledged, oldest first, each with a loud
     log line, because that is evidence central will never see.
The quota counts our files only, and the disk is shared (the store, a scanner's spool and
C-STORE inbox, the system's logs): so steps 1 and 2 also run whenever the file system has less
than `min_free` bytes free (make_room: every second from the supervisor, and before every bag
and radio alert), since a full disk fails every write of every bag after it.
Each file is written to a temporary name, fsynced and renamed, so a crash leaves either the
whole file or none, and it is recorded in the store's `files` table in the same breath.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path

from common.durable import write_atomic
from edge_agent.alerts import Evidence
from edge_agent.store import Store

log = logging.getLogger("zastava.evidence")


class FileStore:
    def __init__(self, store: Store, root: Path, quota_bytes: int, hard_limit_bytes: int, min_free_bytes: int = 0):
        if hard_limit_bytes < quota_bytes:
            raise ValueError("hard limit must be at least the quota")
        self.store = store
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota = quota_bytes
        self.hard_limit = hard_limit_bytes
        self.min_free = min_free_bytes
        self.dropped_undelivered = 0
        self.deleted_for_disk = 0  # files make_room deleted
        self._low_said = 0.0  # when make_room last said it could not reach the floor

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
        """Oldest first by the order the files were written (rowid, see store._m4), not by the
        wall clock, which may have been stepped back since."""
        if which == "raw":
            sql = "SELECT path, size, alert_uuid FROM files WHERE role = 'raw' ORDER BY rowid"
        elif which == "delivered":
            sql = (
                "SELECT f.path, f.size, f.alert_uuid FROM files f JOIN outbox o ON o.msg_id = f.alert_uuid "
                "WHERE f.role = 'evidence' AND o.delivered IS NOT NULL ORDER BY f.rowid"
            )
        else:
            sql = (
                "SELECT f.path, f.size, f.alert_uuid FROM files f LEFT JOIN outbox o ON o.msg_id = f.alert_uuid "
                "WHERE f.role = 'evidence' AND (o.delivered IS NULL) ORDER BY f.rowid"
            )
        return self.store.db.execute(sql).fetchall()

    def free(self) -> int:
        """Bytes free on the file system the files are on (for us: root may be more)."""
        return shutil.disk_usage(self.root).free

    def make_room(self) -> dict | None:
        """Keep min_free bytes free on the file system: delete raw data, then evidence central
        has, oldest first, until there is. One statvfs when there is room (a few microseconds,
        so it runs before every bag). Evidence central has not received is never deleted for
        this: where only that is left, the disk stays low and it is said (once a minute)."""
        if not self.min_free:
            return None
        free = self.free()
        if free >= self.min_free:
            return None
        removed = {"raw": 0, "delivered": 0}
        for which in removed:
            candidates = iter(self._candidates(which))  # oldest first
            while free < self.min_free:
                # as many as their sizes say will make the room, in one transaction: a delete
                # apiece wrote several pages each to the WAL, on the very disk that is full
                batch, need = [], self.min_free - free
                for rel, size, _uuid in candidates:
                    batch.append(rel)
                    need -= size
                    if need <= 0:
                        break
                if not batch:
                    break  # nothing of this kind left
                self._delete_many(batch)
                removed[which] += len(batch)
                free = self.free()  # blocks on disk, not the files' sizes, are what came back
        n = sum(removed.values())
        self.deleted_for_disk += n
        if n:
            log.warning("disk low: deleted %d raw and %d delivered evidence files to keep %d MB free on %s "
                        "(now %d MB)", removed["raw"], removed["delivered"], self.min_free >> 20, self.root,
                        free >> 20)
        if free < self.min_free and time.monotonic() - self._low_said > 60:
            self._low_said = time.monotonic()
            log.error("DISK LOW: %d MB free on %s, under the %d MB floor, and nothing left that retention may "
                      "delete (evidence central has not received is kept): writes may fail", free >> 20,
                      self.root, self.min_free >> 20)
        return removed

    def _delete_many(self, rels: list[str]) -> None:
        for rel in rels:
            try:
                self.abspath(rel).unlink()
            except FileNotFoundError:
                pass
        with self.store.db.atomic():
            self.store.db.conn.executemany("DELETE FROM files WHERE path = ?", [(r,) for r in rels])

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
                self._delete_many([rel])
                used -= size
                removed[which] += 1
        self.make_room()
        return removed
