"""The scanner's framed control/status protocol: the one definition both ends import.

The simulator (hw_sim.scanner_serial) and the agent's client (drivers.scanner_link) share this
module so that they cannot drift apart; docs/scanner-protocol.md describes the same bytes for
anyone writing a third end (a real scanner's adapter, a test rig).

Frame (all integers big-endian):

    SOF 0xA5 | LEN u16 | TYPE u8 | SEQ u8 | PAYLOAD (LEN bytes) | CRC u16

CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over LEN..PAYLOAD, computed by the standard
library's binascii.crc_hqx rather than a hand-written table. No byte stuffing: the length field
and the CRC delimit a frame, and the parser resynchronises on the next SOF after anything that
does not check out, so garbage, half frames and bit errors cost only the frames they touch.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass, field

SOF = 0xA5
HEADER = struct.Struct(">BHBB")  # SOF, LEN, TYPE, SEQ
CRC = struct.Struct(">H")
MAX_PAYLOAD = 512  # a longer LEN is a framing error: it bounds the parser's buffer
MAX_FRAME = HEADER.size + MAX_PAYLOAD + CRC.size
MAX_TEXT = 200  # bytes of UTF-8 in a text field (bag ids, reasons, fault texts)


class MsgType(enum.IntEnum):
    # host (agent) -> scanner: commands, each answered by ACK (or ERROR)
    STOP_BELT = 0x01
    START_BELT = 0x02
    SET_BELT_SPEED = 0x03
    GENERATOR_ON = 0x04
    GENERATOR_OFF = 0x05
    SET_GENERATOR = 0x06
    STATUS_REQUEST = 0x07
    # scanner -> host: events and reports
    BELT = 0x20
    GENERATOR = 0x21
    INTERLOCK = 0x22
    BAG_IN = 0x23
    BAG_OUT = 0x24
    FAULT = 0x25
    STATUS = 0x26
    ACK = 0x30
    ERROR = 0x3F


COMMANDS = frozenset({MsgType.STOP_BELT, MsgType.START_BELT, MsgType.SET_BELT_SPEED, MsgType.GENERATOR_ON,
                      MsgType.GENERATOR_OFF, MsgType.SET_GENERATOR, MsgType.STATUS_REQUEST})


class ErrorCode(enum.IntEnum):
    """Codes carried by ERROR frames and counted by the parser."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_TYPE = 3
    BAD_PAYLOAD = 4
    GARBAGE = 5
    HALF_FRAME = 6
    NOT_A_COMMAND = 7


class AckResult(enum.IntEnum):
    OK = 0
    REFUSED = 1  # understood but not possible now (e.g. belt start with the interlock open)


class FaultCode(enum.IntEnum):
    NONE = 0
    GENERATOR = 0x0101
    INTERLOCK = 0x0102
    BELT_MOTOR = 0x0103
    DETECTOR = 0x0104
    OVERTEMP = 0x0105


@dataclass(frozen=True)
class Layout:
    """A payload: fixed struct fields, then optionally one UTF-8 text field filling the rest."""

    fmt: str = ""
    names: tuple[str, ...] = ()
    text: str | None = None

    @property
    def fixed(self) -> struct.Struct:
        return struct.Struct(">" + self.fmt)


