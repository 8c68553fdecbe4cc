"""An rtl_tcp server in front of a synthesised band: what `rtl_tcp -a 127.0.0.1 -p PORT` would be.

One client at a time, as rtl_tcp serves (later connections wait in the listen backlog). After
the 12-byte greeting it streams cu8 samples of a `Band` (or of any `source(n) -> complex64`)
and applies the client's 5-byte commands between chunks: retuning, every sample rate
librtlsdr accepts (others are refused and logged, keeping the previous rate, as librtlsdr
does), gain mode / gain / gain by index (R820T table), ppm correction, test mode (the RTL2832's
counter) and the rest, which are recorded and shown in stats().

Pacing follows the SimClock: at speed 1 samples leave at the sample rate, at speed 0 as fast
as the synthesiser makes them. If synthesis cannot keep up with a fast scenario clock, the
stream skips ahead (counted in `dropped_samples`) so emitters stay on the scenario's timeline,
as a dongle overflowing its USB buffers loses samples.

Faults (inject): "drop_client" (close the connection mid-stream and refuse connections for
duration_s), "stall" (stop sending, connection open), "short_writes" (send in small odd-sized
pieces that split I/Q pairs), "garbage" (drop the client; connections for duration_s get a
wrong greeting and random bytes).
"""

from __future__ import annotations

import logging
import math
import select
import socket
import threading
import time

import numpy as np

from drivers.rtltcp_protocol import (
    COMMAND_LEN,
    R820T_FREQ_RANGE,
    R820T_GAINS_TENTHS,
    Cmd,
    Tuner,
    nearest_gain_tenths,
    pack_greeting,
    parse_command,
    signed32,
    valid_sample_rate,
)
from hw_sim.clock import SimClock
from hw_sim.rf.band import Band, to_cu8

log = logging.getLogger("zastava.sim.rtltcp")

FAULT_KINDS = ("drop_client", "stall", "short_writes", "garbage")
REF_GAIN_TENTHS = 297  # the gain at which a Band's noise_dbfs_hz holds; AGC behaves as this


