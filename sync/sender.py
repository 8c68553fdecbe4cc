"""The edge sender: moves the SQLite outbox to central over ZeroMQ (DEALER, CURVE client).

The outbox is the only truth. A row is marked delivered only when a hub acks its id, after that
hub's durable write. Nothing waits in ZeroMQ's memory during an outage: ZMQ_IMMEDIATE makes a
send fail at once when no hub is connected, the window of un-acked messages is bounded, and a
message not acked in time (or whose connection dropped) is simply read from the outbox again.
The hub ignores what it already has, so at-least-once sending gives exactly-once storage.

Order: every refill reads the outbox by priority, then age, so new high-severity alerts overtake
a backlog flush at the next refill instead of waiting behind it.

Runs in its own thread with its own SQLite connection. `python -m sync.sender --help` runs one
as a process against an outbox file, without the agent (tests and the benchmark use that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlite_utils
import zmq
from zmq.utils.monitor import recv_monitor_message

from common import clock
from common.durable import write_atomic
from sync import outbox, wire
from sync.keys import load_pair, load_public

log = logging.getLogger("zastava.sync.sender")

SOFTWARE = "zastava-edge/0.1"

DOWNLINK_SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink_applied (
    kind TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, applied REAL NOT NULL,
    PRIMARY KEY (kind, version)
);
"""


def _backoff(base: float = 0.1, cap: float = 5.0):
    """Exponential backoff with full jitter (the same rule as the device drivers)."""
    attempt = 0
    while True:
        yield random.uniform(base / 2, min(cap, base * (2**attempt)))
        attempt = min(attempt + 1, 30)


# How long the first sending after the agent starts waits for the link's first clock measurement
# (the pong to the heartbeat sent with hello: one round trip), so that alerts made while the box's
# clock was wrong go with the offset central places them by. A link that cannot answer in this
# long sends without it.
CLOCK_FIRST_WAIT_S = 3.0

