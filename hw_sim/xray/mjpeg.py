"""The scanner's live operator display as MJPEG over HTTP (multipart/x-mixed-replace).

Many scanners and frame grabbers offer their display as an MJPEG stream; OpenCV's VideoCapture
(FFmpeg backend) opens `http://host:port/stream.mjpg`, and so does any browser. The stream
repeats the current picture at `fps` so that a client joining between bags gets frames at once.
GET /snapshot.jpg gives the current picture alone. Built on the standard library's
ThreadingHTTPServer: one thread per client, bounded by the few consoles that watch a lane.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

log = logging.getLogger("zastava.sim.mjpeg")
BOUNDARY = "zastavaframe"


class FrameHub:
    """The latest JPEG and a condition that wakes every streaming client when it changes."""

    def __init__(self, quality: int = 85):
        self.quality = quality
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.closed = False
        self.clients = 0
        self.frames_sent = 0

    def publish(self, bgr: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        with self.cond:
            self.jpeg = buf.tobytes()
            self.seq += 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt: str, *args) -> None:  # route to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:  # the name http.server dispatches to
        path = self.path.split("?", 1)[0]
        hub = self.server.hub
        if path in ("/stream.mjpg", "/stream", "/video"):
            self._stream(hub)
        elif path in ("/snapshot.jpg", "/snapshot"):
            with hub.cond:
                jpeg = hub.jpeg
            if jpeg is None:
                self.send_error(503, "no image yet")
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(jpeg)
        else:
            self.send_error(404, "try /stream.mjpg or /snapshot.jpg")

    def _stream(self, hub: FrameHub) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        self.end_headers()
        period = 1.0 / self.server.fps
        with hub.cond:
            hub.clients += 1
        try:
            while True:
                with hub.cond:
                    if hub.jpeg is None and not hub.closed:
                        hub.cond.wait(period)
                    if hub.closed:
                        return
                    jpeg = hub.jpeg
                if jpeg is not None:
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                     f"Content-Length: {len(jpeg)}\r\n\r\n".encode("ascii"))
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()
                    with hub.cond:
                        hub.frames_sent += 1
                        seq = hub.seq
                        # wait for a new bag, or re-send the current one after a period
                        hub.cond.wait_for(lambda s=seq: hub.seq != s or hub.closed, timeout=period)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("MJPEG client %s went away", self.address_string())
        finally:
            with hub.cond:
                hub.clients -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], hub: FrameHub, fps: float):
        self.hub = hub
        self.fps = fps
        super().__init__(addr, _Handler)


class MjpegServer:
    """Serve `hub` on host:port (port 0 = ephemeral) in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fps: float = 5.0, quality: int = 85):
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.hub = FrameHub(quality)
        self.httpd = _Server((host, port), self.hub, fps)
        self.host, self.port = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="sim-mjpeg", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/stream.mjpg"

    def publish(self, bgr: np.ndarray) -> None:
        self.hub.publish(bgr)

    def close(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