class RtlTcpServer:
    """Serve `band` over rtl_tcp on host:port (port 0 = ephemeral; see `.port`)."""

    def __init__(self, band: Band, *, host: str = "127.0.0.1", port: int = 0, clock: SimClock | None = None,
                 stop: threading.Event | None = None, name: str = "rtl_tcp", tuner: int = Tuner.R820T,
                 seed: int = 0):
        self.band = band
        self.host, self.name = host, name
        self.clock = clock or SimClock(1.0)
        self.stop_event = stop or threading.Event()
        self._closed = threading.Event()
        self.tuner = int(tuner)
        self.gains = R820T_GAINS_TENTHS
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # guards band tuning vs. synthesis and the stats below
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._down_until = 0.0  # wall time until which connections are refused (drop_client)
        self._garbage_until = 0.0
        self._stall_until = 0.0
        self._short_until = 0.0
        self._drop_now = threading.Event()
        self.st = {
            "clients": 0, "connected": False, "bytes_sent": 0, "samples_sent": 0, "commands": 0,
            "bad_commands": 0, "refused_commands": 0, "partial_commands": 0, "dropped_samples": 0,
            "center_hz": band.center_hz, "rate_hz": band.rate_hz, "gain_mode": 0, "gain_tenths": REF_GAIN_TENTHS,
            "ppm": 0, "if_gain": {}, "test_mode": 0, "agc": 0, "direct_sampling": 0, "offset_tuning": 0,
            "rtl_xtal": 28_800_000, "tuner_xtal": 28_800_000, "bias_tee": 0, "retunes": 0, "faults": [],
            "last_error": None,
        }
        self._counter = 0
        self._port = int(port)
        self._bind()

    # -- lifecycle -------------------------------------------------------------------------

    def _bind(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self._port))
        s.listen(4)
        s.settimeout(0.2)
        self._port = s.getsockname()[1]
        self._listener = s

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"rtltcp://{self.host}:{self.port}"

    def start(self) -> RtlTcpServer:
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-serve", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._drop_now.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for s in (self._client, self._listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def _done(self) -> bool:
        return self._closed.is_set() or self.stop_event.is_set()

    # -- faults ----------------------------------------------------------------------------

    def inject(self, kind: str, duration_s: float = 0.0, params: dict | None = None) -> None:
        """Play a fault; duration_s is scenario time (scaled by the clock like everything else)."""
        wall = duration_s / self.clock.speed if self.clock.speed > 0 else duration_s
        now = time.monotonic()
        with self._lock:
            self.st["faults"].append(kind)
        if kind == "drop_client":
            self._down_until = now + wall
            self._drop_now.set()
        elif kind == "stall":
            self._stall_until = now + wall
        elif kind == "short_writes":
            self._short_until = now + wall
        elif kind == "garbage":
            self._garbage_until = now + wall
            self._drop_now.set()
        else:
            raise ValueError(f"unknown rtl_tcp fault {kind!r} (drop_client, stall, short_writes, garbage)")
        log.info("%s: fault %s for %.3gs (wall)", self.name, kind, wall)

    # -- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._done():
            if time.monotonic() < self._down_until:
                self._refuse_while_down()
                continue
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as e:
                if not self._done():
                    log.warning("%s: accept failed: %s", self.name, e)
                    time.sleep(0.1)
                continue
            self._drop_now.clear()
            if time.monotonic() < self._garbage_until:
                self._send_garbage(conn)
                continue
            log.info("%s: client %s:%d connected", self.name, *peer[:2])
            with self._lock:
                self.st["clients"] += 1
                self.st["connected"] = True
            try:
                self._stream(conn)
            except OSError as e:
                log.info("%s: client %s:%d gone: %s", self.name, *peer[:2], e)
            finally:
                with self._lock:
                    self.st["connected"] = False
                try:
                    conn.close()
                except OSError:
                    pass
                self._client = None

    def _refuse_while_down(self) -> None:
        """A vanished server: close the listening socket so connects are refused, then come back."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        while not self._done() and time.monotonic() < self._down_until:
            time.sleep(0.02)
        for _ in range(100):
            try:
                self._bind()
                return
            except OSError as e:
                log.warning("%s: cannot re-listen on port %d yet: %s", self.name, self._port, e)
                time.sleep(0.1)

    def _send_garbage(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(1.0)
            conn.sendall(b"HTTP/1.0 400\r\n" + self._rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        except OSError:
            pass
        finally:
            conn.close()

    def _stream(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn
        conn.setblocking(False)
        self._sendall(conn, pack_greeting(self.tuner, len(self.gains)))
        reader = threading.Thread(target=self._read_commands, args=(conn,), name=f"{self.name}-cmd", daemon=True)
        reader.start()
        paced = self.clock.speed > 0
        if paced:
            with self._lock:
                self.band.t = self.clock.elapsed()
        buf = np.empty(0, np.uint8)
        while not self._done() and not self._drop_now.is_set():
            if time.monotonic() < self._stall_until:
                time.sleep(0.01)
                continue
            with self._lock:
                rate = self.band.rate_hz
                n = chunk_samples(rate)
                if paced:
                    lag = self.clock.elapsed() - self.band.t
                    if lag > max(0.25, 4 * n / rate):
                        skip = int(lag * rate)
                        self.st["dropped_samples"] += skip
                        self.band.t = self.clock.elapsed()
                t_end = self.band.t + n / rate
                if self.st["test_mode"]:
                    data = ((self._counter + np.arange(2 * n)) & 0xFF).astype(np.uint8)
                    self._counter = (self._counter + 2 * n) & 0xFF
                    self.band.t = t_end
                else:
                    if len(buf) != 2 * n:
                        buf = np.empty(2 * n, np.uint8)
                    data = to_cu8(self.band.read(n), out=buf)
            if paced and not self.clock.sleep_until(t_end, self.stop_event):
                break
            if not self._sendall(conn, memoryview(data)):
                break
            with self._lock:
                self.st["bytes_sent"] += 2 * n
                self.st["samples_sent"] += n
        if self._drop_now.is_set() and not self._done():
            log.info("%s: dropping the client mid-stream (fault)", self.name)
        reader.join(timeout=1)

    def _sendall(self, conn: socket.socket, data) -> bool:
        """Send everything unless stopped or dropped; returns False if the client went away.

        Hand-rolled over select() rather than sendall() with a timeout because a timed-out
        sendall() does not say how much it sent, and a half-sent I/Q pair would shift I and Q for
        the rest of the stream. Also where short writes are played.
        """
        view = memoryview(data).cast("B")
        off = 0
        while off < len(view):
            if self._done() or self._drop_now.is_set():
                return False
            _, w, _ = select.select([], [conn], [], 0.1)
            if not w:
                continue
            end = len(view)
            if time.monotonic() < self._short_until:
                end = min(end, off + int(self._rng.integers(1, 1000)))
            try:
                off += conn.send(view[off:end])
            except BlockingIOError:
                continue
            except OSError as e:
                log.info("%s: send failed: %s", self.name, e)
                return False
        return True

    # -- commands --------------------------------------------------------------------------

    def _read_commands(self, conn: socket.socket) -> None:
        pending = b""
        while not self._done() and not self._drop_now.is_set():
            try:
                r, _, _ = select.select([conn], [], [], 0.1)
            except (OSError, ValueError):
                break
            if not r:
                continue
            try:
                chunk = conn.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            while len(pending) >= COMMAND_LEN:
                cmd, param = parse_command(pending[:COMMAND_LEN])
                pending = pending[COMMAND_LEN:]
                self.apply(cmd, param)
        if pending:
            with self._lock:
                self.st["partial_commands"] += 1
            log.warning("%s: client left %d bytes of an unfinished command (%s); ignored", self.name,
                        len(pending), pending.hex())
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def apply(self, cmd: int, param: int) -> None:
        """Apply one command as rtl_tcp + librtlsdr would; refusals are logged and counted."""
        with self._lock:
            self.st["commands"] += 1
            st, band = self.st, self.band
            try:
                c = Cmd(cmd)
            except ValueError:
                st["bad_commands"] += 1
                st["last_error"] = f"unknown command 0x{cmd:02x}"
                log.warning("%s: unknown command 0x%02x (param %d) ignored", self.name, cmd, param)
                return
            if c is Cmd.SET_FREQ:
                if not R820T_FREQ_RANGE[0] <= param <= R820T_FREQ_RANGE[1]:
                    return self._refuse(f"frequency {param} Hz outside the R820T's range")
                band.retune(center_hz=float(param))
                st["center_hz"] = band.center_hz
                st["retunes"] += 1
            elif c is Cmd.SET_SAMPLE_RATE:
                if not valid_sample_rate(param):
                    return self._refuse(f"sample rate {param} S/s refused (librtlsdr takes 225001-300000 or "
                                        f"900001-3200000); keeping {band.rate_hz:.0f}")
                band.retune(rate_hz=float(param))
                st["rate_hz"] = band.rate_hz  # a replayed recording keeps its own rate
            elif c is Cmd.SET_GAIN_MODE:
                st["gain_mode"] = 1 if param else 0
                self._set_gain()
            elif c is Cmd.SET_GAIN:
                st["gain_tenths"] = nearest_gain_tenths(signed32(param))
                self._set_gain()
            elif c is Cmd.SET_GAIN_BY_INDEX:
                if param >= len(self.gains):
                    return self._refuse(f"gain index {param} out of range (0..{len(self.gains) - 1})")
                st["gain_tenths"] = self.gains[param]
                self._set_gain()
            elif c is Cmd.SET_FREQ_CORRECTION:
                ppm = signed32(param)
                if abs(ppm) > 1000:
                    return self._refuse(f"frequency correction {ppm} ppm implausible")
                st["ppm"] = ppm
                band.correction_ppm = float(ppm)
            elif c is Cmd.SET_IF_GAIN:
                st["if_gain"][str(param >> 16)] = signed32(param & 0xFFFF if param & 0x8000 == 0
                                                           else (param & 0xFFFF) | 0xFFFF0000)
            elif c is Cmd.SET_TEST_MODE:
                st["test_mode"] = 1 if param else 0
            elif c is Cmd.SET_AGC_MODE:
                st["agc"] = 1 if param else 0
            elif c is Cmd.SET_DIRECT_SAMPLING:
                if param > 2:
                    return self._refuse(f"direct sampling mode {param} (0, 1 or 2)")
                st["direct_sampling"] = param
            elif c is Cmd.SET_OFFSET_TUNING:
                # librtlsdr refuses offset tuning on R82xx tuners (it has no use for it there)
                return self._refuse("offset tuning is not supported by the R820T")
            elif c is Cmd.SET_RTL_XTAL:
                st["rtl_xtal"] = param
            elif c is Cmd.SET_TUNER_XTAL:
                st["tuner_xtal"] = param
            elif c is Cmd.SET_BIAS_TEE:
                st["bias_tee"] = 1 if param else 0
            log.debug("%s: %s %d", self.name, c.name, param)

    def _refuse(self, why: str) -> None:
        self.st["refused_commands"] += 1
        self.st["last_error"] = why
        log.warning("%s: %s", self.name, why)

    def _set_gain(self) -> None:
        g = self.st["gain_tenths"] if self.st["gain_mode"] == 1 else REF_GAIN_TENTHS
        self.band.gain_db = (g - REF_GAIN_TENTHS) / 10.0

    def stats(self) -> dict:
        with self._lock:
            out = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                   for k, v in self.st.items()}
        out["port"] = self.port
        out["scenario_t"] = self.band.t
        return out


def chunk_samples(rate_hz: float) -> int:
    """Samples per synthesised chunk: ~14 ms, a power of two (2^15 at 2.4 MS/s).

    Short enough that a retune takes effect within a few tens of ms, long enough that the
    per-chunk Python overhead stays small against the numpy work.
    """
    return 1 << max(10, int(math.log2(max(1024.0, rate_hz * 0.014))))