class Sender:
    def __init__(self, db_path: str | Path, checkpoint_id: str, endpoints: list[str], server_public_key: Path,
                 secret_key: Path, evidence_dir: Path, heartbeat_s: float = 2.0, batch: int = 200,
                 on_downlink: Callable[[str, dict], None] | None = None, ack_timeout_s: float | None = None):
        if not wire.ID_RE.match(checkpoint_id):
            raise ValueError(f"checkpoint id {checkpoint_id!r} is not valid on the wire")
        self.db_path = Path(db_path)
        self.checkpoint_id = checkpoint_id
        self.endpoints = list(endpoints)
        self.server_key = load_public(server_public_key)
        self.public_key, self.secret_key = load_pair(secret_key)
        self.evidence_dir = Path(evidence_dir)
        self._evidence_root = str(self.evidence_dir)
        self.heartbeat_s = heartbeat_s
        self.batch = batch
        self.on_downlink = on_downlink
        self.ack_timeout_s = ack_timeout_s or max(5.0, 3 * heartbeat_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._health: dict | None = None
        self._lock = threading.Lock()
        self._last_log = 0.0
        self._state = {
            "connected": False, "endpoints": {e: False for e in self.endpoints}, "last_ack": None,
            "backlog": None, "clock_skew_s": None, "rtt_s": None, "clock_measure": None, "sent": 0, "acked": 0, "refused": 0,
            "errors": 0, "last_error": None, "downlinks_applied": 0,
        }

    # --- public API ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="sync-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def link_state(self) -> dict:
        """connected, per-endpoint state, last ack (Unix time), backlog, clock skew (central minus
        edge, seconds), rtt, counters and the last error."""
        with self._lock:
            s = dict(self._state)
            s["endpoints"] = dict(s["endpoints"])
            return s

    def set_health(self, health: dict) -> None:
        """The latest health snapshot; sent periodically while connected, never queued durably."""
        with self._lock:
            self._health = health

    # --- internals ----------------------------------------------------------------------------------
    def _set(self, **kw) -> None:
        with self._lock:
            self._state.update(kw)

    def _error(self, text: str) -> None:
        with self._lock:
            self._state["errors"] += 1
            self._state["last_error"] = text[:300]
            now = time.monotonic()
            quiet = now - self._last_log < 1.0  # a flood of refusals must not flood the log
            if not quiet:
                self._last_log = now
        if not quiet:
            log.warning("%s (errors so far: %d)", text, self._state["errors"])

    def _run_guarded(self) -> None:
        delays = _backoff(0.5, 30.0)
        while not self._stop.is_set():
            try:
                self._run()
                return
            except Exception as e:  # a bug or a broken DB must not kill the agent: log, back off, retry
                log.exception("sender failed; restarting it")
                self._error(f"sender restarted after {type(e).__name__}: {e}")
                self._stop.wait(next(delays))

    def _open_db(self) -> sqlite_utils.Database:
        conn = sqlite3.connect(str(self.db_path), timeout=30, isolation_level=None)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        # Only delivery marks are written here; losing the last few on power loss means a resend,
        # which the hub ignores. NORMAL spares an fsync per ack without risking any alert.
        db.execute("PRAGMA synchronous=NORMAL")
        outbox.ensure_schema(db)
        db.executescript(DOWNLINK_SCHEMA)
        return db

    def _socket(self, ctx: zmq.Context) -> zmq.Socket:
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.immediate = True  # never queue for a hub that is not connected
        s.curve_serverkey = self.server_key
        s.curve_publickey = self.public_key
        s.curve_secretkey = self.secret_key
        ms = int(self.heartbeat_s * 1000)
        s.heartbeat_ivl, s.heartbeat_timeout, s.heartbeat_ttl = ms, 3 * ms, 3 * ms
        # ZeroMQ's own reconnect backoff: 0.1 s doubling to 2 s, so a returning hub is found within
        # about 2 s without hundreds of checkpoints hammering it while it is down
        s.reconnect_ivl, s.reconnect_ivl_max = 100, 2000
        s.sndhwm = self.batch + 100
        s.rcvhwm = 10_000
        s.maxmsgsize = 64 << 20
        return s

    def _run(self) -> None:
        db = self._open_db()
        ctx = zmq.Context()
        sock = self._socket(ctx)
        mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                                      | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        for e in self.endpoints:
            sock.connect(e)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        inflight: dict[str, float] = {}  # msg_id -> sent at (monotonic)
        hold: dict[str, float] = {}  # msg_id -> not before (monotonic): refused ones back off
        hold_n: dict[str, int] = {}
        send_delays = _backoff()
        next_send = 0.0
        next_hb = 0.0
        next_health = 0.0
        data_version = None
        dirty = True  # outbox may have something new to send
        offset = rtt = None
        clock_wait_until = 0.0
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(2))  # also how soon a new commit is noticed
                now = time.monotonic()
                if mon in events:
                    while mon.poll(0):
                        ev = recv_monitor_message(mon)
                        hello = self._on_monitor(ev, inflight)
                        if hello:
                            self._send(sock, "hello", {"checkpoint": self.checkpoint_id, "proto": wire.PROTOCOL_VERSION,
                                                       "software": SOFTWARE, "t": time.time()})
                            next_send, dirty, next_hb = 0.0, True, 0.0
                            if self._state["clock_measure"] is None:  # the first link since we started:
                                # the heartbeat's pong, one round trip away, measures central's clock,
                                # and the alerts waiting go with their offset (common/clock.py)
                                clock_wait_until = now + CLOCK_FIRST_WAIT_S
                if sock in events:
                    acked: list[str] = []
                    for _ in range(1000):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            m = wire.decode(frames)
                        except wire.WireError as e:
                            self._error(f"malformed message from hub dropped: {e}")
                            continue
                        if m.type == "ack":
                            acked.extend(m.body["ids"])
                            for r in m.body["refused"]:
                                inflight.pop(r["id"], None)
                                n = hold_n.get(r["id"], 0) + 1
                                hold_n[r["id"]] = n
                                hold[r["id"]] = now + min(300.0, 2.0**n)
                                self._error(f"hub refused {r['id']}: {r['reason']}")
                                with self._lock:
                                    self._state["refused"] += 1
                        elif m.type == "pong":
                            t3 = time.time()
                            rtt = max(0.0, t3 - m.body["echo_t"])
                            offset = m.body["hub_t"] - (m.body["echo_t"] + t3) / 2  # NTP-style estimate
                            # the measurement with our wall-minus-monotonic clock at this moment, so
                            # alerts made later can carry it over a step of our clock (common/clock.py)
                            self._set(clock_skew_s=round(offset, 6), rtt_s=round(rtt, 6),
                                      clock_measure=clock.link_measure(offset, rtt))
                            clock_wait_until, dirty = 0.0, True
                        elif m.type == "downlink":
                            self._downlink(db, sock, m.body)
                        else:
                            self._error(f"unexpected {m.type} from hub dropped")
                    if acked:
                        outbox.mark_delivered(db, acked)
                        for i in acked:
                            inflight.pop(i, None)
                            hold.pop(i, None)
                            hold_n.pop(i, None)
                        with self._lock:
                            self._state["acked"] += len(acked)
                            self._state["last_ack"] = time.time()
                        dirty = True
                # un-acked for too long: the hub or the path lost it; read it again from the outbox
                # inflight is in send order (a dict keeps insertion order and an id is only
                # re-added after it left), so the stale ones are a prefix: no full scan per turn
                stale = []
                for i, t in inflight.items():
                    if now - t <= self.ack_timeout_s:
                        break
                    stale.append(i)
                for i in stale:
                    del inflight[i]
                if stale:
                    dirty = True
                for i in [i for i, t in hold.items() if t <= now]:
                    del hold[i]
                    dirty = True
                dv = db.execute("PRAGMA data_version").fetchone()[0]
                if dv != data_version:
                    data_version, dirty = dv, True
                if dirty and now >= max(next_send, clock_wait_until) and len(inflight) < self.batch:
                    sent, blocked = self._refill(db, sock, inflight, hold)
                    dirty = blocked or sent > 0
                    if blocked:
                        next_send = now + next(send_delays)
                    elif sent:
                        send_delays = _backoff()
                if now >= next_hb:
                    backlog = outbox.backlog(db)
                    self._set(backlog=backlog)
                    self._send(sock, "heartbeat", {"checkpoint": self.checkpoint_id, "t": time.time(),
                                                   "backlog": backlog, "offset": offset, "rtt": rtt})
                    next_hb = now + self.heartbeat_s
                if now >= next_health:
                    with self._lock:
                        h, backlog = self._health, self._state["backlog"] or 0
                    if h is not None:
                        self._send(sock, "health", {"checkpoint": self.checkpoint_id, "t": time.time(),
                                                    "backlog": backlog, "data": _plain_json(h)})
                    next_health = now + max(5.0, 5 * self.heartbeat_s)
        finally:
            sock.disable_monitor()
            mon.close(0)
            sock.close(0)
            ctx.term()
            db.close()

    def _on_monitor(self, ev: dict, inflight: dict) -> bool:
        """Track per-endpoint link state; True when a handshake just succeeded (send hello)."""
        e = ev["event"]
        ep = ev.get("endpoint", b"").decode(errors="replace")
        with self._lock:
            eps = self._state["endpoints"]
            if e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                eps[ep] = True
            elif e == zmq.EVENT_DISCONNECTED:
                eps[ep] = False
            self._state["connected"] = any(eps.values())
        if e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            log.info("link to %s up", ep)
            return True
        if e == zmq.EVENT_DISCONNECTED:
            log.warning("link to %s down", ep)
            inflight.clear()  # whatever was queued on that pipe is gone: read it again from the outbox
        elif e in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                   zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._error(f"handshake with {ep} refused (wrong keys, or this checkpoint is not admitted)")
        return False

    def _send(self, sock: zmq.Socket, msg_type: str, body: dict, blobs: list[bytes] | None = None) -> bool:
        try:
            sock.send_multipart(wire.encode(msg_type, body, blobs), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def _refill(self, db: sqlite_utils.Database, sock: zmq.Socket, inflight: dict, hold: dict) -> tuple[int, bool]:
        """Send the next messages by priority then age; returns (sent, blocked by no connection)."""
        msgs = outbox.pending(db, limit=self.batch - len(inflight), exclude=set(inflight) | set(hold))
        sent: list[str] = []
        blocked = False
        for m in msgs:
            try:
                frames = self._frames(m)
            except wire.WireError as e:
                hold[m.msg_id] = time.monotonic() + 300
                self._error(f"outbox message {m.msg_id} cannot be sent: {e}")
                continue
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                blocked = True  # no hub connected (ZMQ_IMMEDIATE) or window full: retry later
                break
            inflight[m.msg_id] = time.monotonic()
            sent.append(m.msg_id)
        if sent:
            outbox.mark_attempt(db, sent)
            with self._lock:
                self._state["sent"] += len(sent)
        return len(sent), blocked

    def _frames(self, m: outbox.OutMsg) -> list[bytes]:
        if m.msg_type not in ("alert", "decision"):
            raise wire.WireError(f"outbox type {m.msg_type!r} is not sent to central")
        data = m.body
        if m.msg_type == "alert":  # made before the link measured central's clock: the offset, now
            with self._lock:
                measure = self._state["clock_measure"]
            data = clock.fill_offset(data, measure)
        body = {"id": m.msg_id, "checkpoint": self.checkpoint_id, "created": m.created, "priority": m.priority,
                "data": data}
        if m.msg_type == "decision":
            return wire.encode("decision", body)
        metas, blobs = [], []
        for e in m.evidence:
            meta = {k: e[k] for k in ("name", "mime", "size", "sha256")}
            blob = self._read_evidence(e)
            if blob is None:
                meta["missing"] = True
                blob = b""
            metas.append(meta)
            blobs.append(blob)
        body["evidence"] = metas
        return wire.encode("alert", body, blobs, check_blobs=False)  # _read_evidence hashed them

    def _read_evidence(self, e: dict) -> bytes | None:
        rel = str(e.get("path", ""))
        # a lexical check on strings, not Path.resolve() nor even Path(): resolving cost two
        # lstat() per path component per file, and pathlib objects ~40 us per file, together a
        # third of the sender's CPU at 20 kB evidence
        if not rel or os.path.isabs(rel) or ".." in rel.replace("\\", "/").split("/") or "\0" in rel:
            self._error(f"evidence path {rel!r} leaves the evidence folder; sent as missing")
            return None
        try:
            with open(os.path.join(self._evidence_root, rel), "rb") as fh:
                blob = fh.read()
        except OSError:
            log.info("evidence %s no longer on disk (evicted?); sent as missing", e["path"])
            return None
        if len(blob) != e["size"] or hashlib.sha256(blob).hexdigest() != e["sha256"]:
            self._error(f"evidence {e['path']} changed on disk since the alert; sent as missing")
            return None
        return blob

    def _downlink(self, db: sqlite_utils.Database, sock: zmq.Socket, b: dict) -> None:
        kind, version = b["kind"], b["version"]
        ok, err = True, None
        row = db.execute("SELECT max(version) FROM downlink_applied WHERE kind = ?", [kind]).fetchone()
        latest = row[0] if row else None
        if latest is not None and version <= latest:
            err = None if version == latest else f"superseded by v{latest}"
        else:
            try:
                if self.on_downlink is not None:
                    self.on_downlink(kind, b["doc"])
                with db.atomic():
                    db.execute("INSERT OR IGNORE INTO downlink_applied (kind, version, sha256, applied) "
                               "VALUES (?, ?, ?, ?)", [kind, version, b["sha256"], time.time()])
                with self._lock:
                    self._state["downlinks_applied"] += 1
                log.info("downlink %s v%d applied", kind, version)
            except Exception as e:  # the agent refused the document: tell central why
                ok, err = False, f"{type(e).__name__}: {e}"[:500]
                self._error(f"downlink {kind} v{version} refused: {err}")
        self._send(sock, "downlink_ack", {"checkpoint": self.checkpoint_id, "kind": kind, "version": version,
                                          "ok": ok, "error": err})


def _plain_json(v: object) -> object:
    """Health snapshots may hold tuples, paths, numpy scalars, NaN: reduce to what the wire accepts."""
    if isinstance(v, dict):
        return {str(k): _plain_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_plain_json(x) for x in v]
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if v is None or isinstance(v, bool | int | str):
        return v
    if hasattr(v, "item"):  # numpy scalar
        return _plain_json(v.item())
    return str(v)


# --- standalone process ------------------------------------------------------------------------------
def _write_doc(folder: Path, kind: str, doc: dict) -> None:
    """The CLI's downlink handler: the document lands atomically as <folder>/<kind>.json."""
    write_atomic(folder / f"{kind}.json", json.dumps(doc).encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sync.sender", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", required=True, type=Path, help="SQLite file holding the outbox table")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--endpoint", action="append", required=True, help="hub endpoint (repeat for several hubs)")
    p.add_argument("--server-key", required=True, type=Path, help="the hub's public key file")
    p.add_argument("--secret-key", required=True, type=Path, help="this checkpoint's .key_secret file")
    p.add_argument("--evidence-dir", required=True, type=Path)
    p.add_argument("--heartbeat", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--downlink-dir", type=Path, help="write applied downlink documents here as <kind>.json")
    p.add_argument("--state-every", type=float, default=0, help="print link_state() as JSON every N seconds")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    on_dl = (lambda k, d: _write_doc(args.downlink_dir, k, d)) if args.downlink_dir else None
    s = Sender(args.db, args.checkpoint, args.endpoint, args.server_key, args.secret_key, args.evidence_dir,
               heartbeat_s=args.heartbeat, batch=args.batch, on_downlink=on_dl)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    s.start()
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    while not stop.wait(args.state_every or 1.0):
        if args.state_every:
            print(json.dumps(s.link_state()), flush=True)
    s.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
