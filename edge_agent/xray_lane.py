"""An X-ray lane: frames from any source, joined with the control link's bag events ->
detector -> one alert per finding above its threshold, with an evidence JPEG, committed
before it is shown or queued for sync; optionally a stop-belt command on a severe alert.

A bag that came as DICOS images (C-STORE or a spool of DICOS files) also gets a DICOS Threat
Detection Report referencing its image, as DICOS-aware consoles expect of an automated detector:
beside the raw frame for every bag (ALARM or CLEAR), and with each alert's evidence, so that
central has it too (detectors/xray/tdr.py; docs/dicos.md).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from common import clock
from edge_agent.alerts import SEVERITY_PRIORITY, Alert
from edge_agent.config import AgentConfig, LaneConfig
from edge_agent.evidence import FileStore
from edge_agent.fusion import Fusion
from edge_agent.pipeline import TRANSIENT, DropQueue, Worker, pump, retry_delay
from edge_agent.state import AgentState, BagView
from edge_agent.store import Store

log = logging.getLogger("zastava.lane")

# What each class means for the officer; fusion may raise it one step.
CLASS_SEVERITY = {"weapon": "critical", "narcotics": "high", "currency": "medium", "concealment": "medium"}
COLOURS = {"weapon": (0, 0, 255), "narcotics": (0, 200, 255), "currency": (0, 255, 0), "concealment": (255, 0, 255)}


def render_evidence(display_bgr: np.ndarray, findings: list, lane: str, bag_id: str, t: float) -> bytes:
    """The JPEG an officer and command see: the pseudo-colour bag, boxes and labels, a caption."""
    img = display_bgr.copy()
    for f in findings:
        x1, y1, x2, y2 = (int(v) for v in f.box)
        c = COLOURS.get(f.cls, (255, 255, 255))
        cv2.rectangle(img, (x1, y1), (x2, y2), c, 2)
        label = f"{f.cls} {f.score:.2f}" + (" concealed" if f.concealed else "")
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(th + 4, y1)
        cv2.rectangle(img, (x1, ty - th - 4), (x1 + tw + 4, ty), c, -1)
        cv2.putText(img, label, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    caption = f"{lane} bag {bag_id} {stamp}"
    (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    # on a dark band: the open beam around a bag renders white, and white text there is invisible
    h = img.shape[0]
    cv2.rectangle(img, (0, h - th - base - 8), (min(img.shape[1], tw + 12), h), (0, 0, 0), -1)
    cv2.putText(img, caption, (6, h - base - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class BagEvents:
    """Bag-in times by bag id from the control link, bounded, so frames can be tied to bags."""

    def __init__(self, keep: int = 256):
        self.keep = keep
        self.bags: OrderedDict[str, dict] = OrderedDict()
        self.lock = threading.Lock()
        self.interlock_open = False
        self.fault: str | None = None

    def on_event(self, ev) -> None:
        with self.lock:
            if ev.kind in ("bag_in", "bag_out") and ev.bag_id:
                rec = self.bags.setdefault(ev.bag_id, {})
                rec[ev.kind] = ev.t
                self.bags.move_to_end(ev.bag_id)
                while len(self.bags) > self.keep:
                    self.bags.popitem(last=False)
            elif ev.kind == "interlock":
                self.interlock_open = bool(ev.data.get("open"))
            elif ev.kind == "fault":
                self.fault = ev.data.get("text") or str(ev.data.get("code"))

    def lookup(self, bag_id: str | None) -> dict | None:
        with self.lock:
            return dict(self.bags[bag_id]) if bag_id and bag_id in self.bags else None


class NotScreened(Exception):
    """The bag's images cannot be screened (the detector refused them); the message says why."""


@dataclass
class Retry:
    """A bag whose results could not be stored (a TRANSIENT failure), waiting for its next attempt."""

    frame: object
    done: object  # its Receipt (or None: a live source waits for nobody)
    arrived: float
    first: float  # monotonic time of its first failure
    since: float  # the same as wall-clock time, for the officer
    failures: int = 0  # attempts that failed so far
    next_at: float = 0.0
    reason: str = ""
    carried: dict = field(default_factory=dict)  # uuid -> Alert committed by an earlier attempt


