"""The simulated scanner's control/status link, on a pty and a TCP socket at once.

A real scanner has one RS-232/USB serial port; engineers reach it as a device path, and remote
tools through a serial-over-TCP bridge. The simulator offers both (the pty for pyserial's
plain path, `socket://127.0.0.1:PORT` for pyserial's socket handler) so that tests and the
agent use the same client code they would on hardware. Every connection gets every event;
commands from any connection act on the one scanner state. The frames are those of
drivers.scanner_protocol (the one definition), documented in docs/scanner-protocol.md.
"""

from __future__ import annotations

import logging
import os
import random
import selectors
import socket
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from common.configfile import Strict
from drivers.scanner_protocol import (
    COMMANDS,
    AckResult,
    ErrorCode,
    FaultCode,
    FrameError,
    FrameParser,
    Message,
    MsgType,
    encode,
)
from hw_sim.clock import SimClock

log = logging.getLogger("zastava.sim.serial")

MAX_OUTBUF = 64 * 1024  # per connection; a reader that falls this far behind loses frames (counted)


class SerialSection(Strict):
    """Scenario `[serial]`: where the control link listens and how often it reports."""

    host: str = Field("127.0.0.1", description="TCP bind address; loopback unless set")
    socket_port: int = Field(0, ge=0, lt=65536, description="0 = ephemeral")
    pty: bool = Field(True, description="also serve the link on a pseudo-terminal")
    status_interval_s: float = Field(1.0, gt=0, description="scenario seconds between STATUS reports")
    max_clients: int = Field(8, ge=1, le=64)
    belt_speed_mm_s: int = Field(200, ge=0, le=65535)
    kv: float = Field(160.0, ge=0, le=6553.5)
    ma: float = Field(1.0, ge=0, le=655.35)


@dataclass
class _Conn:
    """One link end: a TCP client or the pty master, with its own parser and output buffer."""

    name: str
    fd: int
    sock: socket.socket | None
    parser: FrameParser = field(default_factory=FrameParser)
    out: bytearray = field(default_factory=bytearray)


@dataclass
class ScannerState:
    belt_running: bool = True
    speed_mm_s: int = 200
    generator_on: bool = True
    kv_x10: int = 1600
    ma_x100: int = 100
    interlock_open: bool = False
    fault_code: int = 0
    bags: int = 0


