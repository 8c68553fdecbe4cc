"""capture: URLs through OpenCV against a real video file and a real MJPEG-over-HTTP server that
drops its client mid-stream."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

from drivers.capture import CaptureSource, capture_target, to_grey16
from drivers.registry import open_frame_source
from tests.conftest import wait_for


def frame_img(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    img = np.full((h, w, 3), 230, np.uint8)
    cv2.rectangle(img, (5 + i % 20, 10), (30 + i % 20, 35), (40, 40, 40), -1)
    return img


class Taker:
    def __init__(self, src):
        self.src = src
        self.stop = threading.Event()
        self.frames: list = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for f in self.src.frames(self.stop):
            self.frames.append(f)
        self.done.set()

    def close(self):
        self.stop.set()
        self.src.close()
        self.thread.join(20)
        assert not self.thread.is_alive()


def test_url_forms():
    assert capture_target("capture:///dev/video0") == "/dev/video0"
    assert capture_target("capture://2") == 2
    assert capture_target("capture:///data/scan.mp4") == "/data/scan.mp4"
    assert capture_target("capture:http://10.0.0.5/stream.mjpg") == "http://10.0.0.5/stream.mjpg"
    assert capture_target("capture:rtsp://cam/live") == "rtsp://cam/live"
    with pytest.raises(ValueError):
        capture_target("capture:")


def test_grey_conversion():
    g = to_grey16(np.dstack([np.full((2, 2), v, np.uint8) for v in (255, 255, 255)]))
    assert g.dtype == np.uint16 and g.max() == 65535


def test_a_video_file_gives_single_energy_frames_then_ends(tmp_path):
    path = tmp_path / "display.avi"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert wr.isOpened()
    for i in range(12):
        wr.write(frame_img(i))
    wr.release()
    t = Taker(open_frame_source(f"capture://{path}"))
    try:
        assert t.done.wait(20)
        assert len(t.frames) == 12
        f = t.frames[0]
        assert f.high.dtype == np.uint16 and f.high.shape == (48, 64) and f.low is None
        assert f.meta["single_energy"] and "not raw transmission" in f.meta["note"]
        assert f.high[0, 0] > 50000 and f.high[20, 15] < 20000  # air is bright, the box dark
        assert t.src.health().state == "ended" and t.src.health().errors == 0
    finally:
        t.close()
    looped = Taker(CaptureSource(f"capture://{path}", loop=True))
    try:
        wait_for(lambda: len(looped.frames) > 30, what="a looping file")
    finally:
        looped.close()


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames, the way IP cameras and scanner displays stream.

    The first client gets `first` frames and then the connection is cut; later clients get frames
    until the server stops.
    """

    def __init__(self, first: int = 5):
        self.first = first
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.clients = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.clients += 1
            threading.Thread(target=self._client, args=(c, self.clients), daemon=True).start()

    def _client(self, c: socket.socket, n: int):
        try:
            c.settimeout(5)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d:
                    return
                buf += d
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
            i = 0
            while not self.stop.is_set() and (n > 1 or i < self.first):
                ok, jpg = cv2.imencode(".jpg", frame_img(i))
                c.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                          + jpg.tobytes() + b"\r\n")
                i += 1
                time.sleep(0.03)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def test_http_mjpeg_stream_that_drops_is_reopened():
    srv = MjpegServer(first=5)
    t = Taker(CaptureSource(f"capture:http://127.0.0.1:{srv.port}/stream.mjpg", backoff_base_s=0.05,
                            backoff_cap_s=0.2, read_timeout_s=2, open_timeout_s=5))
    try:
        wait_for(lambda: len(t.frames) >= 10 and srv.clients >= 2, timeout=30, what="frames across a drop")
        h = t.src.health()
        assert h.reconnects >= 1 and h.errors >= 1 and "dropped" in h.last_error
        assert all(f.high.shape == (48, 64) for f in t.frames)
    finally:
        t.close()
        srv.close()


def test_unreachable_stream_is_counted_not_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    t = Taker(CaptureSource(f"capture:http://127.0.0.1:{port}/x.mjpg", backoff_base_s=0.05, backoff_cap_s=0.1,
                            open_timeout_s=1))
    try:
        wait_for(lambda: t.src.health().errors >= 2, timeout=20, what="repeated open failures")
        h = t.src.health()
        assert not h.connected and h.state == "disconnected" and t.frames == []
    finally:
        t.close()


def test_an_ended_recording_is_not_replayed_when_frames_is_called_again(tmp_path):
    path = tmp_path / "d.avi"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        wr.write(frame_img(i))
    wr.release()
    src = CaptureSource(f"capture://{path}")
    assert len(list(src.frames(threading.Event()))) == 3
    stop = threading.Event()
    threading.Timer(0.6, stop.set).start()
    assert list(src.frames(stop)) == []  # as the agent's pump would call it again