class XrayLane:
    def __init__(self, cfg: AgentConfig, lane: LaneConfig, detector, state: AgentState, store_path,
                 files_root, fusion: Fusion, stop: threading.Event):
        self.cfg, self.lane, self.detector, self.state = cfg, lane, detector, state
        self.store_path, self.files_root, self.fusion, self.stop = store_path, files_root, fusion, stop
        self.queue = DropQueue(lane.queue)
        self.events = BagEvents()
        self.source = None
        self.control = None
        self.worker: Worker | None = None
        self.latency: list[float] = []  # frame arrival -> alert committed, seconds (last 1000)
        self.counters = {"frames": 0, "bags_alerted": 0, "alerts": 0, "belt_stops": 0, "bad_frames": 0,
                         "repeats": 0, "tdr_failed": 0, "bags_failed": 0, "retries": 0}
        self._store: Store | None = None
        self._files: FileStore | None = None
        self.last_failed: dict | None = None  # the last bag not screened: bag_id, t, reason
        self._retry: Retry | None = None  # the bag the lane is held on, waiting to try it again
        self._carried: dict = {}  # the current bag's alerts committed by its earlier attempts

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        from drivers.registry import open_control_link, open_frame_source, scheme_of

        opts = {}
        if scheme_of(self.lane.source) == "dicos-scp":
            # images a scanner pushed are ours once we answer success: kept on disk until screened
            # (drivers/dicos_scp.py), in the URL's own inbox if it names one, else under storage.dir
            opts["inbox"] = Path(self.cfg.storage.dir) / "inbox" / self.lane.id
        self.source = open_frame_source(self.lane.source, **opts)
        # a live stream cannot wait: drop and count; a spool or C-STORE source waits (back-pressure)
        live = self.lane.source.startswith("capture:")
        pump(f"{self.lane.id}-source", self.source.frames, self.queue, self.stop, 0.0 if live else 3600.0,
             handshake=not live)
        if self.lane.control:
            self.control = open_control_link(self.lane.control)
            threading.Thread(target=self._control_loop, name=f"{self.lane.id}-control", daemon=True).start()
        self.worker = Worker(f"{self.lane.id}-detect", self._step, self.stop).start()

    def _control_loop(self) -> None:
        while not self.stop.is_set():
            try:
                for ev in self.control.events(self.stop):
                    self.events.on_event(ev)
            except Exception:
                log.exception("%s: control link iterator failed; restarting", self.lane.id)
                self.stop.wait(1.0)

    def close(self) -> None:
        for dev in (self.source, self.control):
            if dev is not None:
                try:
                    dev.close()
                except Exception:
                    log.exception("%s: closing %s", self.lane.id, dev)

    # -- the hot loop ----------------------------------------------------------------------
    def _open_store(self) -> None:
        if self._store is None:  # the worker thread's own connection
            self._store = Store(self.store_path, self.cfg.pipeline_busy_s)
            self._files = FileStore(self._store, self.files_root, self.cfg.storage.quota_mb << 20,
                                    self.cfg.storage.hard_limit_mb << 20, self.cfg.storage.min_free_mb << 20)

    def _step(self) -> None:
        self._open_store()
        r = self._retry
        if r is not None:  # the lane is held on a bag that met a passing fault: nothing overtakes it
            wait = r.next_at - time.monotonic()
            if wait > 0:
                self.stop.wait(min(wait, 0.5))  # short steps: the watchdog sees the worker alive
                return
            self._retry = None
            self._carried = r.carried
            self._handle(r.frame, r.done, r.arrived, r)
            return
        try:
            frame, done, arrived = self.queue.get(timeout=0.5)
        except queue.Empty:
            return
        self.counters["frames"] += 1
        self._carried = {}
        self._handle(frame, done, arrived, None)

    def _handle(self, frame, done, arrived: float, retry: Retry | None) -> None:
        bag_id = self.bag_id(frame)
        try:
            self.process(frame, arrived)
        except Exception as e:
            reason = str(e) if isinstance(e, NotScreened) else f"{type(e).__name__}: {e}"
            if isinstance(e, TRANSIENT) and self._try_again(frame, done, arrived, retry, reason):
                return
            # not screened: said loudly, counted, and its files set aside by the spool rather than
            # filed as done; the console shows officers the lane's last unscreened bag
            self.counters["bags_failed"] += 1
            self.last_failed = {"bag_id": bag_id, "t": time.time(), "reason": reason[:300]}
            tries = f" after {retry.failures + 1} attempts over {time.monotonic() - retry.first:.0f} s" if retry else ""
            log.error("%s: bag %s NOT screened%s: %s", self.lane.id, bag_id, tries, reason)
            try:  # what was committed stands, and is shown
                self._announce(list(self._carried.values()), arrived)
            except Exception:  # never at the price of the receipt: without it the source would wait forever
                log.exception("%s: announcing the committed alerts of bag %s", self.lane.id, bag_id)
            if done is not None:
                done.set(reason)
            if not isinstance(e, NotScreened):
                raise  # our fault, not the image's: the Worker logs the traceback and counts it
            return
        if retry is not None:
            log.warning("%s: bag %s screened on attempt %d, %.0f s after it first failed", self.lane.id, bag_id,
                        retry.failures + 1, time.monotonic() - retry.first)
        if done is not None:
            done.set()

    def _try_again(self, frame, done, arrived: float, retry: Retry | None, reason: str) -> bool:
        """Hold the lane on this bag and try it again later, unless it has been tried for
        storage.retry_s already. Its alerts are keyed by what was found in which image (finding_uuid),
        so a second attempt commits none twice."""
        now = time.monotonic()
        if retry is None:
            retry = Retry(frame, done, arrived, first=now, since=time.time())
        delay = retry_delay(retry.failures + 1)
        if now + delay - retry.first > self.cfg.storage.retry_s:
            return False
        retry.failures += 1
        retry.next_at, retry.reason, retry.carried = now + delay, reason, self._carried
        self._retry = retry
        self.counters["retries"] += 1
        log.warning("%s: bag %s could not be screened (%s); trying again in %.0f s (attempt %d)", self.lane.id,
                    self.bag_id(frame), reason, delay, retry.failures + 1)
        return True

    def bag_id(self, frame) -> str:
        """The bag's id: the scanner's, else one made from the lane and the frame's time (live video)."""
        return frame.bag_id or frame.meta.get("bag_id") or f"{self.lane.id}-{int(frame.t * 1000)}"

    def process(self, frame, arrived: float) -> list[Alert]:
        from detectors.xray.preprocess import pseudocolor

        bag_id = self.bag_id(frame)
        t_detect = time.monotonic()
        try:
            findings = self.detector.detect(frame.high, frame.low)
            detect_ms = 1000 * (time.monotonic() - t_detect)
        except ValueError as e:  # the bag goes unscreened: never quietly
            self.counters["bad_frames"] += 1
            raise NotScreened(f"refused by the detector: {e}") from e
        display = pseudocolor(frame.high, frame.low)
        self._files.make_room()  # a full disk would fail this bag's writes, and every one after it
        ts = datetime.fromtimestamp(frame.t, UTC).strftime("%Y%m%d")
        frame_jpg = render_evidence(display, [], self.lane.id, bag_id, frame.t)
        raw = self._files.save(f"raw/{self.lane.id}/{ts}/{bag_id}.jpg", frame_jpg, "raw", "image/jpeg")
        try:
            tdr = tdr_for(frame, bag_id, findings, detect_ms, self.cfg.checkpoint_id, self.lane.id,
                          self.cfg.xray_detector.threat_categories)
        except Exception as e:  # a report we cannot make must never hold back the bag's alerts
            tdr = None
            self._tdr_failed(bag_id, "made", e)
        if tdr is not None:
            try:
                self._files.save(f"raw/{self.lane.id}/{ts}/{bag_id}.tdr.dcm", tdr, "raw", "application/dicom")
            except (OSError, ValueError) as e:  # nor one we cannot keep: the alerts still carry it
                self._tdr_failed(bag_id, "kept beside the frame", e)
        risk = self.fusion.risk_for(frame.t)
        fkey = frame_key(frame) if findings else ""  # a pixel digest: only where there is something to key
        alerts: list[Alert] = []
        clock_fields = (clock.stamp(self.state.link.get("clock_measure"), clock.reference_from(frame.wall_minus_mono))
                        if findings else {})
        for f in findings:
            severity = CLASS_SEVERITY.get(f.cls, "medium")
            reason = f"{f.cls} ({f.material}, score {f.score:.2f})"
            if f.concealed:
                reason += f", concealed: {f.concealment_reason or 'inside another object'}"
            if risk:
                severity = raise_severity(severity)
                reason += f"; risk raised: {risk['reason']}"
            a = Alert(uuid=finding_uuid(self.cfg.checkpoint_id, self.lane.id, fkey, f.cls, f.box),
                      checkpoint=self.cfg.checkpoint_id, source=self.lane.id, kind=f"xray.{f.cls}",
                      score=float(f.score), severity=severity, t=frame.t, bag_id=bag_id,
                      **clock_fields,
                      location={"box": [int(v) for v in f.box], "image": [int(frame.high.shape[1]),
                                int(frame.high.shape[0])], "material": f.material,
                                "concealed": bool(f.concealed)},
                      reason=reason, fusion=risk,
                      extra={"bag_events": self.events.lookup(bag_id), "source_url": frame.source})
            if self._store.has_alert(a.uuid):
                if a.uuid in self._carried:  # committed by this bag's earlier attempt: it is ours
                    alerts.append(self._carried[a.uuid])
                    continue
                # this image came again after a crash (see finding_uuid): its alert and evidence
                # are committed; rendering the evidence again (with another time stamp) would
                # replace the file the alert's sha256 vouches for, and central would get it as missing
                self.counters["repeats"] += 1
                continue
            jpg = render_evidence(display, [f], self.lane.id, bag_id, frame.t)
            a.evidence = [self._files.save(f"evidence/{ts}/{a.uuid}.jpg", jpg, "evidence", "image/jpeg",
                                           alert_uuid=a.uuid)]
            if tdr is not None:
                try:
                    a.evidence.append(self._files.save(f"evidence/{ts}/{a.uuid}.tdr.dcm", tdr, "evidence",
                                                       "application/dicom", alert_uuid=a.uuid))
                except (OSError, ValueError) as e:  # the alert goes out with its image alone
                    self._tdr_failed(bag_id, f"attached to alert {a.uuid}", e)
            if self._store.add_alert(a):
                alerts.append(a)
                self._carried[a.uuid] = a  # should a later step fail, a second attempt knows it
        self._announce(alerts, arrived)
        self._carried = {}  # announced: nothing that fails after this may announce them again
        self.state.add_bag(BagView(
            lane=self.lane.id, bag_id=bag_id, t=frame.t, image_path=raw.path,
            findings=[{"cls": f.cls, "score": round(float(f.score), 3), "box": [int(v) for v in f.box],
                       "material": f.material, "concealed": bool(f.concealed)} for f in findings],
            alert_uuids=[a.uuid for a in alerts], width=int(display.shape[1]), height=int(display.shape[0]),
            risk=risk,
        ))
        if self.counters["frames"] % 20 == 0:
            try:
                self._files.enforce()
            except TRANSIENT as e:  # the bag is screened and shown: retention tries again in 20 bags
                log.warning("%s: retention could not run: %s: %s", self.lane.id, type(e).__name__, e)
        return alerts

    def _announce(self, alerts: list[Alert], arrived: float) -> None:
        """A bag's committed alerts to the officers (and the belt), once: when all of them are
        committed, or when the bag is given up with some of them committed."""
        if not alerts:
            return
        rows = [self._store.get_alert(a.uuid) for a in alerts]  # first: a read that fails counts nothing
        self.latency.append(time.monotonic() - arrived)
        del self.latency[:-1000]
        self.counters["alerts"] += len(alerts)
        self.counters["bags_alerted"] += 1
        for row in rows:
            self.state.events.publish("alert", {"alert": row})
        self._maybe_stop_belt(max(alerts, key=lambda a: SEVERITY_PRIORITY[a.severity]))

    def _tdr_failed(self, bag_id: str, what: str, e: Exception) -> None:
        """The TDR is a courtesy to DICOS consoles: its failures are logged and counted
        (`tdr_failed`, in /metrics), never raised into the bag's processing."""
        self.counters["tdr_failed"] += 1
        log.warning("%s: the DICOS TDR of bag %s could not be %s: %s", self.lane.id, bag_id, what, e)

    def _maybe_stop_belt(self, alert: Alert) -> None:
        limit = self.lane.stop_belt_on
        if not limit or self.control is None:
            return
        if SEVERITY_PRIORITY[alert.severity] >= SEVERITY_PRIORITY[limit]:
            try:
                self.control.stop_belt(f"{alert.kind} on bag {alert.bag_id} ({alert.uuid})")
                self.counters["belt_stops"] += 1
                log.warning("%s: belt stopped for %s on bag %s", self.lane.id, alert.kind, alert.bag_id)
            except Exception as e:
                log.error("%s: stop-belt command failed: %s", self.lane.id, e)

    def report(self) -> dict:
        lat = sorted(self.latency)
        p = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)) if lat else (lambda q: None)
        return {**self.counters, "queue": self.queue.qsize(), "dropped": self.queue.dropped,
                "latency_ms_p50": p(0.5), "latency_ms_p99": p(0.99),
                "worker_errors": self.worker.errors if self.worker else 0,
                "last_error": self.worker.last_error if self.worker else None,
                "interlock_open": self.events.interlock_open, "scanner_fault": self.events.fault,
                "last_failed": self.last_failed, "retrying": self._retrying(),
                "deleted_for_disk": self._files.deleted_for_disk if self._files else 0}

    def _retrying(self) -> dict | None:
        """The bag the lane is held on, for the console: officers see why no new bag shows."""
        r = self._retry
        if r is None:
            return None
        return {"bag_id": self.bag_id(r.frame), "since": r.since, "failures": r.failures, "reason": r.reason[:300]}


