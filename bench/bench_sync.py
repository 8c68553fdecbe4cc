"""Sync benchmark: edge outbox -> ZeroMQ/CURVE -> hub durable write -> ack, beside a bare baseline.

Three figures, each for Zastava (sender and hub as separate processes, exactly as deployed) and
for a bare baseline in the same run (pyzmq DEALER/ROUTER with CURVE + sqlite3, threads in this
process, the same durable writes: edge commit with synchronous=FULL; at the hub the batch's
evidence files written and renamed, then one syncfs (where there is none: each fsynced, then the
folder), while the rows commit with synchronous=FULL, then the ack):

  latency     edge commit returned -> durable at the hub, p50/p99, 100 alerts/s, 20 kB evidence
              (Zastava: until the ack is recorded at the edge, which is later than the hub's
              write, so the figure is an upper bound; bare: until the hub's commit returned)
  sustained   alerts/s with 20 kB evidence each, producer committing as fast as it can (the
              evidence files written before the clock starts, as the agent's lanes do)
  backlog     time to flush a backlog (10,000 alerts; 2,000 with --quick) once the hub is up

Targets (issue 8): latency p99 < 10 ms on loopback; sustained >= 3,000 alerts/s.
Usage: python bench/bench_sync.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zmq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from common.durable import has_syncfs, syncfs  # noqa: E402
from sync.harness import Rig, evidence_blob, wait_for  # noqa: E402

EVIDENCE = 20_000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# --- Zastava --------------------------------------------------------------------------------------
def ours_latency(root: Path, seconds: float, rate: float = 100.0) -> dict:
    rig = Rig(root, heartbeat_s=1.0)
    try:
        rig.start_hub()
        rig.start_sender()
        rig.add_alerts(5, evidence_bytes=EVIDENCE)  # warm the link
        wait_for(lambda: rig.backlog() == 0, 30, what="warm-up")
        committed: dict[str, float] = {}  # id -> when the edge commit returned
        t0 = time.monotonic()
        n = int(seconds * rate)
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            (u,) = rig.add_alerts(1, evidence_bytes=EVIDENCE)
            committed[u] = time.time()
        wait_for(lambda: rig.backlog() == 0, 60, what="latency run delivered")
        ids = list(committed)
        qs = ",".join("?" * len(ids))
        rows = rig.edge_db().execute(f"SELECT msg_id, delivered FROM outbox WHERE msg_id IN ({qs})", ids).fetchall()
        lat = [(d - committed[u]) * 1e3 for u, d in rows]
        return {"n": len(lat), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat)}
    finally:
        rig.stop_all()


def _produce(rig: Rig, n: int, per_tx: int = 100) -> float:
    t0 = time.monotonic()
    done = 0
    while done < n:
        k = min(per_tx, n - done)
        rig.add_alerts(k, evidence_bytes=EVIDENCE)
        done += k
    return time.monotonic() - t0


def _commit_prepared(rig: Rig, prepared: list, per_tx: int = 100) -> float:
    t0 = time.monotonic()
    for i in range(0, len(prepared), per_tx):
        rig.commit_alerts(prepared[i:i + per_tx])
    return time.monotonic() - t0


def ours_sustained(root: Path, n: int) -> dict:
    """The edge commits n alerts in transactions of 100 as fast as it can while the sender and
    the hub run. Their evidence files are written before the clock starts, as the agent's lanes
    write evidence before an alert is committed: the sync path starts at the commit, and on this
    one 2-core machine the producer's own file creation would otherwise take the CPU that the
    edge box and the hub each have to themselves in the field."""
    rig = Rig(root, heartbeat_s=1.0)
    try:
        rig.start_hub()
        rig.start_sender(batch=1000)
        prepared = rig.write_evidence(n, evidence_bytes=EVIDENCE)
        os.sync()  # the evidence writes' dirty pages are not left for the timed part to flush
        t0 = time.monotonic()
        produce_s = _commit_prepared(rig, prepared)
        wait_for(lambda: rig.backlog() == 0, 600, interval=0.01, what="sustained run delivered")
        dt = time.monotonic() - t0
        return {"n": n, "seconds": dt, "alerts_per_s": n / dt, "edge_commit_per_s": n / produce_s}
    finally:
        rig.stop_all()


def ours_backlog(root: Path, n: int) -> dict:
    rig = Rig(root, heartbeat_s=1.0)
    try:
        rig.start_sender(batch=1000)  # running, but no hub: everything waits in the outbox
        _produce(rig, n)
        time.sleep(0.5)
        assert rig.backlog() == n
        rig.start_hub()
        t0, w0 = time.monotonic(), time.time()
        wait_for(lambda: rig.backlog() == 0, 600, interval=0.01, what="backlog flushed")
        dt = time.monotonic() - t0
        assert len(rig.hub_alert_ids()) == n
        first, last = rig.edge_db().execute("SELECT min(delivered), max(delivered) FROM outbox").fetchone()
        # the sender finds the returning hub by ZeroMQ's reconnect timer (up to 2 s), then flushes
        return {"n": n, "seconds": dt, "alerts_per_s": n / dt, "reconnect_s": first - w0,
                "flush_after_first_ack_s": last - first}
    finally:
        rig.stop_all()


def soak(root: Path, rounds: int, seed: int = 1) -> dict:
    """kill -9 of the sender or the hub at random moments while alerts keep being committed."""
    import random

    rng = random.Random(seed)
    rig = Rig(root, heartbeat_s=0.5)
    try:
        rig.start_hub()
        rig.start_sender()
        ids: list[str] = []
        kills = {"sender": 0, "hub": 0}
        t0 = time.monotonic()
        for _ in range(rounds):
            ids += rig.add_alerts(rng.randint(5, 60), evidence_bytes=EVIDENCE)
            time.sleep(rng.uniform(0.01, 0.5))
            victim = "sender" if rng.random() < 0.5 else "hub"
            kills[victim] += 1
            if victim == "sender":
                rig.kill(rig.senders["CP-01"])
                ids += rig.add_alerts(rng.randint(0, 20), evidence_bytes=EVIDENCE)
                rig.start_sender(wait=rng.random() < 0.5)
            else:
                rig.kill(rig.hub)
                ids += rig.add_alerts(rng.randint(0, 20), evidence_bytes=EVIDENCE)
                rig.start_hub()
        wait_for(lambda: rig.backlog() == 0, 300, what="soak final flush")
        got = rig.hub_alert_ids()
        return {"rounds": rounds, "kills": kills, "alerts": len(ids), "stored": len(got),
                "lost": len(set(ids) - set(got)), "duplicated": len(got) - len(set(got)),
                "unexpected": len(set(got) - set(ids)), "seconds": time.monotonic() - t0}
    finally:
        rig.stop_all()


# --- bare pyzmq + sqlite3 ---------------------------------------------------------------------------
class Bare:
    """The same exchange with nothing of ours: a reference for what the libraries alone cost."""

    def __init__(self, root: Path, window: int = 1000, hub_batch: int = 500):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.window, self.hub_batch = window, hub_batch
        self.ctx = zmq.Context()
        self.spub, self.ssec = zmq.curve_keypair()
        self.cpub, self.csec = zmq.curve_keypair()
        self.edge = self._db(root / "edge.sqlite", "CREATE TABLE out (id TEXT PRIMARY KEY, created REAL, path TEXT,"
                             " delivered REAL)")
        self.durable: dict[str, float] = {}
        self.stop = threading.Event()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.curve_server = True
        self.router.curve_secretkey, self.router.curve_publickey = self.ssec, self.spub
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        (root / "hubev").mkdir(exist_ok=True)
        (root / "edgeev").mkdir(exist_ok=True)

    @staticmethod
    def _db(path: Path, ddl: str) -> sqlite3.Connection:
        c = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute(ddl)
        return c

    def write_evidence(self, k: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(k):
            u = str(uuid.uuid4())
            p = self.root / "edgeev" / f"{u}.jpg"
            p.write_bytes(evidence_blob(EVIDENCE))
            out.append((u, str(p)))
        return out

    def commit(self, k: int, prepared: list[tuple[str, str]] | None = None) -> list[str]:
        rows = [(u, time.time(), p) for u, p in (prepared or self.write_evidence(k))]
        self.edge.execute("BEGIN")
        self.edge.executemany("INSERT INTO out (id, created, path) VALUES (?, ?, ?)", rows)
        self.edge.execute("COMMIT")
        return [r[0] for r in rows]

    def hub(self) -> None:
        db = self._db(self.root / "hub.sqlite", "CREATE TABLE alerts (id TEXT PRIMARY KEY, body BLOB)")
        d = os.open(self.root / "hubev", os.O_RDONLY)
        pool = ThreadPoolExecutor(16)
        while not self.stop.is_set():
            if not self.router.poll(50):
                continue
            msgs = []
            while len(msgs) < self.hub_batch:
                try:
                    msgs.append(self.router.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            # the same durable-write pattern as the hub (files and rows at once: the files written,
            # then one syncfs; or where there is none an fsync each, then the folder), so that only
            # our code's overhead differs
            if has_syncfs():
                files = [pool.submit(self._write_all_syncfs, msgs, d)]
            else:
                files = [pool.submit(self._write, m, True) for m in msgs]
            db.execute("BEGIN")
            db.executemany("INSERT OR IGNORE INTO alerts VALUES (?, ?)", [(m[1].decode(), m[2]) for m in msgs])
            db.execute("COMMIT")
            for f in files:
                f.result()
            if not has_syncfs():
                os.fsync(d)
            now = time.time()
            for rid, mid, _b, _bl in msgs:
                self.durable[mid.decode()] = now
                self.router.send_multipart([rid, mid])
        os.close(d)
        pool.shutdown()
        db.close()

    def _write(self, m: list[bytes], fsync: bool) -> None:
        final = self.root / "hubev" / m[1].decode()
        tmp = final.with_name(f".{final.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        os.write(fd, m[3])
        os.replace(tmp, final)
        if fsync:
            os.fsync(fd)
        os.close(fd)

    def _write_all_syncfs(self, msgs: list[list[bytes]], dir_fd: int) -> None:
        for m in msgs:
            self._write(m, False)
        syncfs(dir_fd)

    def sender(self) -> None:
        db = sqlite3.connect(str(self.root / "edge.sqlite"), isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        s = self.ctx.socket(zmq.DEALER)
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = self.spub, self.cpub, self.csec
        s.immediate = True
        s.connect(f"tcp://127.0.0.1:{self.port}")
        inflight: set[str] = set()
        while not self.stop.is_set():
            acked = []
            if s.poll(2):
                while True:
                    try:
                        acked.append(s.recv(zmq.NOBLOCK).decode())
                    except zmq.Again:
                        break
            if acked:
                db.execute("BEGIN")
                db.executemany("UPDATE out SET delivered = ? WHERE id = ?", [(time.time(), a) for a in acked])
                db.execute("COMMIT")
                inflight.difference_update(acked)
            if len(inflight) < self.window:
                rows = db.execute("SELECT id, created, path FROM out WHERE delivered IS NULL ORDER BY rowid LIMIT ?",
                                  (self.window + len(inflight),)).fetchall()
                for mid, created, path in rows:
                    if mid in inflight:
                        continue
                    body = json.dumps({"id": mid, "created": created}).encode()
                    try:
                        s.send_multipart([mid.encode(), body, Path(path).read_bytes()], zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    inflight.add(mid)
                    if len(inflight) >= self.window:
                        break
        s.close(0)
        db.close()

    def backlog(self) -> int:
        return self.edge.execute("SELECT count(*) FROM out WHERE delivered IS NULL").fetchone()[0]

    def start(self, hub: bool = True, sender: bool = True) -> None:
        self.threads = []
        for on, fn in ((hub, self.hub), (sender, self.sender)):
            if on:
                t = threading.Thread(target=fn, daemon=True)
                t.start()
                self.threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.router.close(0)
        self.edge.close()
        self.ctx.term()


def bare_latency(root: Path, seconds: float, rate: float = 100.0) -> dict:
    b = Bare(root)
    b.start()
    try:
        n = int(seconds * rate)
        committed: dict[str, float] = {}
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            (u,) = b.commit(1)
            committed[u] = time.time()
        wait_for(lambda: b.backlog() == 0, 60, what="bare latency delivered")
        lat = [(b.durable[u] - c) * 1e3 for u, c in committed.items()]
        return {"n": n, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat)}
    finally:
        b.close()


def bare_sustained(root: Path, n: int) -> dict:
    b = Bare(root)
    b.start()
    try:
        prepared = b.write_evidence(n)  # before the clock, as for ours
        os.sync()
        t0 = time.monotonic()
        for i in range(0, n, 100):
            b.commit(100, prepared[i:i + 100])
        produce_s = time.monotonic() - t0
        wait_for(lambda: b.backlog() == 0, 600, interval=0.01, what="bare sustained delivered")
        dt = time.monotonic() - t0
        return {"n": n, "seconds": dt, "alerts_per_s": n / dt, "edge_commit_per_s": n / produce_s}
    finally:
        b.close()


def bare_backlog(root: Path, n: int) -> dict:
    b = Bare(root)
    try:
        for _ in range(n // 100):
            b.commit(100)
        t0 = time.monotonic()
        b.start()
        wait_for(lambda: b.backlog() == 0, 600, interval=0.01, what="bare backlog flushed")
        dt = time.monotonic() - t0
        return {"n": n, "seconds": dt, "alerts_per_s": n / dt}
    finally:
        b.close()


def create_probe(folder: Path, n: int = 1000) -> float:
    """Microseconds to create one 20 kB file (no fsync) in `folder`, the unit of work both ends
    repeat per alert. On ext4 it is ~30 us on a quiet filesystem and several times that within
    a few minutes of tens of thousands of deletions (a test run, an earlier bench run): the
    kernel's inode allocator then scans past every recently deleted inode (`recently_deleted` in
    a perf profile of the hub). Printed so that a slow run can be told from a slow change."""
    folder.mkdir(parents=True, exist_ok=True)
    blob = evidence_blob(EVIDENCE)
    t0 = time.perf_counter()
    for i in range(n):
        (folder / f"{i}.bin").write_bytes(blob)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    ap.add_argument("--soak", type=int, default=0, metavar="ROUNDS",
                    help="also run ROUNDS of kill -9 (sender or hub) and count lost/duplicated alerts")
    args = ap.parse_args()
    lat_s, sus_n, back_n = (3.0, 1500, 2000) if args.quick else (20.0, 10_000, 10_000)
    out: dict = {"quick": args.quick, "evidence_bytes": EVIDENCE, "machine": platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version(), "pyzmq": zmq.pyzmq_version(),
                 "libzmq": zmq.zmq_version(), "sqlite": sqlite3.sqlite_version}
    with tempfile.TemporaryDirectory(prefix="bench_sync_", dir=os.environ.get("BENCH_TMP")) as tmp:
        t = Path(tmp)
        out["file_create_us"] = {"before": create_probe(t / "probe0")}
        out["latency"] = {"zastava": ours_latency(t / "ol", lat_s), "bare": bare_latency(t / "bl", lat_s)}
        out["sustained"] = {"zastava": ours_sustained(t / "os", sus_n), "bare": bare_sustained(t / "bs", sus_n)}
        out["backlog"] = {"zastava": ours_backlog(t / "ob", back_n), "bare": bare_backlog(t / "bb", back_n)}
        out["file_create_us"]["after"] = create_probe(t / "probe1")
        if args.soak:
            out["soak"] = soak(t / "soak", args.soak)
    out["targets"] = {"latency_p99_ms_below": 10, "sustained_alerts_per_s_at_least": 3000}

    L, S, B = out["latency"], out["sustained"], out["backlog"]
    print(f"sync benchmark ({'quick' if args.quick else 'full'}; 20 kB evidence; durable at both ends)")
    print(f"{'measure':<44} {'zastava':>12} {'bare pyzmq+sqlite':>18}")
    print(f"{'latency p50 at 100 alerts/s (ms)':<44} {L['zastava']['p50_ms']:>12.2f} {L['bare']['p50_ms']:>18.2f}")
    print(f"{'latency p99 at 100 alerts/s (ms)  [<10]':<44} {L['zastava']['p99_ms']:>12.2f} {L['bare']['p99_ms']:>18.2f}")
    print(f"{'sustained alerts/s  [>=3000]':<44} {S['zastava']['alerts_per_s']:>12.0f} {S['bare']['alerts_per_s']:>18.0f}")
    print(f"{'  edge commit rate alone (alerts/s)':<44} {S['zastava']['edge_commit_per_s']:>12.0f} "
          f"{S['bare']['edge_commit_per_s']:>18.0f}")
    print(f"{f'backlog of {back_n} flushed in (s)':<44} {B['zastava']['seconds']:>12.2f} {B['bare']['seconds']:>18.2f}")
    print(f"{'  of which reconnecting to the hub (s)':<44} {B['zastava']['reconnect_s']:>12.2f} {'-':>18}")
    fc = out["file_create_us"]
    print(f"{'creating one 20 kB file, before/after (us)':<44} {fc['before']:>6.0f} /{fc['after']:>4.0f}"
          f"   (~30 on a quiet ext4; see create_probe)")
    if "soak" in out:
        k = out["soak"]
        print(f"soak: {k['rounds']} kill -9 rounds ({k['kills']}), {k['alerts']} alerts: lost {k['lost']}, "
              f"duplicated {k['duplicated']}, unexpected {k['unexpected']} ({k['seconds']:.0f} s)")
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "sync.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {res / 'sync.json'}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
