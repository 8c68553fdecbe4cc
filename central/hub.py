"""The hub: a ZeroMQ ROUTER that takes alerts from checkpoints and acks them once they are durable.

Order of events for every batch of messages (the exactly-once argument, with the sender's
retries and the store's insert-or-ignore):
  1. each message is authenticated (CURVE + ZAP: the socket's User-Id is the client's public key,
     mapped to a checkpoint id through the *current* key folder, so revoking a key refuses even an
     established connection), validated (sync.wire), and checked to claim its own checkpoint id;
  2. evidence files are written under data_dir (temp file, rename; then one syncfs of the
     filesystem for the whole batch, or with evidence_sync = "fsync" an fsync per file and of the
     folder) and, at the same time, the rows in one transaction (SQLite WAL + synchronous=FULL by
     default);
  3. only when both are durable is the ack sent. A crash anywhere before 3 means the sender sends again, and
     the store ignores what it already has.

The hub never starts without its ZAP authenticator: a CURVE server with no ZAP handler encrypts
but admits every key. As a second guard, a message without a User-Id is refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from central.store import EvidenceRow, HubStore, Inbound, open_store
from common import sdnotify
from common.durable import fsync_dir, has_syncfs, syncfs
from sync import wire

log = logging.getLogger("zastava.central.hub")

ZAP_DOMAIN = "zastava"
SOFTWARE = "zastava-central/0.1"


class KeyRegistry:
    """Known checkpoints: `<checkpoint-id>.key` files (zmq certificate format) in one folder.

    Re-read by polling the folder's listing and mtimes (no inotify: works on every filesystem and
    in containers), or at once on SIGHUP. Called from the ZAP thread and the hub thread, so the
    maps are replaced whole, never mutated.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._sig: tuple = ()
        self.by_key: dict[bytes, str] = {}
        self.refused_attempts = 0
        self.reload()

    def _signature(self) -> tuple:
        out = []
        for p in sorted(self.folder.glob("*.key")):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((p.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def reload(self, force: bool = True) -> bool:
        """Re-read the folder if it changed (or always when forced); True if the key set changed."""
        sig = self._signature()
        if not force and sig == self._sig:
            return False
        self._sig = sig
        by_key: dict[bytes, str] = {}
        dup: set[bytes] = set()
        for p in sorted(self.folder.glob("*.key")):
            cp = p.stem
            if not wire.ID_RE.match(cp):
                log.error("checkpoint key %s: file name is not a valid checkpoint id; ignored", p.name)
                continue
            try:
                pub, _ = zmq.auth.load_certificate(str(p))
            except (OSError, ValueError) as e:
                log.error("checkpoint key %s: unreadable (%s); ignored", p.name, e)
                continue
            if pub in by_key:
                dup.add(pub)
            by_key[pub] = cp
        for k in dup:  # one key for two ids would let one checkpoint speak as another
            log.error("a public key is listed for more than one checkpoint; refused for all of them")
            by_key.pop(k, None)
        changed = by_key != self.by_key
        self.by_key = by_key
        if changed:
            log.info("checkpoint keys loaded: %d known (%s)", len(by_key), ", ".join(sorted(by_key.values())))
        return changed

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials provider: admit only listed keys."""
        ok = key in self.by_key
        if not ok:
            self.refused_attempts += 1
            log.warning("ZAP: refused unknown CURVE key %s...", key[:8].decode(errors="replace"))
        return ok

    def checkpoint_of(self, user_id: str | None) -> str | None:
        return self.by_key.get(user_id.encode()) if user_id else None


@dataclass
class Peer:
    routing_id: bytes
    last_seen: float
    downlink_sent: dict[int, float] = field(default_factory=dict)  # version -> when sent


class Hub:
    def __init__(self, bind: str, secret_key: Path, checkpoints_dir: Path, data_dir: Path, store_url: str,
                 max_msg_bytes: int = 64 << 20, heartbeat_s: float = 2.0, batch: int = 500,
                 reload_s: float = 2.0, evidence_sync: str = "syncfs"):
        self.bind_endpoint = bind
        self.secret_key = Path(secret_key)
        self.data_dir = Path(data_dir)
        self._data_root = str(self.data_dir)
        self.store_url = store_url
        self.max_msg_bytes = max_msg_bytes
        self.heartbeat_s = heartbeat_s
        self.batch = batch
        self.reload_s = reload_s
        self.keys = KeyRegistry(Path(checkpoints_dir))
        self.stats: Counter[str] = Counter()
        self.timing: Counter[str] = Counter()  # where durable writes spend their time (bench, logs)
        self.peers: dict[str, Peer] = {}
        self.endpoint: str | None = None  # the bound endpoint (port resolved)
        self._stop = threading.Event()
        self._reload_now = threading.Event()
        self._ctx: zmq.Context | None = None
        self._own_ctx = True
        self._auth: ThreadAuthenticator | None = None
        self._sock: zmq.Socket | None = None
        self.store: HubStore | None = None
        self._seen: dict[str, dict] = {}
        # Evidence writes run here, beside the row commit. With evidence_sync = "fsync" each file
        # is its own task: fsync is the slow part and releases the GIL, and many in flight let the
        # filesystem merge them into fewer journal commits (16 measured best on ext4: 0.3 ms per
        # 20 kB file against 6 ms for one fsync at a time). With syncfs a batch is one task.
        self._io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hub-fsync")
        if evidence_sync not in ("syncfs", "fsync"):
            raise ValueError(f"evidence_sync must be 'syncfs' or 'fsync', not {evidence_sync!r}")
        if evidence_sync == "syncfs" and not has_syncfs():
            log.warning("syncfs(2) is not available here: evidence files are fsynced one by one")
        self._use_syncfs = evidence_sync == "syncfs" and has_syncfs()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-durable")
        self._pending: tuple | None = None  # (future, items, refused, count) of the batch being written
        self._last_log: dict[str, float] = {}

    @classmethod
    def from_config(cls, hub_cfg) -> Hub:  # central.config.HubConfig
        return cls(hub_cfg.bind, hub_cfg.secret_key, hub_cfg.checkpoints_dir, hub_cfg.data_dir, hub_cfg.store,
                   hub_cfg.max_msg_bytes, hub_cfg.heartbeat_s, hub_cfg.batch, hub_cfg.reload_s,
                   hub_cfg.evidence_sync)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, context: zmq.Context | None = None) -> str:
        """Start the authenticator, open the store, bind; returns the bound endpoint.

        `context`: run in a caller's ZeroMQ context (embedding); by default the hub makes its own.
        ZAP is per context, so a context whose ZAP endpoint another handler already holds is
        refused: that handler, not ours, would decide which keys get in."""
        pub, sec = zmq.auth.load_certificate(str(self.secret_key))
        if sec is None:
            raise ValueError(f"{self.secret_key}: holds no secret key")
        self._own_ctx = context is None
        ctx = zmq.Context() if context is None else context
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("zastava.central.zap"))
        try:
            auth.start()
            auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self.keys)
            alive = auth.thread is not None and auth.thread.is_alive() and auth.is_alive()
            why = "its thread is not running"
        except zmq.ZMQError as e:
            alive, why = False, f"{e} (another ZAP handler holds this context's ZAP endpoint)"
        if not alive:
            auth.stop()
            if self._own_ctx:
                ctx.term()
            raise RuntimeError(f"ZAP authenticator did not start: {why}; refusing to run a CURVE server "
                               "that would admit any key")
        self._ctx, self._auth = ctx, auth
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_partial_files()
        self.store = open_store(self.store_url)
        s = self._ctx.socket(zmq.ROUTER)
        s.linger = 0
        s.curve_server = True
        s.curve_publickey, s.curve_secretkey = pub, sec
        s.zap_domain = ZAP_DOMAIN.encode()
        s.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)  # no ZAP answer -> no connection
        s.maxmsgsize = self.max_msg_bytes
        s.router_mandatory = True  # a reply to a vanished peer fails instead of disappearing
        s.sndhwm = 10_000
        s.rcvhwm = 10_000
        ms = int(self.heartbeat_s * 1000)
        s.heartbeat_ivl, s.heartbeat_timeout, s.heartbeat_ttl = ms, 3 * ms, 3 * ms
        s.bind(self.bind_endpoint)
        self._sock = s
        self.endpoint = s.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("hub listening on %s (store %s, %d known checkpoints)", self.endpoint,
                 self.store_url.split("://")[0], len(self.keys.by_key))
        return self.endpoint

    def _remove_partial_files(self) -> None:
        """Temp files a killed hub left behind; only the two newest day folders per checkpoint can
        hold them (they are written under the current day), so start-up never walks all evidence.
        Only files older than a minute go: another hub sharing the folder may be writing the rest."""
        root = self.data_dir / "evidence"
        if not root.is_dir():
            return
        n = 0
        for cp_dir in root.iterdir():
            if not cp_dir.is_dir():
                continue
            for day in sorted(d for d in cp_dir.iterdir() if d.is_dir())[-2:]:
                for tmp in day.glob(".*.tmp"):
                    try:
                        if time.time() - tmp.stat().st_mtime > 60:
                            tmp.unlink()
                            n += 1
                    except FileNotFoundError:
                        continue
        if n:
            log.info("removed %d partial evidence files left by an earlier crash", n)

    def request_reload(self) -> None:
        """Safe from a signal handler: the hub thread re-reads the key folder on its next turn."""
        self._reload_now.set()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        if self._ctx is not None and self._own_ctx:
            self._ctx.term()
        self._writer.shutdown(wait=True)
        self._io.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    # --- main loop --------------------------------------------------------------------------------
    def run(self) -> None:
        assert self._sock is not None and self.store is not None, "start() first"
        sdnotify.ready(f"hub on {self.endpoint}")
        wd = sdnotify.watchdog_interval()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        next_reload = next_flush = next_downlink = next_status = time.monotonic()
        last_version = self.store.latest_downlink_version()
        last_wd = 0.0
        while not self._stop.is_set():
            # while a batch is being written, look back soon: its acks go out from this thread
            if poller.poll(1 if self._pending is not None else 100):
                self._guarded("receive/store batch", self._handle_batch)
            self._finish_pending(block=False)
            now = time.monotonic()
            if self._reload_now.is_set() or now >= next_reload:
                self.keys.reload(force=self._reload_now.is_set())
                self._reload_now.clear()
                next_reload = now + self.reload_s
            if now >= next_flush:
                self._guarded("checkpoint flush", self._flush_seen)
                next_flush = now + 1.0
            if now >= next_downlink:
                v = self._guarded("downlink poll", self.store.latest_downlink_version)
                if v is not None:
                    self._guarded("downlink push", self._push_downlinks, v != last_version)
                    last_version = v
                next_downlink = now + 1.0
            # every second, not every half WatchdogSec: a pass of this loop that waited on the store
            # (at most a few busy timeouts) must not add to a ping that was already half late
            if wd and now - last_wd >= min(wd, 1.0):
                sdnotify.watchdog()
                last_wd = now
            if now >= next_status:
                live = sum(1 for p in self.peers.values() if time.time() - p.last_seen < 3 * self.heartbeat_s)
                sdnotify.status(f"{live} checkpoints connected; stored {self.stats['stored']}, "
                                f"refused {self.stats['refused']}")
                next_status = now + 5.0
        self._finish_pending(block=True)
        self._guarded("checkpoint flush", self._flush_seen)
        sdnotify.stopping()

    def _guarded(self, what: str, fn, *args):
        """A store that is away (PostgreSQL restarting, disk full) must not end the hub's loop: the
        error is counted and logged (rate-limited) and the loop carries on. Nothing is lost: what was
        not acked is sent again by the senders, and unflushed checkpoint state stays queued."""
        try:
            return fn(*args)
        except Exception as e:
            self.stats["store_errors"] += 1
            now = time.monotonic()
            if now - self._last_log.get(f"guard:{what}", 0) > 5:
                self._last_log[f"guard:{what}"] = now
                log.error("%s failed, carrying on: %s: %s (store errors so far: %d)", what, type(e).__name__,
                          str(e)[:300], self.stats["store_errors"])
            return None

    def _handle_batch(self) -> None:
        s = self._sock
        items: list[tuple[bytes, str, wire.Message]] = []  # (routing id, checkpoint, message)
        refused: dict[bytes, list[dict]] = {}
        for _ in range(self.batch):
            try:
                frames = s.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self.stats["received"] += 1
            rid = frames[0].bytes
            cp = self._authorise(frames)
            if cp is None:
                continue
            try:
                msg = wire.decode([f.buffer for f in frames[1:]])
            except wire.WireError as e:
                self._refuse("malformed", cp, str(e))
                mid = _loose_id(frames)
                if mid:
                    refused.setdefault(rid, []).append({"id": mid, "reason": str(e)[:256]})
                continue
            claimed = msg.body.get("checkpoint")
            if claimed is not None and claimed != cp:
                self._refuse("impersonation", cp, f"message claims checkpoint {claimed!r}")
                mid = msg.body.get("id")
                if mid:
                    refused.setdefault(rid, []).append({"id": mid, "reason": "checkpoint id does not match key"})
                continue
            self._touch(cp, rid)
            if msg.type in ("alert", "decision"):
                items.append((rid, cp, msg))
            else:
                self._control(rid, cp, msg)
        if items or refused:
            self._store_and_ack(items, refused)

    def _authorise(self, frames: list) -> str | None:
        if len(frames) < 2:
            self._refuse("malformed", None, "empty message")
            return None
        try:
            user_id = frames[1].get("User-Id")
        except zmq.ZMQError:
            user_id = None
        if not user_id:
            self._refuse("unauthenticated", None, "message without a User-Id (no ZAP)")
            return None
        cp = self.keys.checkpoint_of(user_id)
        if cp is None:
            self._refuse("revoked", None, "key no longer listed")
        return cp

    def _refuse(self, why: str, cp: str | None, detail: str) -> None:
        self.stats["refused"] += 1
        self.stats[f"refused.{why}"] += 1
        now = time.monotonic()
        key = f"{why}:{cp}"
        if now - self._last_log.get(key, 0) > 5:  # a flood of garbage must not flood the log
            self._last_log[key] = now
            log.warning("refused message from %s: %s: %s (total %s: %d)", cp or "unknown peer", why, detail[:200],
                        why, self.stats[f"refused.{why}"])

    def _touch(self, cp: str, rid: bytes) -> None:
        now = time.time()
        p = self.peers.get(cp)
        if p is None or p.routing_id != rid:
            self.peers[cp] = Peer(rid, now)  # a new connection: its downlinks go out again
            self._seen.setdefault(cp, {})
            self._push_downlinks_to(cp, force=True)
        else:
            p.last_seen = now
            self._seen.setdefault(cp, {})

    def _send(self, rid: bytes, msg_type: str, body: dict) -> bool:
        try:
            self._sock.send_multipart([rid, *wire.encode(msg_type, body)], zmq.NOBLOCK)
            return True
        except zmq.ZMQError as e:  # peer gone (router_mandatory) or its queue full: it will retry
            self.stats["send_failed"] += 1
            log.debug("reply %s not sent: %s", msg_type, e)
            return False

    # --- control messages -------------------------------------------------------------------------
    def _control(self, rid: bytes, cp: str, msg: wire.Message) -> None:
        b, now = msg.body, time.time()
        if msg.type == "heartbeat":
            self._send(rid, "pong", {"echo_t": b["t"], "hub_t": now})
            skew = b.get("offset")
            self._seen[cp].update(backlog=b["backlog"], skew_s=now - b["t"] if skew is None else skew,
                                  **({"rtt_s": b["rtt"]} if b.get("rtt") is not None else {}))
        elif msg.type == "hello":
            log.info("hello from %s (%s, protocol %d)", cp, b["software"], b["proto"])
            self._seen[cp].update(software=b["software"], proto=b["proto"])
            self._push_downlinks_to(cp, force=True)
        elif msg.type == "health":
            self._seen[cp].update(health=b["data"], health_t=b["t"], backlog=b["backlog"])
        elif msg.type == "downlink_ack":
            fresh = self.store.record_downlink_ack(cp, b["kind"], b["version"], b["ok"], b.get("error"))
            (log.info if b["ok"] else log.warning)(
                "downlink %s v%d %s by %s%s", b["kind"], b["version"], "applied" if b["ok"] else "REFUSED", cp,
                f": {b.get('error')}" if b.get("error") else "" if fresh else " (again)")
        else:  # ack / pong / downlink only travel hub -> edge
            self._refuse("wrong_direction", cp, f"{msg.type} is not accepted by the hub")

    def _flush_seen(self) -> None:
        if self._seen:
            self.store.update_checkpoints(time.time(), self._seen)
        self._seen = {}

    def _push_downlinks(self, force: bool) -> None:
        live = time.time() - 3 * self.heartbeat_s
        for cp, p in list(self.peers.items()):
            if p.last_seen >= live:
                self._push_downlinks_to(cp, force)

    def _push_downlinks_to(self, cp: str, force: bool) -> None:
        p = self.peers.get(cp)
        if p is None:
            return
        now = time.time()
        for d in self.store.pending_downlinks(cp):
            if not force and now - p.downlink_sent.get(d.version, 0) < 5.0:
                continue
            if self._send(p.routing_id, "downlink", {"kind": d.kind, "version": d.version, "doc": d.doc,
                                                     "sha256": d.sha256}):
                p.downlink_sent[d.version] = now

    # --- durable write, then ack ------------------------------------------------------------------
    def _store_and_ack(self, items: list[tuple[bytes, str, wire.Message]], refused: dict[bytes, list[dict]]) -> None:
        inbound: list[Inbound] = []
        writes = []
        seen_ids: set[str] = set()
        # evidence/<checkpoint>/<hub day>/<alert id>_<name>: flat per day, so a batch touches one
        # folder per checkpoint (one folder fsync) and retention can drop whole days.
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for _rid, cp, m in items:
            b = m.body
            if b["id"] in seen_ids:
                continue
            seen_ids.add(b["id"])
            ev = []
            if m.type == "alert":
                for meta, blob in zip(b["evidence"], m.blobs, strict=True):
                    missing = bool(meta.get("missing"))
                    rel = None if missing else f"evidence/{cp}/{day}/{b['id']}_{meta['name']}"
                    ev.append(EvidenceRow(meta["name"], meta["mime"], meta["size"], meta["sha256"], rel, missing))
                    if rel:  # strings, not pathlib: ~20 us per file of the hub's one CPU thread
                        writes.append((os.path.join(self._data_root, rel), blob))
            inbound.append(Inbound(b["id"], m.type, cp, b["created"], b["data"], ev))
        # One batch is made durable in the writer thread while the hub thread receives and checks
        # the next one (measured: decoding is ~40 % of a batch's time, the fsyncs the rest); the
        # next batch waits for this one, so a message's writes never race a resend's.
        self._finish_pending(block=True)
        self._pending = (self._writer.submit(self._durable, inbound, writes), items, refused, len(inbound))

    def _durable(self, inbound: list[Inbound], writes: list[tuple[str, bytes]]) -> list[bool]:
        """Evidence files and rows on disk; raises if any of it failed (then nothing is acked)."""
        t0 = time.perf_counter()
        dirs = {os.path.dirname(w[0]) for w in writes}
        for d in dirs:
            if not os.path.isdir(d):
                os.makedirs(d, exist_ok=True)
                fsync_dir(os.path.dirname(d))
                fsync_dir(os.path.dirname(os.path.dirname(d)))
        # The evidence files and the rows become durable at the same time, not one after the
        # other: each sync waits for a journal commit (~4 ms on the test machine's disk) and
        # concurrent ones share it, so a lone alert costs one commit instead of three
        # (bench/bench_sync.py). Either order is safe: nothing is acked until both are done,
        # and a resent message rewrites its evidence even when its row is already stored.
        if self._use_syncfs:  # one task: plain writes, then one syncfs (a task per file cost a futex storm)
            files = [self._io.submit(_write_batch_syncfs, writes, dirs)] if writes else []
        else:  # fsyncs wait on the disk: many in flight let it merge them
            files = [self._io.submit(_write_durable, path, blob, True) for path, blob in writes]
        try:
            new = self.store.write_batch(inbound) if inbound else []
            t1 = time.perf_counter()
        finally:
            for f in files:
                f.exception()  # wait for every write, whatever happened to the rows
        for f in files:
            f.result()  # raise the first failure: no ack then
        if not self._use_syncfs:
            for d in dirs:
                fsync_dir(d)  # the renames themselves are durable (already committed with the files on ext4)
        t2 = time.perf_counter()
        self.timing["batches"] += 1
        self.timing["messages"] += len(inbound)
        self.timing["db_s"] += t1 - t0
        self.timing["durable_s"] += t2 - t0
        return new

    def _finish_pending(self, block: bool) -> None:
        """Ack the batch in the writer once it is durable (from the hub thread: sockets are not
        thread-safe). Refusals are answered whatever happened to the writes."""
        if self._pending is None or not (block or self._pending[0].done()):
            return
        fut, items, refused, n = self._pending
        self._pending = None
        try:
            new = fut.result()
        except self.store.TRANSIENT as e:  # disk full, store locked or away: the sender retries later
            self.stats["store_errors"] += 1
            log.error("durable write of %d messages failed; not acked: %s: %s", n, type(e).__name__, e)
            items = []
        except Exception:  # anything else is a bug of ours: its traceback
            self.stats["store_errors"] += 1
            log.exception("durable write of %d messages failed; not acked", n)
            items = []
        else:
            self.stats["stored"] += sum(new)
            self.stats["duplicates"] += len(new) - sum(new)
        acks: dict[bytes, list[str]] = {}
        for rid, _cp, m in items:
            acks.setdefault(rid, []).append(m.body["id"])
        for rid in set(acks) | set(refused):
            self._send(rid, "ack", {"ids": acks.get(rid, []), "refused": refused.get(rid, [])})


def _write_durable(path: str, data: bytes, fsync: bool = True) -> str:
    """Write, rename, then fsync. Readers (the dashboard) never see a half file, because the rename
    comes after the whole write; the fsync after the rename makes the data and the new name durable
    in one journal commit on ext4 and XFS (the folder fsync that follows finds nothing left to do),
    where fsync-then-rename needs two. A crash before the fsync can leave a short file under the
    final name, but nothing was acked then: the sender resends and the resend rewrites it."""
    # pid and thread in the name: hubs sharing one evidence folder (issue 10) never share a temp file
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        mv = memoryview(data)
        while mv:
            mv = mv[os.write(fd, mv):]
        os.replace(tmp, path)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _write_batch_syncfs(writes: list[tuple[str, bytes]], dirs: set[str]) -> None:
    """A batch's files, written and renamed, then made durable, data and names, by one syncfs per
    filesystem they are on (a mount under data_dir is a filesystem of its own). The folders are
    opened first: syncfs reports the writeback errors that happen after its descriptor opened."""
    fds: dict[int, tuple[int, str]] = {}
    try:
        for d in dirs:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            dev = os.fstat(fd).st_dev
            if dev in fds:
                os.close(fd)
            else:
                fds[dev] = (fd, d)
        for path, blob in writes:
            _write_durable(path, blob, fsync=False)
        for fd, d in fds.values():
            syncfs(fd, d)
    finally:
        for fd, _d in fds.values():
            os.close(fd)


def _loose_id(frames: list) -> str | None:
    """The id of a message that failed validation, if one can be read, so the refusal can name it."""
    try:
        body = msgpack.unpackb(frames[3].bytes, raw=False)
        mid = body.get("id") if isinstance(body, dict) else None
        return mid if isinstance(mid, str) and wire.ID_RE.match(mid) else None
    except Exception:  # anything unreadable simply has no id to name
        return None