# Alert UUIDs of X-ray findings are derived from what was found in which image, so that an image
# processed again after a crash (committed, but not yet acknowledged to its spool) yields the
# same UUIDs and the store's insert-or-ignore drops the repeat: exactly once across restarts.
# The image's identity must therefore not depend on when it was read: DICOS carries its own
# (the SOP Instance UIDs); for anything else it is the pixels themselves, since file names recur
# (a scanner whose bag counter restarts) and a name collision here would silently drop an alert.
_NS = uuid.UUID("6f1c5b2e-8a43-4f0e-9d57-0c2b7a1e9f30")


def tdr_for(frame, bag_id: str, findings: list, processing_ms: float, checkpoint: str, lane: str,
            categories: dict[str, str] | None = None) -> bytes | None:
    """The bag's DICOS TDR as file bytes, when the frame came from DICOS images (their study and
    SOP instance are what it references); None for PNG/TIFF/live sources, which have no DICOS
    image to reference. The report lists the findings that stand, so its alarm decision is the
    lane's: ALARM with any, CLEAR without."""
    m = frame.meta
    if m.get("format") != "dicos" or not m.get("instances") or not m.get("study_uid"):
        return None
    from io import BytesIO

    from pydicom.uid import UID

    from detectors.xray.tdr import DX_PROCESSING_SOP_CLASS, ImageRef, Station, build_tdr

    ref = ImageRef(str(m["instances"][0]), str(m["study_uid"]), bag_id,
                   str(m.get("sop_class_uid") or DX_PROCESSING_SOP_CLASS))
    bad = [u for u in (ref.sop_instance_uid, ref.study_instance_uid, ref.sop_class_uid) if not UID(u).is_valid]
    if bad:  # a report pointing at no image a console can find is worse than none
        raise ValueError(f"the image's UIDs are not valid DICOM UIDs: {bad}")
    ds = build_tdr(findings, ref, processing_ms=processing_ms, when=datetime.fromtimestamp(frame.t, UTC),
                   station=Station(station=f"{checkpoint}/{lane}", location=checkpoint), categories=categories)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def finding_uuid(checkpoint: str, lane: str, frame_key: str, cls: str, box) -> str:
    return str(uuid.uuid5(_NS, f"{checkpoint}/{lane}/{frame_key}/{cls}/{','.join(str(int(v)) for v in box)}"))


def frame_key(frame) -> str:
    instances = [str(u) for u in frame.meta.get("instances") or [] if u]
    if instances:
        return "dicos:" + "+".join(instances)
    h = hashlib.blake2b(digest_size=16)
    for img in (frame.high, frame.low):
        if img is not None:
            a = np.ascontiguousarray(img)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.data)
    return "pixels:" + h.hexdigest()


def raise_severity(sev: str) -> str:
    order = ["info", "low", "medium", "high", "critical"]
    return order[min(len(order) - 1, order.index(sev) + 1)]