# Units chosen so that every field is an integer: speeds in mm/s, kV in 0.1 kV, mA in 0.01 mA,
# times in ms since the Unix epoch by the scanner's clock (the host stamps its own time too).
LAYOUTS: dict[MsgType, Layout] = {
    MsgType.STOP_BELT: Layout(text="reason"),
    MsgType.START_BELT: Layout(),
    MsgType.SET_BELT_SPEED: Layout("H", ("speed_mm_s",)),
    MsgType.GENERATOR_ON: Layout(),
    MsgType.GENERATOR_OFF: Layout(),
    MsgType.SET_GENERATOR: Layout("HH", ("kv_x10", "ma_x100")),
    MsgType.STATUS_REQUEST: Layout(),
    MsgType.BELT: Layout("QBH", ("t_ms", "running", "speed_mm_s")),
    MsgType.GENERATOR: Layout("QBHH", ("t_ms", "on", "kv_x10", "ma_x100")),
    MsgType.INTERLOCK: Layout("QB", ("t_ms", "open")),
    MsgType.BAG_IN: Layout("Q", ("t_ms",), text="bag_id"),
    MsgType.BAG_OUT: Layout("Q", ("t_ms",), text="bag_id"),
    MsgType.FAULT: Layout("QHB", ("t_ms", "code", "active"), text="text"),
    MsgType.STATUS: Layout("QBHBHHBHII", ("t_ms", "belt_running", "speed_mm_s", "generator_on", "kv_x10",
                                          "ma_x100", "interlock_open", "fault_code", "bags", "uptime_s")),
    MsgType.ACK: Layout("BBB", ("acked_type", "acked_seq", "result")),
    MsgType.ERROR: Layout("BB", ("code", "bad_seq"), text="text"),
}


class ProtocolError(ValueError):
    """A message that cannot be encoded (bad field values); raised to the caller who built it."""


@dataclass
class Message:
    type: MsgType
    seq: int = 0
    fields: dict = field(default_factory=dict)


@dataclass
class FrameError:
    """Something on the line that is not a good frame; the parser returns these beside messages."""

    code: ErrorCode
    detail: str
    nbytes: int = 0
    seq: int = 0


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE; binascii.crc_hqx is exactly this polynomial with the given init."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_payload(mtype: MsgType, fields: dict) -> bytes:
    lay = LAYOUTS[mtype]
    try:
        out = lay.fixed.pack(*(int(fields[n]) for n in lay.names))
    except (KeyError, struct.error, TypeError, ValueError) as e:
        raise ProtocolError(f"{mtype.name}: bad fields {fields!r}: {e}") from None
    if lay.text is not None:
        txt = str(fields.get(lay.text, "")).encode("utf-8")
        if len(txt) > MAX_TEXT:
            raise ProtocolError(f"{mtype.name}: {lay.text} longer than {MAX_TEXT} bytes")
        out += txt
    return out


def decode_payload(mtype: MsgType, payload: bytes) -> dict:
    """Raises ValueError with the reason for a payload that does not fit the type's layout."""
    lay = LAYOUTS[mtype]
    st = lay.fixed
    if len(payload) < st.size or (lay.text is None and len(payload) != st.size):
        raise ValueError(f"{mtype.name} payload of {len(payload)} bytes, expected "
                         f"{st.size}{'+' if lay.text else ''}")
    fields = dict(zip(lay.names, st.unpack_from(payload), strict=True))
    if lay.text is not None:
        rest = payload[st.size:]
        if len(rest) > MAX_TEXT:
            raise ValueError(f"{mtype.name} {lay.text} longer than {MAX_TEXT} bytes")
        fields[lay.text] = rest.decode("utf-8")  # UnicodeDecodeError is a ValueError
    return fields


def encode(mtype: MsgType, seq: int = 0, **fields) -> bytes:
    """One complete frame, ready to write."""
    mtype = MsgType(mtype)
    payload = encode_payload(mtype, fields)
    body = struct.pack(">HBB", len(payload), int(mtype), seq & 0xFF) + payload
    return bytes([SOF]) + body + CRC.pack(crc16(body))


def encode_message(msg: Message) -> bytes:
    return encode(msg.type, msg.seq, **msg.fields)


