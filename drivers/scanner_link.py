"""The scanner's control link client over any pyserial URL.

`serial:///dev/ttyUSB0?baud=115200` is our spelling of a local port (pyserial has no `serial://`
handler, so it becomes the plain path with that baud rate); every other URL (`socket://`,
`rfc2217://`, `loop://`, `spy://`) goes to pyserial's `serial_for_url` unchanged, so whatever
pyserial can reach, the agent can.

events(stop) yields drivers.base.ScannerEvent for every frame of drivers.scanner_protocol and
for every problem on the line (kind "error"): garbage, half frames, bad CRCs, stalls and lost
ports are counted in health() and reported, never raised. A lost port is reopened with
exponential backoff and jitter (drivers.base.backoff_delays).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import serial

from drivers.base import HealthMixin, ScannerEvent, backoff_delays
from drivers.registry import register
from drivers.scanner_protocol import AckResult, FrameError, FrameParser, Message, MsgType, encode

log = logging.getLogger("zastava.drivers.scanner")

DEFAULT_BAUD = 115200

# scanner -> host frame types and the ScannerEvent kind each becomes
_KIND = {
    MsgType.BAG_IN: "bag_in",
    MsgType.BAG_OUT: "bag_out",
    MsgType.STATUS: "status",
    MsgType.FAULT: "fault",
    MsgType.INTERLOCK: "interlock",
    MsgType.ACK: "ack",
    MsgType.ERROR: "error",
    MsgType.BELT: "status",
    MsgType.GENERATOR: "status",
}


def port_args(url: str, baud: int | None = None) -> tuple[str, dict]:
    """(what to give serial_for_url, keyword args) for one of our control URLs."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "serial":
        return url, ({"baudrate": baud} if baud else {})
    if not parts.path:
        raise ValueError(f"{url}: serial:// needs a device path, e.g. serial:///dev/ttyUSB0?baud=115200")
    q = parse_qs(parts.query)
    try:
        rate = int(q["baud"][0]) if "baud" in q else (baud or DEFAULT_BAUD)
    except ValueError:
        raise ValueError(f"{url}: baud must be an integer") from None
    return parts.path, {"baudrate": rate}


def message_to_event(msg: Message, now: float) -> ScannerEvent:
    """A protocol message as the agent sees it: readable units, the scanner's time kept aside."""
    f = dict(msg.fields)
    data: dict = {"type": msg.type.name.lower(), "seq": msg.seq}
    if "t_ms" in f:
        data["device_t"] = f.pop("t_ms") / 1000.0
    bag_id = f.pop("bag_id", None)
    if "kv_x10" in f:
        data["kv"] = f.pop("kv_x10") / 10.0
    if "ma_x100" in f:
        data["ma"] = f.pop("ma_x100") / 100.0
    for k in ("running", "on", "open", "active", "belt_running", "generator_on", "interlock_open"):
        if k in f:
            f[k] = bool(f[k])
    if msg.type == MsgType.ACK:
        with_names = {"acked": _type_name(f["acked_type"]), "ok": f["result"] == AckResult.OK}
        f.update(with_names)
    data.update(f)
    return ScannerEvent(kind=_KIND[msg.type], t=now, bag_id=bag_id or None, data=data)


def _type_name(t: int) -> str:
    try:
        return MsgType(t).name.lower()
    except ValueError:
        return f"0x{t:02x}"


