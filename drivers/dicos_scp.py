"""`dicos-scp://127.0.0.1:11112?ae=ZASTAVA`: receive DICOS/DICOM DX images pushed by C-STORE.

A pynetdicom storage SCP. It accepts the DICOS storage classes (pynetdicom does not know the
1.2.840.10008.5.1.4.1.1.501.* UIDs, so they are registered here) and DICOM DX, in the transfer
syntaxes this box can decode: implicit/explicit VR little endian, deflated, RLE and JPEG
Lossless (pylibjpeg). Anything else is refused the DICOM way:
  * an unknown SOP class or transfer syntax: the presentation context is rejected at association;
  * a DICOS object that is not a DX image (CT, TDR, ...) or cannot be decoded: C-STORE status
    0xC000 (cannot understand) with the reason in Error Comment;
  * a dataset over the size cap: C-STORE status 0xA700 (out of resources), or an A-ABORT while
    it is still arriving, so that no dataset ever takes more memory than the cap;
  * the frame queue full (the agent is behind): 0xA700 too, so the scanner retries later
    rather than us dropping an image it thinks we have.
The two energies of a bag arrive as two C-STOREs of one series; they are paired by
(study, series) and come out of frames() as one XrayFrame, like every other source's.

Success means "we have it", so with an inbox (`?inbox=/path`, or the `inbox` option; the agent
always gives one, under its storage dir) each image is written there and fsynced before the
success status goes back, and frames come from that folder through the spool driver (its
ledger, pairing and bad/ folder): an agent killed with images acknowledged but not yet
screened screens them when it starts again, and a bag the consumer could not screen is set
aside in the inbox's bad/ with the reason. Screened images are deleted from the inbox (the
agent keeps its own raw frame and TDR). Without an inbox, received images wait in memory.

Binds to 127.0.0.1 unless the URL names another address (secure by default).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from common.durable import write_atomic
from drivers.base import HealthMixin, XrayFrame, backoff_delays
from drivers.dicos import (
    DICOS_CLASSES,
    DX_CLASSES,
    DicosImage,
    DicosRefused,
    EnergyPairer,
    frame_from_pair,
    from_dataset,
)
from drivers.registry import register
from drivers.url_options import dicos_scp_options

log = logging.getLogger("zastava.drivers.dicos_scp")

TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1, the one DICOS toolkits write
]

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000

_registered = threading.Lock()
_done = False


def register_dicos_classes() -> None:
    """Make pynetdicom know the DICOS storage UIDs (once per process)."""
    global _done
    with _registered:
        if _done:
            return
        from pynetdicom import sop_class
        from pynetdicom.service_class import StorageServiceClass

        for uid, (keyword, _name) in DICOS_CLASSES.items():
            if not hasattr(sop_class, keyword):
                sop_class.register_uid(uid, keyword, StorageServiceClass)
        _done = True


def parse_url(url: str) -> tuple[str, int, str]:
    """host, port and AE title of a dicos-scp URL (drivers/url_options.py)."""
    return dicos_scp_options(url)[:3]


class DicosScpSource(HealthMixin):
    """The storage SCP starts listening in __init__ (a scanner may push before frames() runs)."""

    def __init__(self, url: str, *, max_pdu: int = 65536, max_dataset_mb: float = 256, pair_timeout_s: float = 10.0,
                 queue_size: int = 32, max_associations: int = 4, require_called_aet: bool = True,
                 network_timeout_s: float = 30.0, inbox: str | Path | None = None):
        from pynetdicom import AE, evt

        register_dicos_classes()
        self.url = url
        self.host, port, self.ae_title = parse_url(url)
        inbox = dicos_scp_options(url)[3] or inbox
        self.inbox = Path(inbox) if inbox else None
        self._spool = None
        if self.inbox is None:
            log.warning("%s: no inbox: images acknowledged to the scanner wait in memory, and a crash loses "
                        "those not yet screened (give ?inbox=/path; the agent always does)", url)
        else:
            from drivers.spool import SpoolSource

            self.inbox.mkdir(parents=True, exist_ok=True)
            # our own writes are atomic (a dotfile renamed when whole): no settling time needed
            self._spool = SpoolSource(f"spool://{quote(str(self.inbox))}", poll_s=0.1, settle_s=0.0,
                                      pair_timeout_s=pair_timeout_s, after="delete", max_pending=queue_size * 2)
        self.max_dataset = int(max_dataset_mb * (1 << 20))
        self.queue_size = queue_size
        self._init_health(url, "xray")
        self.counters = {"associations": 0, "stored": 0, "refused": 0, "too_big": 0, "busy": 0, "aborted": 0,
                         "frames": 0, "pairs": 0, "singles": 0}
        self.pairer: EnergyPairer[DicosImage] = EnergyPairer(pair_timeout_s, max_pending=queue_size * 2)
        self._lock = threading.Lock()
        self._frames: collections.deque[XrayFrame] = collections.deque()
        self._ready = threading.Condition(self._lock)
        self._rx_bytes: dict[int, int] = {}

        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = max_pdu
        ae.maximum_associations = max_associations
        ae.require_called_aet = require_called_aet
        ae.network_timeout = network_timeout_s
        ae.acse_timeout = network_timeout_s
        ae.dimse_timeout = network_timeout_s
        # all DICOS classes are accepted at association so that a scanner that also pushes CT
        # or TDR objects gets a per-object C-STORE refusal with a reason, not a failed association
        for uid in {**DX_CLASSES, **DICOS_CLASSES}:
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        ae.add_supported_context("1.2.840.10008.1.1")  # Verification: scanners C-ECHO before pushing
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_PDU_RECV, self._on_pdu),
                    (evt.EVT_ESTABLISHED, self._on_established), (evt.EVT_CONN_CLOSE, self._on_close)]
        self.ae = ae
        self._handlers = handlers
        self._want_port = port
        self.server = None
        self.port: int | None = None
        self.urls: dict[str, str] = {}
        self._closed = threading.Event()
        self._listen()

    def _listen(self) -> bool:
        """Bind and serve; on failure (the port still held by an old process) say so and let
        frames() retry with backoff rather than fail the agent's start."""
        try:
            server = self.ae.start_server((self.host, self._want_port), block=False, evt_handlers=self._handlers)
        except OSError as e:
            self._error(f"cannot listen on {self.host}:{self._want_port}: {e}", state="disconnected")
            self._set_state("disconnected", False)
            log.error("C-STORE receiver cannot listen on %s:%d: %s", self.host, self._want_port, e)
            return False
        self.server = server
        self.port = server.server_address[1]
        self.urls = {"scp": f"dicos-scp://{self.host}:{self.port}?ae={self.ae_title}"}
        self._set_state("listening", True)
        log.info("C-STORE receiver %s listening on %s:%d", self.ae_title, self.host, self.port)
        return True

    def _inc(self, name: str) -> None:
        with self._lock:  # several associations run at once, each in its own thread
            self.counters[name] += 1

    # -- pynetdicom event handlers (run in the association's threads) ---------------------------
    def _on_established(self, event) -> None:
        self._inc("associations")

    def _on_close(self, event) -> None:
        with self._lock:
            self._rx_bytes.pop(id(event.assoc), None)

    def _on_pdu(self, event) -> None:
        """Counts P-DATA bytes of the dataset being received; aborts past the cap."""
        pdu = event.pdu
        if type(pdu).__name__ != "P_DATA_TF":
            return
        n = sum(len(item.data or b"") for item in getattr(pdu, "presentation_data_value_items", []))
        key = id(event.assoc)
        with self._lock:
            total = self._rx_bytes.get(key, 0) + n
            self._rx_bytes[key] = total
        if total > self.max_dataset + (1 << 20):  # cap + room for the command set
            self._inc("aborted")
            self._error(f"dataset from {_peer(event)} over {self.max_dataset} bytes while arriving: aborted")
            log.warning("C-STORE from %s exceeds %d bytes: association aborted", _peer(event), self.max_dataset)
            event.assoc.abort(block=False)

    def _on_store(self, event):
        from pydicom.dataset import Dataset

        with self._lock:
            self._rx_bytes[id(event.assoc)] = 0  # the next dataset starts counting afresh
        size = len(event.request.DataSet.getvalue()) if event.request.DataSet is not None else 0
        if size > self.max_dataset:
            self._inc("too_big")
            self._error(f"dataset of {size} bytes from {_peer(event)} over the {self.max_dataset}-byte cap")
            return _status(STATUS_OUT_OF_RESOURCES, f"dataset over {self.max_dataset} bytes")
        busy = self._backlog() >= self.queue_size
        if busy:
            self._inc("busy")
            self._count("drops")
            return _status(STATUS_OUT_OF_RESOURCES, "receiver busy: retry later")
        try:
            ds: Dataset = event.dataset
            ds.file_meta = event.file_meta
            img = from_dataset(ds)
        except DicosRefused as e:
            return self._refuse(event, e.reason)
        except Exception as e:  # a dataset pydicom cannot even parse
            return self._refuse(event, f"unreadable dataset: {type(e).__name__}: {e}")
        if self._spool is not None:
            try:
                self._keep(event, img)
            except OSError as e:  # we do not have it: the scanner must keep it and try again
                self._inc("busy")
                self._error(f"cannot write to the inbox {self.inbox}: {e}")
                log.error("C-STORE from %s: cannot write to the inbox %s: %s", _peer(event), self.inbox, e)
                return _status(STATUS_OUT_OF_RESOURCES, "cannot store the image: retry later")
            self._inc("stored")
            return STATUS_SUCCESS
        self._inc("stored")
        with self._lock:
            pairs = self.pairer.add(img.pair_key, img.energy, img, time.monotonic(), rank=img.kvp)
            self._release(pairs)
        return STATUS_SUCCESS

    def _refuse(self, event, reason: str):
        self._inc("refused")
        self._error(f"refused C-STORE from {_peer(event)}: {reason}")
        log.warning("C-STORE from %s refused: %s", _peer(event), reason)
        return _status(STATUS_CANNOT_UNDERSTAND, reason)

    def _release(self, pairs) -> None:
        """Called with the lock held."""
        for pair in pairs:
            frame = frame_from_pair(pair, self.url, time.time())
            self.counters["pairs" if pair.high is not None and pair.low is not None else "singles"] += 1
            self._frames.append(frame)
        if pairs:
            self._ready.notify_all()

    def _backlog(self) -> int:
        """Images received and not yet screened (len of a deque needs no lock)."""
        if self.inbox is None:
            return len(self._frames)
        try:
            return sum(1 for e in os.scandir(self.inbox) if not e.name.startswith(".") and e.is_file())
        except OSError:
            return 0

    def _keep(self, event, img: DicosImage) -> None:
        """The image as received (its own transfer syntax, no re-encoding), made durable in the
        inbox before the scanner hears success: written to a dotfile, fsynced, renamed, and the
        folder fsynced. Named by its SOP instance UID, so a scanner's retry of the same image
        replaces it rather than making a second bag."""
        name = "".join(c if c.isalnum() or c in ".-" else "_" for c in (img.sop_instance or "")) or f"{time.time_ns()}"
        write_atomic(self.inbox / f"{name}.dcs", event.encoded_dataset(include_meta=True), sync_dir=True)

    # -- the FrameSource interface --------------------------------------------------------------
    def frames(self, stop: threading.Event) -> Iterator[XrayFrame]:
        if self._spool is not None:
            yield from self._inbox_frames(stop)
            return
        delays = backoff_delays(1.0, 30.0)
        while not stop.is_set() and not self._closed.is_set():
            if self.server is None and not self._listen():
                self._count("reconnects")
                if stop.wait(next(delays)):
                    return
                continue
            with self._lock:
                self._release(self.pairer.expire(time.monotonic()))
                if not self._frames:
                    self._ready.wait(0.2)
                frame = self._frames.popleft() if self._frames else None
            if frame is not None:
                self._inc("frames")
                self._got_data()
                yield frame

    def _inbox_frames(self, stop: threading.Event) -> Iterator[XrayFrame]:
        """The inbox's frames as the spool driver reads them, known by our URL, and the consumer's
        word on each passed back to the spool (a failure sets the bag aside: see pipeline.pump)."""
        gen = self._spool.frames(stop)
        failure = None
        try:
            while not self._closed.is_set():
                try:
                    frame = gen.send(failure)
                except StopIteration:
                    return
                frame.source = self.url
                self._inc("frames")
                self._inc("pairs" if frame.low is not None else "singles")
                self._got_data()
                failure = yield frame
        finally:
            gen.close()

    def stats(self) -> dict:
        queued = self._backlog()  # a folder listing in inbox mode: not under the associations' lock
        with self._lock:
            out = dict(self.counters, queued=queued, waiting_for_partner=len(self.pairer.pending))
        if self._spool is not None:
            out.update({f"inbox_{k}": v for k, v in self._spool.stats().items()})
        return out

    def close(self) -> None:
        self._closed.set()
        if self._spool is not None:
            self._spool.close()
        with self._lock:
            server, self.server = self.server, None
        if server is not None:  # idempotent: the lane and a test may both close it
            server.shutdown()
        self._set_state("closed", False)


def _status(code: int, comment: str):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]  # LO: at most 64 characters
    return ds


def _peer(event) -> str:
    try:
        r = event.assoc.requestor
        return f"{r.ae_title}@{r.address}:{r.port}"
    except AttributeError:
        return "?"


@register("xray", "dicos-scp")
def open_scp(url: str, **opts) -> DicosScpSource:
    return DicosScpSource(url, **opts)
