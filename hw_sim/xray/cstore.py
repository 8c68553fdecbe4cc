"""Pushing each bag's DICOS files to a receiver by C-STORE (pynetdicom SCU), as networked scanners do.

Pushes run in their own thread behind a bounded queue, so a receiver that is down never holds up
the belt: each bag is tried `retries + 1` times with a doubling delay, a failure is logged once
per bag with the address and the reason, and counted; when the queue is full the bag is dropped
and counted. One association per bag (associate, store high and low, release): a receiver that
restarts between bags costs nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, register_uid
from pynetdicom.service_class import StorageServiceClass

from hw_sim.xray.dicos import DICOS_DX_FOR_PRESENTATION, DICOS_DX_FOR_PROCESSING, DICOS_SOP_CLASSES

log = logging.getLogger("zastava.sim.cstore")


def register_dicos_storage() -> None:
    """Teach pynetdicom that the DICOS DX classes are storage classes (it ships no DICOS UIDs).

    Both ends need it: without it an SCP in this process answers a DICOS C-STORE with no status.
    Registering again is harmless (it overwrites the same entries).
    """
    register_uid(DICOS_DX_FOR_PROCESSING, "DICOSDigitalXRayImageStorageForProcessing", StorageServiceClass)
    register_uid(DICOS_DX_FOR_PRESENTATION, "DICOSDigitalXRayImageStorageForPresentation", StorageServiceClass)


register_dicos_storage()


class PushError(Exception):
    pass


@dataclass
class PushStats:
    pushed: int = 0  # bags whose every file the receiver stored with status 0x0000
    failed: int = 0  # bags given up after all retries
    dropped: int = 0  # bags not even tried: queue full
    attempts_failed: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        with self.lock:
            return {"pushed": self.pushed, "failed": self.failed, "dropped": self.dropped,
                    "attempts_failed": self.attempts_failed, "last_error": self.last_error}


class CStorePusher:
    def __init__(self, host: str, port: int, ae_title: str, *, calling_ae: str = "ZASTAVA_SIM",
                 retries: int = 2, retry_delay_s: float = 0.5, queue_size: int = 32, timeout_s: float = 10.0):
        self.host, self.port, self.ae_title = host, port, ae_title
        self.retries, self.retry_delay_s = retries, retry_delay_s
        self.ae = AE(ae_title=calling_ae)
        for uid in DICOS_SOP_CLASSES:
            self.ae.add_requested_context(uid, ExplicitVRLittleEndian)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout_s
        self.ae.connection_timeout = timeout_s
        self.stats = PushStats()
        self.q: queue.Queue[tuple[str, list[Dataset]]] = queue.Queue(maxsize=queue_size)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sim-cstore", daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port} (AE {self.ae_title})"

    def submit(self, bag_id: str, datasets: list[Dataset]) -> bool:
        """Queue a bag's datasets for pushing; False (and counted) if the queue is full."""
        try:
            self.q.put_nowait((bag_id, datasets))
            return True
        except queue.Full:
            with self.stats.lock:
                self.stats.dropped += 1
            log.warning("C-STORE queue to %s full: bag %s dropped", self.address, bag_id)
            return False

    def idle(self) -> bool:
        """True when nothing is queued or being pushed (tests wait for this)."""
        return self.q.unfinished_tasks == 0

    def _push(self, datasets: list[Dataset]) -> None:
        assoc = self.ae.associate(self.host, self.port, ae_title=self.ae_title)
        if not assoc.is_established:
            why = "association rejected" if assoc.is_rejected else "receiver down or unreachable"
            raise PushError(why)
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                if not status:
                    raise PushError("no response to C-STORE (connection lost or timed out)")
                code = int(status.Status)
                if code != 0x0000:
                    raise PushError(f"C-STORE status 0x{code:04X} for {ds.SOPInstanceUID}")
        finally:
            if assoc.is_established:
                assoc.release()
            elif not assoc.is_released:
                assoc.abort()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                bag_id, datasets = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._deliver(bag_id, datasets)
            finally:
                self.q.task_done()

    def _deliver(self, bag_id: str, datasets: list[Dataset]) -> None:
        delay = self.retry_delay_s
        for attempt in range(1, self.retries + 2):
            try:
                self._push(datasets)
                with self.stats.lock:
                    self.stats.pushed += 1
                return
            except Exception as e:  # any failure of the network or the peer: count, retry, go on
                msg = f"{type(e).__name__}: {e}" if not isinstance(e, PushError) else str(e)
                with self.stats.lock:
                    self.stats.attempts_failed += 1
                    self.stats.last_error = msg
                if attempt <= self.retries:
                    log.info("C-STORE of bag %s to %s failed (%s); retry %d/%d in %.1fs",
                             bag_id, self.address, msg, attempt, self.retries, delay)
                    if self.stop.wait(delay):
                        break
                    delay *= 2
        with self.stats.lock:
            self.stats.failed += 1
        log.warning("C-STORE of bag %s to %s failed after %d attempts: %s", bag_id, self.address,
                    self.retries + 1, self.stats.last_error)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