class ScannerLink(HealthMixin):
    """One scanner's control link; `events()` in one thread, commands from any thread."""

    def __init__(self, url: str, *, baud: int | None = None, stall_s: float = 5.0,
                 reopen_after_stall_s: float | None = None, read_timeout_s: float = 0.1,
                 ack_timeout_s: float = 2.0, frame_timeout_s: float = 0.5, backoff_base_s: float = 0.2,
                 backoff_cap_s: float = 10.0):
        self.url = url
        self.target, self.port_kwargs = port_args(url, baud)
        self.stall_s = stall_s
        self.reopen_after_stall_s = reopen_after_stall_s if reopen_after_stall_s is not None else 3 * stall_s
        self.read_timeout_s = read_timeout_s
        self.ack_timeout_s = ack_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.backoff = (backoff_base_s, backoff_cap_s)
        self._init_health(url, "control")
        self.parser = FrameParser(frame_timeout_s)
        self.port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()
        self._seq = 0
        self._acks: dict[int, tuple[threading.Event, list, MsgType]] = {}
        self._reading = False
        self._closed = threading.Event()
        self.last_status: dict | None = None

    # -- commands --------------------------------------------------------------------------------
    def stop_belt(self, reason: str) -> bool:
        """Ask the scanner to stop the belt; True once it acknowledged, False on a refusal or no
        ack in time. When no events() loop reads the line no ack can be seen: True once written.

        Raises ConnectionError when the link is down, so the caller can say the stop failed.
        """
        return self.command(MsgType.STOP_BELT, reason=reason.encode("utf-8")[:200].decode("utf-8", "ignore"))

    def start_belt(self) -> bool:
        return self.command(MsgType.START_BELT)

    def request_status(self) -> bool:
        return self.command(MsgType.STATUS_REQUEST)

    def command(self, mtype: MsgType, **fields) -> bool:
        port = self.port
        if port is None or not port.is_open:
            raise ConnectionError(f"{self.url}: control link not connected")
        with self._write_lock:
            self._seq = self._seq % 255 + 1  # 1..255: seq 0 is what ERROR frames about garbage carry
            seq = self._seq
            frame = encode(mtype, seq, **fields)
            waiter = (threading.Event(), [], mtype)
            self._acks[seq] = waiter
            try:
                port.write(frame)
                port.flush()
            except (serial.SerialException, OSError) as e:
                self._acks.pop(seq, None)
                self._error(f"writing {mtype.name}: {e}")
                raise ConnectionError(f"{self.url}: writing {mtype.name} failed: {e}") from None
        if not self._reading:
            # nobody reads the line, so no ack can arrive: sent is all we can say
            self._acks.pop(seq, None)
            return True
        acked = waiter[0].wait(self.ack_timeout_s)
        self._acks.pop(seq, None)
        if not acked:
            self._error(f"{mtype.name} not acknowledged within {self.ack_timeout_s}s")
            return False
        return bool(waiter[1] and waiter[1][0])

    # -- reading ---------------------------------------------------------------------------------
    def _open(self) -> serial.SerialBase:
        port = serial.serial_for_url(self.target, timeout=self.read_timeout_s, write_timeout=2.0,
                                     **self.port_kwargs)
        try:
            port.reset_input_buffer()  # what sat in a pty's buffer before we came is stale
        except (serial.SerialException, OSError, NotImplementedError):
            pass
        return port

    def _close_port(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def _read_some(self, port: serial.SerialBase) -> bytes:
        data = port.read(1)
        if not data:
            return b""
        # pyserial's socket handler reports in_waiting as 0/1, a tty the real count: loop either way
        while len(data) < 4096:
            n = port.in_waiting
            if not n:
                break
            data += port.read(min(n, 4096 - len(data)))
        return data

    def events(self, stop: threading.Event) -> Iterator[ScannerEvent]:
        delays = backoff_delays(*self.backoff)
        first = True
        self._reading = True
        try:
            while not stop.is_set() and not self._closed.is_set():
                try:
                    self.port = self._open()
                except (serial.SerialException, OSError, ValueError) as e:
                    self._error(f"cannot open {self.url}: {e}", state="disconnected")
                    self._set_state("disconnected", False)
                    yield ScannerEvent("error", time.time(), data={"error": "open_failed", "detail": str(e)})
                    if stop.wait(next(delays)):
                        return
                    continue
                if not first:
                    self._count("reconnects")
                first = False
                delays = backoff_delays(*self.backoff)
                self._set_state("connected", True)
                log.info("%s: control link open", self.url)
                yield from self._read_loop(stop)
                self._close_port()
                if not stop.is_set() and not self._closed.is_set():
                    self._set_state("disconnected", False)
                    if stop.wait(next(delays)):
                        return
        finally:
            self._reading = False
            self._close_port()
            self._set_state("closed", False)

    def _read_loop(self, stop: threading.Event) -> Iterator[ScannerEvent]:
        last_data = time.monotonic()
        stalled = False
        self.parser = FrameParser(self.frame_timeout_s)
        while not stop.is_set() and not self._closed.is_set():
            port = self.port
            if port is None:
                return
            try:
                data = self._read_some(port)
            except (serial.SerialException, OSError, TypeError, AttributeError) as e:
                # TypeError/AttributeError: pyserial's posix port read after close() from another thread
                if self._closed.is_set():
                    return
                self._error(f"link lost: {e}", state="disconnected")
                yield ScannerEvent("error", time.time(), data={"error": "link_lost", "detail": str(e)})
                return
            now = time.monotonic()
            if not data:
                yield from self._handle(self.parser.poll(now))
                quiet = now - last_data
                if quiet > self.stall_s and not stalled:
                    stalled = True
                    self._count("stalls")
                    self._error(f"no data for {quiet:.1f}s", state="stalled")
                    yield ScannerEvent("error", time.time(), data={"error": "stall", "quiet_s": round(quiet, 1)})
                if quiet > self.reopen_after_stall_s:
                    log.warning("%s: quiet for %.1fs, reopening the port", self.url, quiet)
                    return
                continue
            last_data = now
            if stalled:
                stalled = False
                self._set_state("ok", True)
            yield from self._handle(self.parser.feed(data, now))

    def _handle(self, items: list) -> Iterator[ScannerEvent]:
        for item in items:
            if isinstance(item, FrameError):
                yield self._frame_error(item)
                continue
            ev = message_to_event(item, time.time())
            if item.type == MsgType.ACK:
                w = self._acks.get(item.fields["acked_seq"])
                if w is not None and item.fields["acked_type"] == w[2]:
                    w[1].append(item.fields["result"] == AckResult.OK)
                    w[0].set()
            elif item.type == MsgType.STATUS:
                self.last_status = ev.data
            elif item.type == MsgType.ERROR:
                self._error(f"scanner reports an error: {ev.data.get('text')}")
                w = self._acks.get(item.fields["bad_seq"])
                if w is not None:  # the scanner refused our command outright: a negative ack
                    w[1].append(False)
                    w[0].set()
            self._got_data()
            yield ev

    def _frame_error(self, err: FrameError) -> ScannerEvent:
        self._error(f"{err.code.name.lower()}: {err.detail}")
        return ScannerEvent("error", time.time(), data={"error": err.code.name.lower(), "detail": err.detail,
                                                       "bytes": err.nbytes})

    def close(self) -> None:
        self._closed.set()
        self._close_port()


@register("control", "serial")
@register("control", "socket")
@register("control", "loop")
@register("control", "rfc2217")
@register("control", "spy")
def open_link(url: str, **opts) -> ScannerLink:
    return ScannerLink(url, **opts)
