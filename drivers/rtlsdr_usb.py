"""`rtlsdr://0` or `rtlsdr://serial=00000001?gain=30&ppm=12`: a USB RTL-SDR through pyrtlsdr.

pyrtlsdr is a ctypes wrapper: it needs the C library librtlsdr at run time. Two ways to get it:
  - Debian/Ubuntu: `apt install librtlsdr0` (the udev rule in systemd/60-zastava-rtlsdr.rules
    and the blacklist of the DVB-T kernel driver, zastava-rtlsdr-blacklist.conf, come with us);
  - pip: `pip install pyrtlsdrlib`, a wheel that bundles librtlsdr for pyrtlsdr to find.
When the library or the dongle is missing, blocks() says exactly that in health().last_error
(state "no_library" / "no_device") and keeps retrying with backoff, so plugging the dongle in
later works without restarting the agent.

Same contract as drivers/rtltcp.py (IQBlocks stamped with time, centre, rate, gain, hop; settle
samples dropped after a retune). Reads are librtlsdr's synchronous reads, which have no
timeout: a dongle that stops delivering without a USB error is not detected as stalled here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

from drivers.base import HealthMixin, IQBlock, backoff_delays
from drivers.registry import register
from drivers.rtltcp_protocol import cu8_to_complex64
from drivers.scanplan import ScanPlan, from_options

log = logging.getLogger("zastava.driver.rtlsdr")

LIBRARY_MISSING = ("librtlsdr (the C library pyrtlsdr needs) is not installed: on Debian/Ubuntu "
                   "`apt install librtlsdr0`, or `pip install pyrtlsdrlib` for a bundled copy")


def check_library() -> str | None:
    """None when pyrtlsdr can load librtlsdr, else the message to show the operator."""
    try:
        import rtlsdr  # noqa: F401
    except (ImportError, OSError) as e:  # missing, or a broken / wrong-architecture library
        return f"{LIBRARY_MISSING} ({e})"
    return None


def parse_url(url: str) -> tuple[int | None, str | None, dict[str, str]]:
    """(device index, serial, options) from rtlsdr://0, rtlsdr://serial=XYZ or rtlsdr://?serial=XYZ."""
    u = urlsplit(url)
    if u.scheme.lower() != "rtlsdr":
        raise ValueError(f"not an rtlsdr:// URL: {url}")
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    known = {"gain", "ppm", "bias_tee", "serial", "settle_ms"}
    if set(q) - known:
        raise ValueError(f"unknown rtlsdr:// option(s) {', '.join(sorted(set(q) - known))}")
    loc = u.netloc
    serial = q.pop("serial", None)
    if loc.startswith("serial="):
        serial = loc.split("=", 1)[1]
        return None, serial, q
    if serial is not None:
        return None, serial, q
    if loc == "":
        return 0, None, q
    if not loc.isdigit():
        raise ValueError(f"rtlsdr:// needs a device index or serial=..., got {loc!r}")
    return int(loc), None, q


@register("iq", "rtlsdr")
class RtlSdrSource(HealthMixin):
    """An IQ source (drivers.base.IQSource) reading a local RTL-SDR dongle."""

    def __init__(self, url: str, *, center_hz: float | None = None, rate_hz: float = 2.4e6,
                 gain_db: float | None = None, scan=None, block_samples: int = 262144, stall_s: float = 5.0,
                 backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0):
        self.url = url
        self.index, self.serial, q = parse_url(url)
        self.plan: ScanPlan = from_options(center_hz, rate_hz, scan)
        if gain_db is None and q.get("gain", "auto") != "auto":
            gain_db = float(q["gain"])
        self.gain_db = gain_db
        self.ppm = int(q.get("ppm", 0))
        self.bias_tee = q.get("bias_tee", "0") == "1"
        self.settle_s = float(q.get("settle_ms", 50)) / 1000.0
        self.block_samples = int(block_samples)
        self.stall_s = stall_s
        self.backoff = (backoff_base_s, backoff_cap_s)
        self._closed = threading.Event()
        self._sdr = None
        self._init_health(url, "iq")

    def _open(self):
        from rtlsdr import RtlSdr

        sdr = RtlSdr(serial_number=self.serial) if self.serial else RtlSdr(device_index=self.index)
        if self.ppm:
            sdr.freq_correction = self.ppm
        sdr.gain = "auto" if self.gain_db is None else self.gain_db
        if self.bias_tee:
            sdr.set_bias_tee(True)
        return sdr

    def close(self) -> None:
        self._closed.set()

    def blocks(self, stop: threading.Event) -> Iterator[IQBlock]:
        delays = backoff_delays(*self.backoff)
        seq = 0
        first = True
        while not (stop.is_set() or self._closed.is_set()):
            if not first:
                self._count("reconnects")
                if stop.wait(next(delays)) or self._closed.is_set():
                    break
            first = False
            missing = check_library()
            if missing:
                self._error(missing, state="no_library")
                log.error("%s: %s", self.url, missing)
                continue
            try:
                self._sdr = self._open()
            except Exception as e:  # pyrtlsdr raises LibUSBError/IOError/OSError variously
                who = f"serial {self.serial}" if self.serial else f"index {self.index}"
                msg = (f"no RTL-SDR dongle at {who} ({e}): is it plugged in, is the DVB-T driver "
                       "blacklisted (systemd/zastava-rtlsdr-blacklist.conf) and the udev rule installed?")
                self._error(msg, state="no_device")
                log.error("%s: %s", self.url, msg)
                continue
            try:
                for blk in self._session(stop, seq):
                    seq = blk.seq + 1
                    delays = backoff_delays(*self.backoff)
                    yield blk
            finally:
                try:
                    self._sdr.close()
                except Exception:  # a dongle unplugged mid-read may fail to close; nothing to do
                    log.debug("%s: close after error failed", self.url)
                self._sdr = None
        self._set_state("closed", connected=False)

    def _session(self, stop: threading.Event, seq: int) -> Iterator[IQBlock]:
        sdr = self._sdr
        hops = self.plan.cycle()
        prev = None
        try:
            while not (stop.is_set() or self._closed.is_set()):
                hop_i, hop = next(hops)
                if prev is None or hop != prev:
                    sdr.sample_rate = hop.rate_hz
                    sdr.center_freq = hop.center_hz
                    sdr.read_bytes(2 * max(512, int(hop.rate_hz * self.settle_s) // 256 * 256))  # settle
                prev = hop
                left = hop.dwell_samples
                self._set_state("ok", connected=True)
                while left is None or left > 0:
                    if stop.is_set() or self._closed.is_set():
                        return
                    n = self.block_samples if left is None else min(self.block_samples, left)
                    n = max(256, n // 256 * 256)  # librtlsdr reads in multiples of 512 bytes
                    raw = sdr.read_bytes(2 * n)
                    samples = cu8_to_complex64(raw)
                    t = time.time() - len(samples) / hop.rate_hz
                    self._got_data()
                    yield IQBlock(samples=samples, t=t, center_hz=hop.center_hz, rate_hz=hop.rate_hz,
                                  gain_db=self.gain_db, seq=seq, source=self.url, hop=hop_i)
                    seq += 1
                    if left is not None:
                        left -= len(samples)
        except Exception as e:  # USB unplug surfaces as LibUSBError/IOError from ctypes calls
            self._error(f"read failed: {e}", state="disconnected")
            log.warning("%s: read failed: %s", self.url, e)