class SerialDevice:
    """The control link device; also the object the image generator reports bags to."""

    def __init__(self, section: SerialSection, *, seed: int, clock: SimClock, state_dir: Path | None = None):
        self.section = section
        self.clock = clock
        self.rng = random.Random(seed)
        self.started = time.monotonic()
        self.state = ScannerState(speed_mm_s=section.belt_speed_mm_s, kv_x10=round(section.kv * 10),
                                  ma_x100=round(section.ma * 100))
        self.lock = threading.RLock()
        self.conns: dict[int, _Conn] = {}
        self.counters = {"clients": 0, "refused": 0, "frames_in": 0, "frames_out": 0, "errors_in": 0,
                         "commands": 0, "bytes_out": 0, "dropped_bytes": 0, "garbage_bytes": 0,
                         "half_frames": 0}
        self._seq = 0
        self._closed = threading.Event()
        self._disconnected_until = 0.0
        self._resume_belt_after_interlock = False
        self.sel = selectors.DefaultSelector()
        self.lsock = socket.create_server((section.host, section.socket_port))
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.urls = {"control": f"socket://{section.host}:{self.port}"}
        self.master_fd: int | None = None
        self.slave_fd: int | None = None
        if section.pty:
            self.master_fd, self.slave_fd = os.openpty()
            # raw mode: no echo, no line discipline, bytes pass through unchanged
            tty.setraw(self.slave_fd)
            os.set_blocking(self.master_fd, False)
            self.slave_path = os.ttyname(self.slave_fd)
            self.urls["control_pty"] = self.slave_path
            conn = _Conn("pty", self.master_fd, None)
            self.conns[self.master_fd] = conn
            self.sel.register(self.master_fd, selectors.EVENT_READ, conn)
        self.thread = threading.Thread(target=self._serve, name="sim-serial", daemon=True)
        self.thread.start()
        self.status_thread = threading.Thread(target=self._status_loop, name="sim-serial-status", daemon=True)
        self.status_thread.start()
        log.info("scanner control link on %s", ", ".join(self.urls.values()))

    # -- what the image generator and scenarios call ------------------------------------------
    @property
    def belt_running(self) -> bool:
        with self.lock:
            return self.state.belt_running

    def bag_in(self, bag_id: str) -> None:
        with self.lock:
            self.state.bags += 1
        self._broadcast(MsgType.BAG_IN, t_ms=self._t_ms(), bag_id=bag_id)

    def bag_out(self, bag_id: str) -> None:
        self._broadcast(MsgType.BAG_OUT, t_ms=self._t_ms(), bag_id=bag_id)

    def inject(self, kind: str, duration_s: float, params: dict) -> None:
        """Scenario faults: garbage, generator_fault, interlock_open, half_frame, disconnect."""
        handler = {
            "garbage": self._fault_garbage,
            "generator_fault": self._fault_generator,
            "interlock_open": self._fault_interlock,
            "half_frame": self._fault_half_frame,
            "disconnect": self._fault_disconnect,
        }.get(kind)
        if handler is None:
            log.warning("serial: unknown fault %r (known: garbage, generator_fault, interlock_open, "
                        "half_frame, disconnect)", kind)
            return
        threading.Thread(target=handler, args=(duration_s, params or {}), name=f"sim-serial-{kind}",
                         daemon=True).start()

    def stats(self) -> dict:
        with self.lock:
            return dict(self.counters, connections=len(self.conns), belt_running=self.state.belt_running,
                        generator_on=self.state.generator_on, interlock_open=self.state.interlock_open,
                        fault_code=self.state.fault_code, bags=self.state.bags)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.thread.join(timeout=2)
        self.status_thread.join(timeout=2)
        with self.lock:
            for c in list(self.conns.values()):
                if c.sock is not None:
                    c.sock.close()
            self.conns.clear()
        self.lsock.close()
        for fd in (self.master_fd, self.slave_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.sel.close()

    # -- faults --------------------------------------------------------------------------------
    def _fault_garbage(self, duration_s: float, params: dict) -> None:
        nbytes = int(params.get("bytes", 48))
        end = self.clock.elapsed() + duration_s
        while not self._closed.is_set():
            junk = bytes(self.rng.getrandbits(8) for _ in range(nbytes))
            with self.lock:
                self.counters["garbage_bytes"] += len(junk)
                for c in list(self.conns.values()):
                    self._queue(c, junk)
            if self.clock.elapsed() >= end or not self.clock.sleep(0.1, self._closed):
                return

    def _fault_generator(self, duration_s: float, params: dict) -> None:
        code = int(params.get("code", FaultCode.GENERATOR))
        text = str(params.get("text", "X-ray generator fault: tube arc detected"))
        with self.lock:
            self.state.fault_code = code
            self.state.generator_on = False
        self._broadcast(MsgType.FAULT, t_ms=self._t_ms(), code=code, active=1, text=text)
        self._broadcast_generator()
        if self.clock.sleep(duration_s, self._closed):
            with self.lock:
                self.state.fault_code = 0
                self.state.generator_on = True
            self._broadcast(MsgType.FAULT, t_ms=self._t_ms(), code=code, active=0, text="cleared: " + text)
            self._broadcast_generator()

    def _fault_interlock(self, duration_s: float, params: dict) -> None:
        # An open interlock (a door, a curtain) cuts the generator and stops the belt; when it closes
        # the generator returns and the belt resumes if it ran before and nobody stopped it meanwhile.
        with self.lock:
            self._resume_belt_after_interlock = self.state.belt_running
            self.state.interlock_open = True
            self.state.generator_on = False
            self.state.belt_running = False
        self._broadcast(MsgType.INTERLOCK, t_ms=self._t_ms(), open=1)
        self._broadcast_belt()
        self._broadcast_generator()
        if self.clock.sleep(duration_s, self._closed):
            with self.lock:
                self.state.interlock_open = False
                self.state.generator_on = self.state.fault_code == 0
                self.state.belt_running = self._resume_belt_after_interlock
            self._broadcast(MsgType.INTERLOCK, t_ms=self._t_ms(), open=0)
            self._broadcast_generator()
            self._broadcast_belt()

    def _fault_half_frame(self, duration_s: float, params: dict) -> None:
        """Send the first part of a STATUS frame and then pause longer than a frame may take."""
        gap = float(params.get("gap_s", 0.8))  # wall seconds: the client's frame timeout is wall time
        end = time.monotonic() + duration_s / (self.clock.speed or 1.0)
        while not self._closed.is_set():
            frame = self._status_frame()
            cut = self.rng.randint(2, len(frame) - 2)
            with self.lock:
                self.counters["half_frames"] += 1
                for c in list(self.conns.values()):
                    self._queue(c, frame[:cut])
            if self._closed.wait(gap) or time.monotonic() >= end:
                return

    def _fault_disconnect(self, duration_s: float, params: dict) -> None:
        """Drop every TCP client and refuse new ones for a while: the port vanishing."""
        with self.lock:
            self._disconnected_until = time.monotonic() + duration_s / (self.clock.speed or 1.0)
            for c in [c for c in self.conns.values() if c.sock is not None]:
                self._drop(c)

    # -- the link ------------------------------------------------------------------------------
    def _t_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def _next_seq(self) -> int:
        with self.lock:
            self._seq = (self._seq + 1) & 0xFF
            return self._seq

    def _status_frame(self, seq: int | None = None) -> bytes:
        with self.lock:
            s = self.state
            return encode(MsgType.STATUS, self._next_seq() if seq is None else seq, t_ms=self._t_ms(),
                          belt_running=int(s.belt_running), speed_mm_s=s.speed_mm_s,
                          generator_on=int(s.generator_on), kv_x10=s.kv_x10, ma_x100=s.ma_x100,
                          interlock_open=int(s.interlock_open), fault_code=s.fault_code,
                          bags=s.bags & 0xFFFFFFFF, uptime_s=int(time.monotonic() - self.started))

    def _broadcast_belt(self) -> None:
        with self.lock:
            running, speed = self.state.belt_running, self.state.speed_mm_s
        self._broadcast(MsgType.BELT, t_ms=self._t_ms(), running=int(running), speed_mm_s=speed)

    def _broadcast_generator(self) -> None:
        with self.lock:
            s = self.state
            on, kv, ma = s.generator_on, s.kv_x10, s.ma_x100
        self._broadcast(MsgType.GENERATOR, t_ms=self._t_ms(), on=int(on), kv_x10=kv, ma_x100=ma)

    def _broadcast(self, mtype: MsgType, **fields) -> None:
        self._broadcast_raw(encode(mtype, self._next_seq(), **fields))

    def _broadcast_raw(self, frame: bytes) -> None:
        with self.lock:
            for c in list(self.conns.values()):
                self._queue(c, frame)
                self.counters["frames_out"] += 1

    def _queue(self, c: _Conn, data: bytes) -> None:
        """Append to a connection's output and try to write now; the serve loop writes the rest."""
        if len(c.out) + len(data) > MAX_OUTBUF:
            self.counters["dropped_bytes"] += len(data)
            return
        c.out += data
        self._flush(c)

    def _flush(self, c: _Conn) -> None:
        if not c.out:
            return
        try:
            n = c.sock.send(c.out) if c.sock is not None else os.write(c.fd, c.out)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            if c.sock is not None:
                log.info("serial: client %s gone: %s", c.name, e)
                self._drop(c)
                return
            # a pty nobody has opened yet fills up: drop what does not fit, the reader is absent
            self.counters["dropped_bytes"] += len(c.out)
            c.out.clear()
            return
        self.counters["bytes_out"] += n
        del c.out[:n]
        if c.out and c.sock is None and n == 0:
            # the pty buffer is full: nobody reads the slave end; keep the newest frames only
            self.counters["dropped_bytes"] += len(c.out)
            c.out.clear()

    def _drop(self, c: _Conn) -> None:
        with self.lock:
            self.conns.pop(c.fd, None)
            try:
                self.sel.unregister(c.sock if c.sock is not None else c.fd)
            except (KeyError, ValueError):
                pass
            if c.sock is not None:
                c.sock.close()

    def _status_loop(self) -> None:
        # at speed 0 (flat out) scenario time has no pace: report once per wall interval instead
        speed = self.clock.speed or 1.0
        while not self._closed.wait(self.section.status_interval_s / speed):
            self._broadcast_raw(self._status_frame())

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                events = self.sel.select(timeout=0.05)
            except (OSError, ValueError):
                return
            for key, _ in events:
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.data)
            now = time.monotonic()
            for c in list(self.conns.values()):
                # a partial frame left hanging is a half frame even if the client sends nothing more
                self._handle(c, c.parser.poll(now))
            with self.lock:
                for c in list(self.conns.values()):
                    self._flush(c)

    def _accept(self) -> None:
        try:
            sock, addr = self.lsock.accept()
        except OSError:
            return
        with self.lock:
            n_clients = sum(1 for c in self.conns.values() if c.sock is not None)
            if time.monotonic() < self._disconnected_until or n_clients >= self.section.max_clients:
                self.counters["refused"] += 1
                sock.close()
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(f"{addr[0]}:{addr[1]}", sock.fileno(), sock)
            self.conns[conn.fd] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
            self.counters["clients"] += 1
        log.info("serial: client %s connected", conn.name)

    def _read(self, c: _Conn) -> None:
        try:
            data = c.sock.recv(4096) if c.sock is not None else os.read(c.fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # a pty whose slave end closed reads EIO until someone opens it again: not an error
            data = b"" if c.sock is not None else None
            if data is None:
                return
        if not data:
            if c.sock is not None:
                log.info("serial: client %s disconnected", c.name)
                self._drop(c)
            return
        self._handle(c, c.parser.feed(data, time.monotonic()))

    def _handle(self, c: _Conn, items: list) -> None:
        for item in items:
            if isinstance(item, FrameError):
                self._answer_error(c, item)
            else:
                self._command(c, item)

    def _reply(self, c: _Conn, mtype: MsgType, **fields) -> None:
        with self.lock:
            self._queue(c, encode(mtype, self._next_seq(), **fields))
            self.counters["frames_out"] += 1

    def _answer_error(self, c: _Conn, err: FrameError) -> None:
        self.counters["errors_in"] += 1
        log.info("serial: malformed input from %s: %s (%s)", c.name, err.code.name, err.detail)
        self._reply(c, MsgType.ERROR, code=int(err.code), bad_seq=err.seq, text=err.detail[:120])

    def _command(self, c: _Conn, msg: Message) -> None:
        self.counters["frames_in"] += 1
        if msg.type not in COMMANDS:
            self._answer_error(c, FrameError(ErrorCode.NOT_A_COMMAND,
                                             f"{msg.type.name} is sent by the scanner, not to it", 0, msg.seq))
            return
        self.counters["commands"] += 1
        result = AckResult.OK
        after = None
        with self.lock:
            s = self.state
            if msg.type == MsgType.STOP_BELT:
                log.warning("serial: STOP BELT from %s: %s", c.name, msg.fields.get("reason", ""))
                s.belt_running = False
                self._resume_belt_after_interlock = False
                after = self._broadcast_belt
            elif msg.type == MsgType.START_BELT:
                if s.interlock_open:
                    result = AckResult.REFUSED
                else:
                    s.belt_running = True
                    after = self._broadcast_belt
            elif msg.type == MsgType.SET_BELT_SPEED:
                s.speed_mm_s = msg.fields["speed_mm_s"]
                after = self._broadcast_belt
            elif msg.type == MsgType.GENERATOR_ON:
                if s.interlock_open or s.fault_code:
                    result = AckResult.REFUSED
                else:
                    s.generator_on = True
                    after = self._broadcast_generator
            elif msg.type == MsgType.GENERATOR_OFF:
                s.generator_on = False
                after = self._broadcast_generator
            elif msg.type == MsgType.SET_GENERATOR:
                s.kv_x10, s.ma_x100 = msg.fields["kv_x10"], msg.fields["ma_x100"]
                after = self._broadcast_generator
        self._reply(c, MsgType.ACK, acked_type=int(msg.type), acked_seq=msg.seq, result=int(result))
        if msg.type == MsgType.STATUS_REQUEST:
            with self.lock:
                self._queue(c, self._status_frame())
        if after is not None:
            after()


def start(section: SerialSection, *, seed: int, clock: SimClock, state_dir: Path | None = None) -> SerialDevice:
    """The runner's entry point; `state_dir` is accepted like every device's, the link keeps no files."""
    return SerialDevice(section, seed=seed, clock=clock, state_dir=state_dir)
