"""`capture:` URLs: a frame grabber, a video file or an HTTP/RTSP stream, through OpenCV.

Some scanners give nothing but their operator display: a video output into a frame grabber, or
an MJPEG/RTSP stream. That is an 8-bit picture of the bag as the operator sees it, not the
detector's 16-bit dual-energy transmission, so each frame becomes a single-energy XrayFrame
(grey, scaled to 16 bits) with a note in meta saying exactly that; detections on it are as good
as the display allows.

  capture:///dev/video0          a V4L2 device (frame grabber, USB capture stick)
  capture://0                    the same by index
  capture:///path/file.mp4       a recording (ends at its end unless loop=True)
  capture:http://host/x.mjpg     an MJPEG-over-HTTP stream (FFmpeg backend)
  capture:rtsp://host/stream     an RTSP stream (FFmpeg backend)

A stream or device that drops is reopened with exponential backoff and jitter; no frame for
`stall_s` is counted as a stall. OpenCV's FFmpeg backend takes open/read timeouts, so a dead
server cannot hang the reader forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from drivers.base import HealthMixin, XrayFrame, backoff_delays
from drivers.registry import register

log = logging.getLogger("zastava.drivers.capture")

NOTE = "operator display frame from a video source: 8-bit grey scaled to 16 bits, single energy, not raw transmission"


def capture_target(url: str) -> str | int:
    """The string (or device index) cv2.VideoCapture takes for one of our capture: URLs."""
    if not url.lower().startswith("capture:"):
        raise ValueError(f"{url}: not a capture: URL")
    rest = url[len("capture:"):]
    if rest.startswith("//") and not rest.startswith("///"):
        rest = rest[2:]  # capture://0
        if rest.isdigit():
            return int(rest)
        raise ValueError(f"{url}: use capture:///path, capture://N, capture:http://... or capture:rtsp://...")
    if rest.startswith("///"):
        rest = rest[2:]
    if not rest:
        raise ValueError(f"{url}: no device, file or stream named")
    return rest


def is_stream(target: str | int) -> bool:
    return isinstance(target, str) and "://" in target


def is_device(target: str | int) -> bool:
    return isinstance(target, int) or (isinstance(target, str) and target.startswith("/dev/"))


def to_grey16(frame: np.ndarray) -> np.ndarray:
    """A decoded video frame -> uint16 grey (65535 = white, as the display shows air)."""
    import cv2

    if frame.ndim == 3 and frame.shape[2] == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    elif frame.ndim == 3:
        frame = frame[..., 0]
    if frame.dtype == np.uint8:
        return frame.astype(np.uint16) * 257
    if frame.dtype == np.uint16:
        return np.ascontiguousarray(frame)
    raise ValueError(f"video frame of type {frame.dtype}")


class CaptureSource(HealthMixin):
    def __init__(self, url: str, *, loop: bool = False, max_fps: float | None = None, stall_s: float = 10.0,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 5.0, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 30.0):
        self.url = url
        self.target = capture_target(url)
        self.loop = loop
        self.min_interval = 1.0 / max_fps if max_fps else 0.0
        self.stall_s = stall_s
        self.open_timeout_ms = int(open_timeout_s * 1000)
        self.read_timeout_ms = int(read_timeout_s * 1000)
        self.backoff = (backoff_base_s, backoff_cap_s)
        self._init_health(url, "xray")
        self._cap = None
        self._closed = threading.Event()
        self._ended = False
        self.counters = {"frames": 0, "skipped": 0, "opens": 0, "drops": 0}

    def _open(self):
        import cv2

        if is_device(self.target):
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.open_timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.read_timeout_ms]
            cap = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise OSError(f"OpenCV cannot open {self.target!r}")
        return cap

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def frames(self, stop: threading.Event) -> Iterator[XrayFrame]:
        if self._ended:
            # a recording that ended stays ended: a caller that restarts a finished iterator (the
            # agent's pump does) must not see the file again from the start
            while not stop.wait(0.5) and not self._closed.is_set():
                pass
            return
        delays = backoff_delays(*self.backoff)
        opened_before = False
        try:
            while not stop.is_set() and not self._closed.is_set():
                try:
                    self._cap = self._open()
                except Exception as e:  # OSError or cv2.error: every open failure means 'retry later'
                    self._error(f"cannot open {self.target}: {e}", state="disconnected")
                    self._set_state("disconnected", False)
                    if stop.wait(next(delays)):
                        return
                    continue
                self.counters["opens"] += 1
                if opened_before:
                    self._count("reconnects")
                opened_before = True
                self._set_state("ok", True)
                got_any = yield from self._read(stop)
                self._release()
                if stop.is_set() or self._closed.is_set():
                    return
                if not is_stream(self.target) and not is_device(self.target):
                    if self.loop and got_any:
                        continue
                    log.info("%s: end of file", self.url)
                    self._ended = True
                    self._set_state("ended", False)
                    return
                self.counters["drops"] += 1
                self._error(f"stream {self.target} dropped", state="disconnected")
                self._set_state("disconnected", False)
                if got_any:
                    delays = backoff_delays(*self.backoff)
                if stop.wait(next(delays)):
                    return
        finally:
            self._release()

    def _read(self, stop: threading.Event):
        """Yields frames until the source fails or ends; returns whether any frame came."""
        got_any = False
        last_frame = time.monotonic()
        last_yield = 0.0
        n = 0
        while not stop.is_set() and not self._closed.is_set():
            cap = self._cap
            if cap is None:
                return got_any
            t_read = time.monotonic()
            ok, img = cap.read()
            now = time.monotonic()
            if not ok or img is None:
                # a read that failed only after (about) the read timeout: the source went silent
                # rather than closing; that is a stall, reported apart from a clean drop
                if (now - t_read) * 1000 >= 0.9 * self.read_timeout_ms or now - last_frame > self.stall_s:
                    self._count("stalls")
                    self._error(f"no frame from {self.target} for {now - last_frame:.1f}s", state="stalled")
                return got_any
            got_any = True
            last_frame = now
            n += 1
            if self.min_interval and now - last_yield < self.min_interval:
                self.counters["skipped"] += 1
                continue
            last_yield = now
            try:
                grey = to_grey16(img)
            except ValueError as e:
                self._error(str(e))
                continue
            self.counters["frames"] += 1
            self._got_data()
            yield XrayFrame(high=grey, low=None, source=self.url, t=time.time(), bag_id=None,
                            meta={"note": NOTE, "single_energy": True, "frame_no": n, "format": "video"})
        return got_any

    def stats(self) -> dict:
        return dict(self.counters)

    def close(self) -> None:
        self._closed.set()


@register("xray", "capture")
def open_capture(url: str, **opts) -> CaptureSource:
    return CaptureSource(url, **opts)
