"""Serve a SigMF recording over rtl_tcp: the border's radio brought back to the lab.

Any SigMF recording that the `sigmf` package reads (cu8, ci8, ci16_le, cf32_le and the rest;
ours or any tool's) is played through the same RtlTcpServer as the simulator, so every rtl_tcp
client (ours, GQRX, SDR++) can listen to it. A recording fixes its own sample rate and centre:
a client asking for another rate keeps the recording's (logged: resampling would invent
data), and a client retuning within the recorded band gets the band shifted accordingly (what
lies outside the recording is silence). The recording loops at its end.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path

import numpy as np

from hw_sim.clock import SimClock
from hw_sim.rf.band import oscillator
from hw_sim.rf.rtltcp_server import RtlTcpServer

log = logging.getLogger("zastava.sim.replay")


class SigMFSource:
    """Plays a recording with the interface RtlTcpServer expects of a Band."""

    def __init__(self, meta_path: Path | str, loop: bool = True):
        from sigmf import sigmffile

        meta_path = Path(meta_path)
        if meta_path.suffix == ".sigmf-data":
            meta_path = meta_path.with_suffix(".sigmf-meta")
        self.rec = sigmffile.fromfile(str(meta_path), skip_checksum=True)
        self.path = meta_path
        self.rec_rate = float(self.rec.get_global_field("core:sample_rate"))
        caps = self.rec.get_captures()
        self.rec_center = float(caps[0].get("core:frequency", 0.0)) if caps else 0.0
        self.length = int(self.rec.sample_count)
        if self.length <= 0:
            raise ValueError(f"{meta_path}: the recording holds no samples")
        self.loop = loop
        self.rate_hz = self.rec_rate
        self.center_hz = self.rec_center
        self.gain_db = 0.0
        self.correction_ppm = 0.0
        self.t = 0.0
        self.pos = 0
        self.loops = 0
        self.refused_rates = 0
        self._phase = 0.0

    def retune(self, center_hz: float | None = None, rate_hz: float | None = None) -> None:
        if rate_hz is not None and float(rate_hz) != self.rec_rate:
            self.refused_rates += 1
            log.warning("%s: recorded at %.0f S/s; a client asked for %.0f, serving the recording's rate",
                        self.path.name, self.rec_rate, rate_hz)
        if center_hz is not None:
            if abs(center_hz - self.rec_center) >= self.rec_rate / 2:
                log.warning("%s: %.6f MHz lies outside the recording (%.6f MHz +- %.3f MHz): silence",
                            self.path.name, center_hz / 1e6, self.rec_center / 1e6, self.rec_rate / 2e6)
            self.center_hz = float(center_hz)

    def _take(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.complex64)
        got = 0
        while got < n:
            if self.pos >= self.length:
                if not self.loop:
                    break
                self.pos = 0
                self.loops += 1
            k = min(n - got, self.length - self.pos)
            x = np.asarray(self.rec.read_samples(self.pos, k))
            if x.ndim == 2:  # multi-channel recordings: the first channel is the receiver's
                x = x[:, 0]
            out[got:got + k] = x
            got += k
            self.pos += k
        return out

    def read(self, n: int) -> np.ndarray:
        x = self._take(n)
        shift = self.rec_center - self.center_hz
        if abs(shift) >= self.rec_rate / 2:
            x[:] = 0
        elif shift:
            x *= oscillator(self._phase, shift, self.rec_rate, n)
            self._phase = (self._phase + 2 * math.pi * shift * n / self.rec_rate) % (2 * math.pi)
        if self.gain_db:
            x *= np.float32(10 ** (self.gain_db / 20))
        self.t += n / self.rec_rate
        return x


def serve_sigmf(meta_path: Path | str, port: int = 1234, speed: float = 1.0, stop: threading.Event | None = None,
                host: str = "127.0.0.1", ready: bool = True) -> int:
    """Serve until `stop` is set; prints the JSON ready line (as `zastava sim run` does). Returns 0."""
    stop = stop or threading.Event()
    src = SigMFSource(meta_path)
    server = RtlTcpServer(src, host=host, port=port, clock=SimClock(speed), stop=stop,
                          name=f"replay:{Path(meta_path).name}").start()
    if ready:
        print(json.dumps({"ready": True, "devices": {"replay": {"iq": server.url}},
                          "recording": {"center_hz": src.rec_center, "rate_hz": src.rec_rate,
                                        "samples": src.length}}), flush=True)
    try:
        stop.wait()
    finally:
        server.close()
    return 0
