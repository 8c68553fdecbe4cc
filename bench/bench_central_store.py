"""Central store benchmark: alerts/s into PostgreSQL and into SQLite, durable, on this machine, same run.

What is measured (every commit durable: PostgreSQL with fsync=on and synchronous_commit=on, its
server started from Debian's binaries by tests/pg_rig.py in a temporary folder on this disk; SQLite in
WAL with synchronous=FULL):

  100 writers   100 simulated checkpoints sending at once: 100 writer threads spread over 4
                processes (25 each), each calling HubStore.write_batch with bursts of 10 alerts
                (each alert a ~0.6 kB JSON body plus one evidence row) as fast as it can.
                alerts/s over the run, and the p50/p99 time of one durable write_batch.
  hub batches   the shape a hub really writes: its one writer thread commits what it collected
                from every connected checkpoint, up to 500 messages a transaction (HubConfig.batch),
                from 1 process, and for PostgreSQL also from 2 processes at once (two hubs).

Evidence files are not part of these figures (the hub fsyncs them before the row write, the same for
both stores). Beside each: the bare library doing the same inserts in the same run: psycopg with one
connection per writer, `executemany(INSERT ... ON CONFLICT DO NOTHING)` in a transaction; sqlite3
with one connection per writer, `BEGIN IMMEDIATE; executemany(INSERT OR IGNORE); COMMIT`.

  end to end    the whole central side as deployed: real `zastava central` hub processes (CURVE + ZAP,
                validation, evidence file written and fsynced, row committed, then the ack), and 100
                checkpoints as 100 DEALER sockets, each with its own CURVE key admitted by the hub,
                from 2 client processes (50 each); each keeps 20 alerts in flight, each alert with one
                2 kB evidence file. alerts/s acked. SQLite: 1 hub; PostgreSQL: 1 hub, and 2 hubs with
                every DEALER connected to both (ZeroMQ spreads the messages).

Usage: python bench/bench_central_store.py [--quick]    (writes bench/results/central_store.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from central.store import EvidenceRow, Inbound, open_store  # noqa: E402

ALERT_COLS = "uuid, checkpoint, t, kind, severity, score, source, created, received, data"
EV_COLS = "alert_uuid, name, mime, size, sha256, path, missing"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _alert(cp: str) -> Inbound:
    u = str(uuid.uuid4())
    t = time.time()
    data = {"uuid": u, "t": t, "checkpoint": cp, "source": "lane1", "kind": "xray.narcotics", "score": 0.91,
            "severity": "high", "location": {"box": [120, 80, 310, 290]}, "reason": "organic density band " * 12,
            "evidence": [{"name": "frame.jpg", "mime": "image/jpeg", "size": 20000, "sha256": "ab" * 32}]}
    return Inbound(u, "alert", cp, t, data, [EvidenceRow("frame.jpg", "image/jpeg", 20000, "ab" * 32,
                                                         f"evidence/{cp}/2026-11-25/{u}_frame.jpg")])


def _rows(items: list[Inbound]) -> tuple[list[tuple], list[tuple]]:
    now = time.time()
    a = [(it.msg_id, it.checkpoint, it.data["t"], it.data["kind"], it.data["severity"], it.data["score"],
          it.data["source"], it.created, now, json.dumps(it.data)) for it in items]
    e = [(it.msg_id, ev.name, ev.mime, ev.size, ev.sha256, ev.path, 0) for it in items for ev in it.evidence]
    return a, e


# --- one worker process: N writer threads until the deadline --------------------------------------------
class _Go:
    """Every writer connects first; then the process says "ready" and waits for the driver's start time
    on stdin, so connection set-up (slow on a loaded machine) is never inside the measured window."""

    def __init__(self, n: int):
        self.ready = threading.Barrier(n + 1)
        self.start = threading.Event()
        self.at = 0.0
        self.until = 0.0

    def wait(self) -> None:
        self.ready.wait()
        self.start.wait()
        time.sleep(max(0.0, self.at - time.time()))

    def release(self, seconds: float) -> None:
        self.ready.wait()
        print("ready", flush=True)
        self.at = float(sys.stdin.readline())
        self.until = self.at + seconds
        self.start.set()


def _writer_ours(store, cp: str, batch: int, go: _Go, out: list) -> None:
    n, lat = 0, []
    go.wait()
    while time.time() < go.until:
        items = [_alert(cp) for _ in range(batch)]
        t0 = time.perf_counter()
        new = store.write_batch(items)
        lat.append(time.perf_counter() - t0)
        n += sum(new)
    out.append((n, lat, time.time()))


def _writer_bare(url: str, cp: str, batch: int, go: _Go, out: list) -> None:
    n, lat = 0, []
    if url.startswith("sqlite"):
        import sqlite3

        c = sqlite3.connect(url.split("sqlite://", 1)[1], timeout=60, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        ins_a = f"INSERT OR IGNORE INTO alerts ({ALERT_COLS}) VALUES ({', '.join('?' * 10)})"
        ins_e = f"INSERT OR IGNORE INTO evidence ({EV_COLS}) VALUES ({', '.join('?' * 7)})"
        go.wait()
        while time.time() < go.until:
            items = [_alert(cp) for _ in range(batch)]
            t0 = time.perf_counter()  # from the same point as write_batch: parameters are built inside
            a, e = _rows(items)
            c.execute("BEGIN IMMEDIATE")
            c.executemany(ins_a, a)
            c.executemany(ins_e, e)
            c.execute("COMMIT")
            lat.append(time.perf_counter() - t0)
            n += len(a)
        c.close()
    else:
        import psycopg

        with psycopg.connect(url) as c:
            ins_a = f"INSERT INTO alerts ({ALERT_COLS}) VALUES ({', '.join(['%s'] * 10)}) ON CONFLICT DO NOTHING"
            ins_e = f"INSERT INTO evidence ({EV_COLS}) VALUES ({', '.join(['%s'] * 7)}) ON CONFLICT DO NOTHING"
            go.wait()
            while time.time() < go.until:
                items = [_alert(cp) for _ in range(batch)]
                t0 = time.perf_counter()
                a, e = _rows(items)
                with c.transaction(), c.cursor() as cur:
                    cur.executemany(ins_a, a)
                    cur.executemany(ins_e, e)
                lat.append(time.perf_counter() - t0)
                n += len(a)
    out.append((n, lat, time.time()))


def worker(args: argparse.Namespace) -> int:
    store = None
    if args.impl == "ours":
        if args.url.startswith("postgresql"):
            from central.store_pg import PostgresStore

            store = PostgresStore(args.url, min_size=args.threads, max_size=args.threads)  # a connection per writer
        else:
            store = open_store(args.url)
    out: list = []
    go = _Go(args.threads)
    ts = []
    for i in range(args.threads):
        cp = f"CP-{args.index:02d}{i:03d}"
        fn, a0 = (_writer_ours, store) if store is not None else (_writer_bare, args.url)
        ts.append(threading.Thread(target=fn, args=(a0, cp, args.batch, go, out)))
    for t in ts:
        t.start()
    go.release(args.seconds)
    for t in ts:
        t.join()
    if store is not None:
        store.close()
    print(json.dumps({"n": sum(o[0] for o in out), "lat": [x for o in out for x in o[1]],
                      "end": max(o[2] for o in out)}))
    return 0


def _start_together(ps: list[subprocess.Popen], lead_s: float = 0.3) -> float:
    """Wait until every worker process says it is ready, then give them all one start time."""
    for p in ps:
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"worker did not get ready: {line!r}")
    start_at = time.time() + lead_s
    for p in ps:
        p.stdin.write(f"{start_at}\n")
        p.stdin.flush()
    return start_at


# --- end to end: DEALER clients against real hub processes ------------------------------------------------
def dealer_worker(args: argparse.Namespace) -> int:
    """50 checkpoints in one process: one CURVE DEALER each, `window` alerts in flight, until the deadline."""
    import hashlib

    import zmq

    from sync import wire
    from sync.keys import load_pair, load_public

    ctx = zmq.Context()
    server = load_public(Path(args.server_key))
    socks: dict[zmq.Socket, tuple[str, set]] = {}
    poller = zmq.Poller()
    blob = os.urandom(2000)
    meta = [{"name": "frame.jpg", "mime": "image/jpeg", "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}]
    for cp in args.checkpoints.split(","):
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.immediate = True
        s.curve_publickey, s.curve_secretkey = load_pair(Path(args.keys) / f"{cp}.key_secret")
        s.curve_serverkey = server
        for e in args.endpoints.split(","):
            s.connect(e)
        socks[s] = (cp, set())
        poller.register(s, zmq.POLLIN)

    def send(s: zmq.Socket, cp: str, inflight: set, limit: int) -> None:
        while len(inflight) < limit:
            u = str(uuid.uuid4())
            body = {"id": u, "checkpoint": cp, "created": time.time(), "priority": 3,
                    "data": {"uuid": u, "t": time.time(), "kind": "xray.narcotics", "severity": "high", "score": 0.9,
                             "source": "lane1", "reason": "bench"}, "evidence": meta}
            try:
                s.send_multipart(wire.encode("alert", body, [blob]), zmq.NOBLOCK)
            except zmq.Again:
                return  # not connected yet
            inflight.add(u)

    # warm-up: one alert per socket acked, so every CURVE handshake and ZAP check is done before timing
    waiting = set(socks)
    deadline = time.time() + 120
    while waiting and time.time() < deadline:
        for s in waiting:
            cp, inflight = socks[s]
            if not inflight:
                send(s, cp, inflight, 1)
        for s, _ in poller.poll(50):
            while True:
                try:
                    m = wire.decode(s.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if m.type == "ack" and m.body["ids"]:
                    socks[s][1].difference_update(m.body["ids"])
                    waiting.discard(s)
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    time.sleep(max(0.0, start_at - time.time()))
    until = start_at + args.seconds
    acked, last_ack = 0, time.time()
    while time.time() < until:
        for s, (cp, inflight) in socks.items():
            send(s, cp, inflight, args.window)
        for s, _ in poller.poll(20):
            while True:
                try:
                    m = wire.decode(s.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if m.type == "ack":
                    inflight = socks[s][1]
                    for i in m.body["ids"]:
                        if i in inflight:
                            inflight.discard(i)
                            if time.time() < until:
                                acked += 1
                                last_ack = time.time()
    for s in socks:
        s.close(0)
    ctx.term()
    print(json.dumps({"acked": acked, "end": last_ack}))
    return 0


def _count(store_url: str) -> int:
    st = open_store(store_url)
    try:
        return st.count_alerts()
    finally:
        st.close()


def run_e2e(root: Path, store_url: str, hubs: int, seconds: float, n_cp: int = 100, procs: int = 2,
            window: int = 20) -> dict:
    from tests.pg_rig import MultiHubRig

    cps = [f"CP-{i:03d}" for i in range(n_cp)]
    r = MultiHubRig(root, store_url, hubs=hubs, checkpoints=cps, heartbeat_s=2.0)
    try:
        for i in range(hubs):
            r.start_hub(i)
        per = n_cp // procs
        ps = [subprocess.Popen([sys.executable, __file__, "--dealer-worker", "--checkpoints",
                                ",".join(cps[k * per:(k + 1) * per]), "--keys", str(r.rig.keys),
                                "--server-key", str(r.rig.hub_pub), "--endpoints", ",".join(r.endpoints),
                                "--window", str(window), "--seconds", str(seconds)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for k in range(procs)]
        start_at = _start_together(ps)
        before = _count(store_url)
        res = []
        for p in ps:
            out, _ = p.communicate(timeout=seconds + 60)
            if p.returncode != 0:
                raise RuntimeError(f"client process failed ({p.returncode})")
            res.append(json.loads(out.strip().splitlines()[-1]))
        n = sum(x["acked"] for x in res)
        elapsed = max(x["end"] for x in res) - start_at
        return {"alerts": n, "seconds": round(elapsed, 3), "alerts_per_s": round(n / elapsed, 1),
                "in_store": _count(store_url) - before, "checkpoints": n_cp, "hubs": hubs}
    finally:
        r.stop_all()


# --- the driver -----------------------------------------------------------------------------------------
def run_case(url: str, impl: str, procs: int, threads: int, batch: int, seconds: float) -> dict:
    ps = [subprocess.Popen([sys.executable, __file__, "--worker", "--impl", impl, "--url", url, "--index", str(i),
                            "--threads", str(threads), "--batch", str(batch), "--seconds", str(seconds)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
          for i in range(procs)]
    start_at = _start_together(ps)
    res = []
    for p in ps:
        out, _ = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({p.returncode})")
        res.append(json.loads(out.strip().splitlines()[-1]))
    n = sum(r["n"] for r in res)
    lat = [x * 1e3 for r in res for x in r["lat"]]
    elapsed = max(r["end"] for r in res) - start_at  # until the last write that began in time returned
    return {"alerts": n, "seconds": round(elapsed, 3), "alerts_per_s": round(n / elapsed, 1), "writes": len(lat),
            "write_p50_ms": round(pct(lat, 0.5), 2), "write_p99_ms": round(pct(lat, 0.99), 2)}


def _prepare_pg(pg, label: str) -> str:
    url = pg.create_db(label)
    open_store(url).close()  # the schema, by our own migrations, for both ours and bare
    return url


def _prepare_sqlite(root: Path, label: str) -> str:
    url = f"sqlite:///{root / label / 'central.sqlite'}"
    open_store(url).close()
    return url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", choices=("ours", "bare"))
    ap.add_argument("--url")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--dealer-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoints")
    ap.add_argument("--keys")
    ap.add_argument("--server-key")
    ap.add_argument("--endpoints")
    ap.add_argument("--window", type=int, default=20)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.dealer_worker:
        return dealer_worker(args)

    from tests.pg_rig import PgServer, not_available_reason

    secs = 1.0 if args.quick else 8.0
    e2e_secs = 2.0 if args.quick else 10.0
    root = Path(tempfile.mkdtemp(prefix="zastava-bench-central-"))
    why = not_available_reason()
    pg = PgServer.start(max_connections=250) if why is None else None
    cases = [  # (label, procs, threads per proc, alerts per write_batch)
        ("100 writers", 4, 25, 10),
        ("hub batches, 1 hub", 1, 1, 500),
        ("hub batches, 2 hubs", 2, 1, 500),
    ]
    out: dict = {"quick": args.quick, "seconds_per_case": secs, "machine": platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version(), "cases": []}
    if pg is not None:
        import psycopg

        with psycopg.connect(pg.url()) as c:
            out["postgresql"] = {k: c.execute(f"SHOW {k}").fetchone()[0]
                                 for k in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")}
    else:
        out["postgresql"] = {"skipped": why}
    try:
        if args.quick:  # the two-hub store case only in the full run (the end-to-end part still runs 2 hubs)
            cases = cases[:2]
        for label, procs, threads, batch in cases:
            for db in ("postgresql", "sqlite"):
                if db == "sqlite" and procs > 1 and threads == 1:
                    continue  # SQLite is the single-hub store: two hubs on one file is not a deployment
                if db == "postgresql" and pg is None:
                    continue
                for impl in ("ours", "bare"):
                    tag = f"{db}-{impl}-{len(out['cases'])}"
                    url = _prepare_pg(pg, tag.replace("-", "_")) if db == "postgresql" else _prepare_sqlite(root, tag)
                    r = run_case(url, impl, procs, threads, batch, secs)
                    r.update(case=label, store=db, impl="zastava" if impl == "ours" else f"bare {'psycopg' if db == 'postgresql' else 'sqlite3'}",
                             writers=procs * threads, batch=batch)
                    out["cases"].append(r)
                    print(f"  {label:<20} {db:<10} {r['impl']:<14} {r['alerts_per_s']:>9.0f} alerts/s", flush=True)
                    if db == "postgresql":
                        pg.drop_db(url)
        out["end_to_end"] = []
        e2e = (("sqlite", 1), ("postgresql", 2)) if args.quick else (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))
        for db, nh in e2e:
            if db == "postgresql" and pg is None:
                continue
            tag = f"e2e-{db}-{nh}"
            url = pg.create_db(tag.replace("-", "_")) if db == "postgresql" else f"sqlite:///{root / tag / 'central' / 'central.sqlite'}"
            r = run_e2e(root / tag, url, nh, e2e_secs)
            r["store"] = db
            out["end_to_end"].append(r)
            print(f"  end to end           {db:<10} {nh} hub(s)       {r['alerts_per_s']:>9.0f} alerts/s", flush=True)
            if db == "postgresql":
                pg.drop_db(url)
            shutil.rmtree(root / tag, ignore_errors=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"\ncentral store benchmark ({'quick' if args.quick else 'full'}; {secs:.1f} s per case; durable commits;"
          f" PostgreSQL {out['postgresql'].get('server_version', '-')}, fsync={out['postgresql'].get('fsync', '-')})")
    print(f"{'case':<22} {'store':<11} {'impl':<15} {'writers':>7} {'batch':>5} {'alerts/s':>10}"
          f" {'write p50 ms':>12} {'p99 ms':>8}")
    for r in out["cases"]:
        print(f"{r['case']:<22} {r['store']:<11} {r['impl']:<15} {r['writers']:>7} {r['batch']:>5}"
              f" {r['alerts_per_s']:>10.0f} {r['write_p50_ms']:>12.2f} {r['write_p99_ms']:>8.2f}")
    print(f"\nend to end: 100 checkpoints (CURVE DEALERs, 20 in flight each, 2 kB evidence) -> hub process(es),"
          f" {e2e_secs:.0f} s")
    print(f"{'store':<11} {'hubs':>4} {'alerts/s acked':>15} {'acked':>8} {'rows in store':>14}")
    for r in out.get("end_to_end", []):
        print(f"{r['store']:<11} {r['hubs']:>4} {r['alerts_per_s']:>15.0f} {r['alerts']:>8} {r['in_store']:>14}")
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "central_store.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {res / 'central_store.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