class FrameParser:
    """Incremental parser: feed() whatever bytes arrived, get back messages and errors.

    The buffer never holds more than one maximal frame, so a hostile or broken peer cannot make
    it grow. A partial frame left alone longer than `frame_timeout_s` is a half frame: it is
    dropped (and counted) on the next feed() or poll(), which is what lets the parser recover
    from a frame cut short when the next bytes are a new, good frame.
    """

    def __init__(self, frame_timeout_s: float = 0.5):
        self.frame_timeout_s = frame_timeout_s
        self.buf = bytearray()
        self.last_rx: float | None = None
        self.frames = 0
        self.errors: dict[str, int] = {c.name.lower(): 0 for c in ErrorCode}
        self.garbage_bytes = 0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def _err(self, out: list, code: ErrorCode, detail: str, nbytes: int = 0, seq: int = 0) -> None:
        self.errors[code.name.lower()] += 1
        out.append(FrameError(code, detail, nbytes, seq))

    def poll(self, now: float) -> list[Message | FrameError]:
        """Call when a read timed out: a stale partial frame is a half frame (good frames behind
        a false start are still returned)."""
        out: list = []
        if self.last_rx is None or now - self.last_rx <= self.frame_timeout_s:
            return out
        while self.buf:
            # The partial frame at the front will never complete. It may be a false start (an SOF
            # in garbage) hiding good frames behind it, so drop only up to the next SOF and parse
            # again rather than clearing the buffer.
            nxt = self.buf.find(SOF, 1)
            n = len(self.buf) if nxt < 0 else nxt
            del self.buf[:n]
            self._err(out, ErrorCode.HALF_FRAME, f"incomplete frame of {n} bytes and the line went quiet", n)
            self._drain(out)
        return out

    def feed(self, data: bytes, now: float | None = None) -> list[Message | FrameError]:
        out: list[Message | FrameError] = []
        if now is not None:
            out.extend(self.poll(now))
            self.last_rx = now
        self.buf += data
        self._drain(out)
        return out

    def _skip_garbage(self, out: list) -> None:
        i = self.buf.find(SOF)
        n = len(self.buf) if i < 0 else i
        if n:
            del self.buf[:n]
            self.garbage_bytes += n
            self._err(out, ErrorCode.GARBAGE, f"{n} bytes outside any frame", n)

    def _drain(self, out: list) -> None:
        while True:
            self._skip_garbage(out)
            if len(self.buf) < HEADER.size:
                return
            _, length, mtype, seq = HEADER.unpack_from(self.buf)
            if length > MAX_PAYLOAD:
                # not a real start: drop this SOF and look for the next one
                del self.buf[:1]
                self._err(out, ErrorCode.BAD_LENGTH, f"length {length} > {MAX_PAYLOAD}", 1)
                continue
            total = HEADER.size + length + CRC.size
            if len(self.buf) < total:
                return
            frame = bytes(self.buf[:total])
            (crc,) = CRC.unpack_from(frame, total - CRC.size)
            if crc != crc16(frame[1:total - CRC.size]):
                nxt = frame.find(SOF, 1)
                if nxt > 0:
                    # most likely a frame cut short and followed by a new one (a heuristic: a
                    # corrupted frame whose payload holds 0xA5 is also classed here); either way
                    # the bytes before the next SOF are dropped and parsing resumes there
                    del self.buf[:nxt]
                    self._err(out, ErrorCode.HALF_FRAME, f"frame cut short after {nxt} bytes", nxt, seq)
                else:
                    del self.buf[:1]
                    self._err(out, ErrorCode.BAD_CRC, f"CRC mismatch in a {total}-byte frame", 1, seq)
                continue
            del self.buf[:total]
            payload = frame[HEADER.size:total - CRC.size]
            try:
                t = MsgType(mtype)
            except ValueError:
                self._err(out, ErrorCode.UNKNOWN_TYPE, f"unknown message type 0x{mtype:02x}", total, seq)
                continue
            try:
                fields = decode_payload(t, payload)
            except ValueError as e:
                self._err(out, ErrorCode.BAD_PAYLOAD, str(e), total, seq)
                continue
            self.frames += 1
            out.append(Message(t, seq, fields))
