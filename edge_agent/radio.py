"""A radio receiver: IQ source with its tuning or scan plan -> RF front end -> classifier on
new emitters -> judgement against the frequency plan and watchlist -> alerts with a
spectrogram PNG and a short SigMF recording as evidence.

The IQ source runs in its own thread and hands blocks over a bounded queue; a block that
cannot be queued is dropped and counted (that is a lost stretch of spectrum, shown on the
console), never allowed to back up into the socket.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2

from common import clock
from edge_agent.alerts import Alert
from edge_agent.config import AgentConfig, ReceiverConfig
from edge_agent.evidence import FileStore
from edge_agent.fusion import Fusion
from edge_agent.pipeline import TRANSIENT, DropQueue, Worker, pump, retry_delay
from edge_agent.state import AgentState
from edge_agent.store import Store

log = logging.getLogger("zastava.radio")

# Alerts waiting to be stored again at most; past it the oldest is given up (a disk that stays
# broken must not grow the agent's memory without bound: each holds its IQ snippet).
MAX_UNSTORED = 64


@dataclass
class Unstored:
    """An alert whose evidence or row could not be stored (a TRANSIENT failure). The spectrum it
    came from has passed, so, unlike an X-ray bag, nothing waits for it: the receiver goes on and
    tries it again between blocks."""

    alert: Alert
    finding: object
    block: object
    first: float  # monotonic time of its first failure
    failures: int = 0
    next_at: float = 0.0


class RadioReceiver:
    def __init__(self, cfg: AgentConfig, rx: ReceiverConfig, monitor, state: AgentState, store_path,
                 files_root: Path, fusion: Fusion, stop: threading.Event):
        self.cfg, self.rx, self.monitor, self.state = cfg, rx, monitor, state
        self.store_path, self.files_root, self.fusion, self.stop = store_path, files_root, fusion, stop
        self.queue = DropQueue(rx.queue)
        self.source = None
        self.worker: Worker | None = None
        self.counters = {"blocks": 0, "samples": 0, "alerts": 0, "bad_blocks": 0, "retries": 0, "alerts_lost": 0}
        self.busy_s = 0.0
        self._store: Store | None = None
        self._files: FileStore | None = None
        self._last_row = 0.0
        self._unstored: list[Unstored] = []

    def start(self) -> None:
        from drivers.registry import open_iq_source

        scan = [h.model_dump() for h in self.rx.scan] or None
        self.source = open_iq_source(self.rx.source, center_hz=self.rx.center_hz, rate_hz=self.rx.rate_hz,
                                     gain_db=self.rx.gain_db, scan=scan)
        pump(f"{self.rx.id}-iq", self.source.blocks, self.queue, self.stop, 0.0)
        self.worker = Worker(f"{self.rx.id}-dsp", self._step, self.stop).start()

    def close(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                log.exception("%s: closing source", self.rx.id)

    def _step(self) -> None:
        if self._store is None:
            self._store = Store(self.store_path, self.cfg.pipeline_busy_s)
            self._files = FileStore(self._store, self.files_root, self.cfg.storage.quota_mb << 20,
                                    self.cfg.storage.hard_limit_mb << 20, self.cfg.storage.min_free_mb << 20)
        if self._unstored:
            self._store_again()
        try:
            block, _, _ = self.queue.get(timeout=0.5)
        except queue.Empty:
            return
        t0 = time.monotonic()
        self.process(block)
        self.busy_s += time.monotonic() - t0

    def process(self, block) -> list[Alert]:
        self.counters["blocks"] += 1
        self.counters["samples"] += len(block.samples)
        try:
            findings = self.monitor.process(block.samples, block.t, block.center_hz, block.rate_hz)
        except ValueError as e:
            self.counters["bad_blocks"] += 1
            log.warning("%s: IQ block %d refused: %s", self.rx.id, block.seq, e)
            return []
        self._publish_view(block)
        alerts = []
        for f in findings:
            alerts.append(self._commit(f, block))
        return [a for a in alerts if a is not None]

    def _publish_view(self, block) -> None:
        view = self.state.receiver(self.rx.id)
        view.center_hz, view.rate_hz = block.center_hz, block.rate_hz
        row = self.monitor.waterfall_row()
        if row is not None:
            view.waterfall.append(row)
        view.emitters = [emitter_dict(e) for e in self.monitor.emitters()]
        now = time.monotonic()
        if now - self._last_row > 0.25:  # the console needs ~4 rows/s, not every block
            self._last_row = now
            if row is not None:
                self.state.events.publish("waterfall", {"receiver": self.rx.id, "center_hz": block.center_hz,
                                                        "rate_hz": block.rate_hz,
                                                        "row": [round(float(v), 1) for v in row[::max(1, len(row) // 512)]],
                                                        "emitters": view.emitters})

    def _commit(self, f, block) -> Alert | None:
        e = f.emitter
        a = Alert(checkpoint=self.cfg.checkpoint_id, source=self.rx.id, kind=f.kind, score=float(f.score),
                  severity=f.severity, t=float(f.t or block.t), reason=f.reason,
                  **clock.stamp(self.state.link.get("clock_measure"), clock.reference_from(block.wall_minus_mono)),
                  location={"center_hz": float(e.center_hz), "bandwidth_hz": float(e.bandwidth_hz),
                            "power_dbfs": float(e.power_db), "snr_db": float(e.snr_db),
                            "class": e.cls, "licensed": e.licensed, "allocation": e.allocation})
        return self._keep(a, f, block, None)

    def _keep(self, a: Alert, f, block, u: Unstored | None) -> Alert | None:
        """Store the alert with its evidence; on a TRANSIENT failure keep it to try again (the same
        alert and uuid: its files are written again in place, its row inserted once) for up to
        storage.retry_s."""
        try:
            if not self._write(a, f, block):
                return None
        except TRANSIENT as e:
            now = time.monotonic()
            u = u or Unstored(a, f, block, now)
            u.failures += 1
            delay = retry_delay(u.failures)
            what = f"{a.kind} alert at {a.location['center_hz'] / 1e6:.4f} MHz ({a.uuid})"
            if now + delay - u.first > self.cfg.storage.retry_s:
                self.counters["alerts_lost"] += 1
                log.error("%s: %s LOST: not stored in %d attempts over %.0f s: %s: %s", self.rx.id, what,
                          u.failures, now - u.first, type(e).__name__, e)
                return None
            u.next_at = now + delay
            self._unstored.append(u)
            self.counters["retries"] += 1
            log.warning("%s: %s could not be stored (%s: %s); trying again in %.0f s", self.rx.id, what,
                        type(e).__name__, e, delay)
            if len(self._unstored) > MAX_UNSTORED:
                old = self._unstored.pop(0)
                self.counters["alerts_lost"] += 1
                log.error("%s: %s alert %s LOST: more than %d alerts wait to be stored", self.rx.id,
                          old.alert.kind, old.alert.uuid, MAX_UNSTORED)
            return None
        self.counters["alerts"] += 1
        e = f.emitter
        self.fusion.note_radio_alert(a.uuid, a.kind, a.t, f"{e.cls or 'unclassified'} at {e.center_hz / 1e6:.4f} MHz")
        try:
            self.state.events.publish("alert", {"alert": self._store.get_alert(a.uuid)})
        except TRANSIENT as err:  # stored and queued for central: only the console's live feed misses it
            log.warning("%s: alert %s stored but not shown live: %s: %s", self.rx.id, a.uuid, type(err).__name__, err)
        if u is not None:
            log.warning("%s: %s alert %s stored on attempt %d", self.rx.id, a.kind, a.uuid, u.failures + 1)
        return a

    def _store_again(self) -> None:
        """The alerts whose time to try again has come, oldest first."""
        now = time.monotonic()
        due = [u for u in self._unstored if u.next_at <= now]
        self._unstored = [u for u in self._unstored if u.next_at > now]
        for u in due:
            try:
                self._keep(u.alert, u.finding, u.block, u)
            except Exception:  # a bug of ours on one alert must not cost the others waiting
                self.counters["alerts_lost"] += 1
                log.exception("%s: %s alert %s LOST storing it again", self.rx.id, u.alert.kind, u.alert.uuid)

    def _write(self, a: Alert, f, block) -> bool:
        """Evidence files, then the alert's row (False: that uuid is stored already)."""
        from detectors.rf.judge import write_sigmf

        e = f.emitter
        self._files.make_room()
        ts = datetime.fromtimestamp(block.t, UTC).strftime("%Y%m%d")
        evidence = []
        if f.spectrogram is not None:
            ok, png = cv2.imencode(".png", f.spectrogram)
            if ok:
                evidence.append(self._files.save(f"evidence/{ts}/{a.uuid}.spectrogram.png", png.tobytes(),
                                                 "evidence", "image/png", alert_uuid=a.uuid))
        if f.snippet is not None and len(f.snippet):
            base = self._files.abspath(f"evidence/{ts}/{a.uuid}.iq")
            paths = write_sigmf(base, f.snippet, f.rate_hz or block.rate_hz, f.center_hz or block.center_hz,
                                f.snippet_t or block.t, e, f.kind, span=f.snippet_span, reason=f.reason)
            for p in paths:
                rel = str(Path(p).resolve().relative_to(self.files_root.resolve()))
                mime = "application/json" if rel.endswith(".sigmf-meta") else "application/octet-stream"
                evidence.append(self._files.register(rel, "evidence", mime, alert_uuid=a.uuid))
        a.evidence = evidence
        return self._store.add_alert(a)

    def report(self) -> dict:
        h = self.source.health().as_dict() if self.source else {}
        return {**self.counters, "queue": self.queue.qsize(), "dropped": self.queue.dropped,
                "busy_s": round(self.busy_s, 3), "iq_drops_driver": h.get("drops", 0),
                "unstored": len(self._unstored),
                "deleted_for_disk": self._files.deleted_for_disk if self._files else 0,
                "worker_errors": self.worker.errors if self.worker else 0,
                "last_error": self.worker.last_error if self.worker else None}


def emitter_dict(e) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(e).items()
            if isinstance(v, str | int | float | bool) or v is None}
