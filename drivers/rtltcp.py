"""`rtltcp://host:port?gain=30&ppm=12`: IQ from any rtl_tcp server, real (`rtl_tcp`) or hw_sim.

URL query options: gain (dB, or "auto" for the tuner's AGC; the gain_db argument wins when
given), ppm (crystal correction, signed), agc (1 = RTL2832 digital AGC), bias_tee (1 = on),
direct (0/1/2 direct sampling), settle_ms (samples dropped after each retune, default 50 ms).

The source connects, checks the "RTL0" greeting, sends its tuning, then yields complex64
IQBlocks. It never lets an exception out of blocks(): a refused connection, a wrong greeting,
a connection closed mid-block (short read) or no data for stall_s are logged, counted in
health(), and followed by a reconnect with exponential backoff and jitter.

Retunes and settle: rtl_tcp has no replies, so the client cannot know which byte was sampled
after the tuner moved. It drops settle_ms worth of samples after every retune, which covers the
R820T's PLL lock and what a real-time server has in flight; against a server streaming flat out
(simulator speed 0) older samples may still be queued in socket buffers, so scan at real speed.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import numpy as np

from drivers.base import HealthMixin, IQBlock, backoff_delays
from drivers.registry import register
from drivers.rtltcp_protocol import (
    GREETING_LEN,
    Cmd,
    Greeting,
    ProtocolError,
    cu8_to_complex64,
    pack_command,
    parse_greeting,
)
from drivers.scanplan import Hop, ScanPlan, from_options

log = logging.getLogger("zastava.driver.rtltcp")

DEFAULT_PORT = 1234


class StreamParser:
    """Turns the bytes of one rtl_tcp connection into its greeting and whole cu8 blocks.

    The reader asks `buffer()` where the next bytes go and reports `commit(n)`; the buffer is
    sized to exactly what the current step needs (the rest of the greeting, the rest of the
    settle skip, the rest of the block), so the socket is read straight into the block with no
    copy and an I/Q pair can never straddle two steps. `feed()` does the same from bytes
    (tests, replays).
    """

    def __init__(self, block_samples: int):
        self._greet = bytearray(GREETING_LEN)
        self._greet_fill = 0
        self.greeting: Greeting | None = None
        self.skip_bytes = 0
        self._scratch = bytearray(1 << 16)
        self._block = bytearray(0)
        self._fill = 0
        self.expect(block_samples)

    def expect(self, samples: int) -> int:
        """Set the size of the next block; returns how many bytes of a partial block were lost."""
        lost = self._fill
        nbytes = 2 * max(1, int(samples))
        if len(self._block) != nbytes:
            self._block = bytearray(nbytes)
        self._fill = 0
        return lost

    def skip(self, samples: int) -> None:
        self.skip_bytes += 2 * max(0, int(samples))

    @property
    def partial_bytes(self) -> int:
        return self._fill

    def buffer(self) -> memoryview:
        if self.greeting is None:
            return memoryview(self._greet)[self._greet_fill:]
        if self.skip_bytes:
            return memoryview(self._scratch)[: min(self.skip_bytes, len(self._scratch))]
        return memoryview(self._block)[self._fill:]

    def commit(self, n: int) -> np.ndarray | None:
        """Account for n bytes written into buffer(); returns a finished block, if any.

        Raises ProtocolError when the greeting is complete and is not rtl_tcp's.
        """
        if n <= 0:
            return None
        if self.greeting is None:
            self._greet_fill += n
            if self._greet_fill >= GREETING_LEN:
                self.greeting = parse_greeting(bytes(self._greet))
            return None
        if self.skip_bytes:
            self.skip_bytes -= n
            return None
        self._fill += n
        if self._fill >= len(self._block):
            self._fill = 0
            return cu8_to_complex64(self._block)
        return None

    def feed(self, data: bytes) -> list[np.ndarray]:
        out = []
        view = memoryview(data)
        while len(view):
            buf = self.buffer()
            k = min(len(buf), len(view))
            buf[:k] = view[:k]
            view = view[k:]
            blk = self.commit(k)
            if blk is not None:
                out.append(blk)
        return out


def _query(url: str) -> tuple[str, int, dict[str, str]]:
    u = urlsplit(url)
    if u.scheme.lower() != "rtltcp":
        raise ValueError(f"not an rtltcp:// URL: {url}")
    host = u.hostname or "127.0.0.1"
    try:
        port = u.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"bad port in {url}") from None
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    known = {"gain", "ppm", "agc", "bias_tee", "direct", "settle_ms"}
    unknown = set(q) - known
    if unknown:
        raise ValueError(f"unknown rtltcp:// option(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return host, port, q


@register("iq", "rtltcp")
class RtlTcpSource(HealthMixin):
    """An IQ source (drivers.base.IQSource) reading an rtl_tcp server."""

    def __init__(self, url: str, *, center_hz: float | None = None, rate_hz: float = 2.4e6,
                 gain_db: float | None = None, scan=None, block_samples: int = 262144, stall_s: float = 5.0,
                 connect_timeout_s: float = 3.0, backoff_base_s: float = 0.2, backoff_cap_s: float = 10.0):
        self.url = url
        self.host, self.port, q = _query(url)
        self.plan: ScanPlan = from_options(center_hz, rate_hz, scan)
        try:
            if gain_db is None and q.get("gain", "auto") != "auto":
                gain_db = float(q["gain"])
            self.ppm = int(q.get("ppm", 0))
            self.agc = int(q.get("agc", 0))
            self.bias_tee = int(q.get("bias_tee", 0))
            self.direct = int(q.get("direct", 0))
            self.settle_s = float(q.get("settle_ms", 50)) / 1000.0
        except ValueError as e:
            raise ValueError(f"bad option value in {url}: {e} (gain is dB or 'auto'; ppm, agc, bias_tee, "
                             "direct are integers; settle_ms a number)") from None
        if self.direct not in (0, 1, 2) or self.settle_s < 0:
            raise ValueError(f"bad option value in {url}: direct must be 0, 1 or 2 and settle_ms >= 0")
        self.gain_db = gain_db
        if block_samples < 1:
            raise ValueError("block_samples must be >= 1")
        self.block_samples = int(block_samples)
        self.stall_s = float(stall_s)
        self.connect_timeout_s = connect_timeout_s
        self.backoff = (backoff_base_s, backoff_cap_s)
        self._sock: socket.socket | None = None
        self._closed = threading.Event()
        self.greeting: Greeting | None = None
        self._init_health(url, "iq")

    # -- connection -----------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        except OSError:
            pass
        s.settimeout(min(0.25, self.stall_s))
        return s

    def _tune_commands(self, hop: Hop, first: bool, prev: Hop | None) -> bytes:
        cmds = b""
        if first or prev is None or prev.rate_hz != hop.rate_hz:
            cmds += pack_command(Cmd.SET_SAMPLE_RATE, int(round(hop.rate_hz)))
        cmds += pack_command(Cmd.SET_FREQ, int(round(hop.center_hz)))
        if first:
            if self.ppm:
                cmds += pack_command(Cmd.SET_FREQ_CORRECTION, self.ppm)
            if self.gain_db is None:
                cmds += pack_command(Cmd.SET_GAIN_MODE, 0)
            else:
                cmds += pack_command(Cmd.SET_GAIN_MODE, 1) + pack_command(Cmd.SET_GAIN, int(round(self.gain_db * 10)))
            if self.agc:
                cmds += pack_command(Cmd.SET_AGC_MODE, 1)
            if self.bias_tee:
                cmds += pack_command(Cmd.SET_BIAS_TEE, 1)
            if self.direct:
                cmds += pack_command(Cmd.SET_DIRECT_SAMPLING, self.direct)
        return cmds

    def close(self) -> None:
        self._closed.set()
        s = self._sock
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the stream -----------------------------------------------------------------------

    def blocks(self, stop: threading.Event) -> Iterator[IQBlock]:
        """IQ blocks until stop is set or close() is called; survives every server fault."""
        delays = backoff_delays(*self.backoff)
        seq = 0
        first_connect = True
        while not (stop.is_set() or self._closed.is_set()):
            if not first_connect:
                self._count("reconnects")
                d = next(delays)
                if stop.wait(d) or self._closed.is_set():
                    break
            first_connect = False
            try:
                self._set_state("connecting", connected=False)
                self._sock = self._connect()
            except OSError as e:
                self._error(f"cannot connect to {self.host}:{self.port}: {e}", state="disconnected")
                log.warning("%s: cannot connect: %s", self.url, e)
                continue
            try:
                for blk in self._session(self._sock, stop, seq):
                    seq = blk.seq + 1
                    delays = backoff_delays(*self.backoff)  # data flowed: the next outage starts afresh
                    yield blk
            finally:
                try:
                    self._sock.close()
                except OSError:
                    pass
                self._sock = None
        self._set_state("closed", connected=False)

    def _session(self, sock: socket.socket, stop: threading.Event, seq: int) -> Iterator[IQBlock]:
        """One connection: greeting, tuning, blocks; returns (after counting why) when it ends."""
        parser = StreamParser(self.block_samples)
        hops = self.plan.cycle()
        hop_i, hop = next(hops)
        prev: Hop | None = None
        left = hop.dwell_samples  # samples still to take at this hop (None = forever)
        idle = 0.0
        anchor: float | None = None  # wall time of the first sample since (re)tuning
        taken = 0
        sent_tuning = False
        try:
            while not (stop.is_set() or self._closed.is_set()):
                if parser.greeting is not None and not sent_tuning:
                    self.greeting = parser.greeting
                    log.info("%s: connected, tuner %s with %d gains", self.url, parser.greeting.tuner_name,
                             parser.greeting.gain_count)
                    self._set_state("ok", connected=True)
                    sock.sendall(self._tune_commands(hop, True, None))
                    parser.skip(int(hop.rate_hz * self.settle_s))
                    parser.expect(min(self.block_samples, left or self.block_samples))
                    sent_tuning = True
                buf = parser.buffer()
                try:
                    n = sock.recv_into(buf)
                except TimeoutError:
                    idle += sock.gettimeout() or 0.25
                    if idle >= self.stall_s:
                        self._count("stalls")
                        self._error(f"stalled: no data for {idle:.1f}s", state="stalled")
                        log.warning("%s: no data for %.1fs, reconnecting", self.url, idle)
                        return
                    continue
                if n == 0:
                    if self._closed.is_set():
                        return  # our own close() shut the socket down: not a server fault
                    lost = parser.partial_bytes
                    if lost:
                        self._count("drops")
                    what = "before the greeting" if parser.greeting is None else (
                        f"mid-block ({lost} of {2 * (left or self.block_samples)} bytes)" if lost else "")
                    self._error(f"server closed the connection {what}".strip(), state="disconnected")
                    log.warning("%s: server closed the connection %s", self.url, what)
                    return
                idle = 0.0
                samples = parser.commit(n)
                if samples is None:
                    continue
                now = time.time()
                dur = len(samples) / hop.rate_hz
                if anchor is None or not (now - 2.0 <= anchor + (taken + len(samples)) / hop.rate_hz <= now + 0.5):
                    anchor, taken = now - dur, 0  # (re)anchor the sample clock on the wall clock
                blk = IQBlock(samples=samples, t=anchor + taken / hop.rate_hz, center_hz=hop.center_hz,
                              rate_hz=hop.rate_hz, gain_db=self.gain_db, seq=seq, source=self.url, hop=hop_i)
                taken += len(samples)
                seq += 1
                self._got_data()
                yield blk
                if left is not None:
                    left -= len(samples)
                    if left <= 0:
                        prev = hop
                        hop_i, hop = next(hops)
                        left = hop.dwell_samples
                        if hop != prev:
                            sock.sendall(self._tune_commands(hop, False, prev))
                            parser.skip(int(hop.rate_hz * self.settle_s))
                            anchor, taken = None, 0
                parser.expect(min(self.block_samples, left or self.block_samples))
        except ProtocolError as e:
            self._error(str(e), state="bad_data")
            log.warning("%s: %s", self.url, e)
        except OSError as e:
            if parser.partial_bytes:
                self._count("drops")
            self._error(f"connection error: {e}", state="disconnected")
            log.warning("%s: connection error: %s", self.url, e)
