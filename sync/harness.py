"""A loopback rig of real processes: keys, a hub process, sender processes, an outbox to fill.

Used by the sync tests and bench/bench_sync.py so both exercise exactly what runs in the field
(`zastava central` and `python -m sync.sender` as separate processes on real sockets) and agree
on how alerts are made. Nothing here is a double of our code; it only starts and inspects it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from sync import outbox
from sync.keys import make_keypair

REPO = Path(__file__).resolve().parent.parent


_POOL = os.urandom(1 << 20)


def evidence_blob(size: int) -> bytes:
    """Unique stand-in evidence bytes: 16 fresh random bytes, then a slice of a random pool. The
    kernel's random generator costs ~50 us per 20 kB, which would make a benchmark of the sync
    path measure the stand-in for the agent's JPEG encoder instead (the agent's real evidence
    comes from its lanes, long before the commit)."""
    head = os.urandom(min(16, size))
    rest = size - len(head)
    if rest <= 0:
        return head
    k = int.from_bytes(head[:4], "little") % max(1, len(_POOL) - rest) if rest < len(_POOL) else 0
    body = _POOL[k:k + rest]
    while len(body) < rest:  # larger than the pool: repeat it
        body += _POOL[:rest - len(body)]
    return head + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Rig:
    root: Path
    checkpoints: list[str] = field(default_factory=lambda: ["CP-01"])
    heartbeat_s: float = 0.5
    max_msg_bytes: int = 64 << 20
    batch: int = 500
    port: int = 0
    evidence_sync: str = "syncfs"
    hub: subprocess.Popen | None = None
    senders: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.keys = self.root / "keys"
        self.cps = self.root / "checkpoints"
        self.cps.mkdir(exist_ok=True)
        self.hub_pub, self.hub_sec = make_keypair(self.keys, "hub", overwrite=True)
        self.cp_keys: dict[str, tuple[Path, Path]] = {}
        for cp in self.checkpoints:
            self.cp_keys[cp] = make_keypair(self.keys, cp, overwrite=True)
            shutil.copy(self.cp_keys[cp][0], self.cps / f"{cp}.key")
        self.port = self.port or free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.data_dir = self.root / "central"
        self.config = self.root / "central.toml"
        self.config.write_text(
            "[hub]\n"
            f'bind = "{self.endpoint}"\nsecret_key = "{self.hub_sec}"\ncheckpoints_dir = "{self.cps}"\n'
            f'data_dir = "{self.data_dir}"\nheartbeat_s = {self.heartbeat_s}\nmax_msg_bytes = {self.max_msg_bytes}\n'
            f'batch = {self.batch}\nreload_s = 0.3\nevidence_sync = "{self.evidence_sync}"\n')
        self._dbs: dict[str, sqlite_utils.Database] = {}

    # --- edge side ------------------------------------------------------------------------------
    def edge_db_path(self, cp: str) -> Path:
        return self.root / "edge" / cp / "agent.sqlite"

    def evidence_dir(self, cp: str) -> Path:
        return self.root / "edge" / cp / "evidence"

    def edge_db(self, cp: str = "CP-01") -> sqlite_utils.Database:
        if cp not in self._dbs:
            p = self.edge_db_path(cp)
            p.parent.mkdir(parents=True, exist_ok=True)
            self.evidence_dir(cp).mkdir(parents=True, exist_ok=True)
            db = sqlite_utils.Database(sqlite3.connect(str(p), timeout=30, isolation_level=None))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            outbox.ensure_schema(db)
            self._dbs[cp] = db
        return self._dbs[cp]

    def add_alerts(self, n: int, cp: str = "CP-01", evidence_bytes: int = 2000, severity: str = "high",
                   priority: int = 3) -> list[str]:
        """Commit n alerts with one evidence file each, as the agent's store does (one transaction)."""
        return self.commit_alerts(self.write_evidence(n, cp, evidence_bytes), cp, severity, priority)

    def write_evidence(self, n: int, cp: str = "CP-01", evidence_bytes: int = 2000) -> list[tuple[str, dict]]:
        """n alerts' evidence files, as the agent's lanes write them before an alert is committed:
        [(alert id, evidence meta)] for commit_alerts."""
        self.edge_db(cp)
        ev = self.evidence_dir(cp)
        rows = []
        for _ in range(n):
            u = str(uuid.uuid4())
            blob = evidence_blob(evidence_bytes)
            (ev / f"{u}.jpg").write_bytes(blob)
            rows.append((u, {"name": "frame.jpg", "path": f"{u}.jpg", "mime": "image/jpeg", "size": len(blob),
                             "sha256": hashlib.sha256(blob).hexdigest()}))
        return rows

    def commit_alerts(self, prepared: list[tuple[str, dict]], cp: str = "CP-01", severity: str = "high",
                      priority: int = 3) -> list[str]:
        """Commit alerts whose evidence write_evidence wrote: alert and outbox rows in one transaction."""
        db = self.edge_db(cp)
        with db.atomic():
            for u, meta in prepared:
                body = {"uuid": u, "t": time.time(), "checkpoint": cp, "source": "lane1", "kind": "xray.narcotics",
                        "score": 0.91, "severity": severity, "location": {"box": [1, 2, 30, 40]}, "reason": "test",
                        "evidence": [{k: meta[k] for k in ("name", "mime", "size", "sha256")}]}
                outbox.enqueue(db, u, "alert", body, [meta], priority)
        return [u for u, _ in prepared]

    def backlog(self, cp: str = "CP-01") -> int:
        return outbox.backlog(self.edge_db(cp))

    # --- processes ------------------------------------------------------------------------------
    def start_hub(self, wait: bool = True, env: dict | None = None) -> subprocess.Popen:
        log = open(self.root / "hub.log", "ab")
        self.hub = subprocess.Popen([sys.executable, "-m", "edge_agent", "central", "--config", str(self.config)],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **(env or {})})
        if wait:
            line = self.hub.stdout.readline()
            if not line:
                raise RuntimeError(f"hub did not start; see {self.root / 'hub.log'}")
            json.loads(line)
        return self.hub

    def start_sender(self, cp: str = "CP-01", batch: int = 200, downlink_dir: Path | None = None,
                     endpoints: list[str] | None = None, wait: bool = True) -> subprocess.Popen:
        self.edge_db(cp)
        cmd = [sys.executable, "-m", "sync.sender", "--db", str(self.edge_db_path(cp)), "--checkpoint", cp,
               "--server-key", str(self.hub_pub), "--secret-key", str(self.cp_keys[cp][1]),
               "--evidence-dir", str(self.evidence_dir(cp)), "--heartbeat", str(self.heartbeat_s),
               "--batch", str(batch)]
        for e in endpoints or [self.endpoint]:
            cmd += ["--endpoint", e]
        if downlink_dir:
            cmd += ["--downlink-dir", str(downlink_dir)]
        log = open(self.root / f"sender-{cp}.log", "ab")
        p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log)
        if wait:
            p.stdout.readline()
        self.senders[cp] = p
        return p

    @staticmethod
    def kill(p: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            p.wait(10)

    def stop_all(self) -> None:
        for p in self.senders.values():
            self.kill(p, signal.SIGTERM)
        self.kill(self.hub, signal.SIGTERM)
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()

    # --- central side ---------------------------------------------------------------------------
    def hub_query(self, sql: str, args: tuple = ()) -> list[tuple]:
        p = self.data_dir / "central.sqlite"
        if not p.exists():
            return []
        c = sqlite3.connect(str(p), timeout=30)
        try:
            return c.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            c.close()

    def hub_alert_ids(self) -> list[str]:
        return [r[0] for r in self.hub_query("SELECT uuid FROM alerts")]
