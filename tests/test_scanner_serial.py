"""The simulated scanner's control link against the agent's client, over a pty AND socket://.

Everything here is real: the simulator's selector loop, an os.openpty pair, TCP sockets, and
pyserial (serial_for_url) on the client side.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import serial

from drivers.registry import open_control_link
from drivers.scanner_link import ScannerLink, port_args
from drivers.scanner_protocol import ErrorCode, FrameParser, MsgType, encode
from hw_sim.clock import SimClock
from hw_sim.scanner_serial import SerialSection, start
from tests.conftest import wait_for


@pytest.fixture
def device():
    dev = start(SerialSection(status_interval_s=0.2), seed=7, clock=SimClock(1.0))
    yield dev
    dev.close()


class Collector:
    """Runs link.events() in a thread and keeps what it yields."""

    def __init__(self, link: ScannerLink):
        self.link = link
        self.stop = threading.Event()
        self.events: list = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for ev in self.link.events(self.stop):
            self.events.append(ev)

    def of(self, kind: str, **data):
        return [e for e in self.events if e.kind == kind and all(e.data.get(k) == v for k, v in data.items())]

    def close(self):
        self.stop.set()
        self.link.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def control_urls(dev):
    return [dev.urls["control"], f"serial://{dev.urls['control_pty']}?baud=115200"]


@pytest.mark.parametrize("which", ["socket", "pty"])
def test_bag_events_status_and_stop_belt(device, which):
    url = control_urls(device)[0 if which == "socket" else 1]
    col = Collector(open_control_link(url, ack_timeout_s=10))
    try:
        wait_for(lambda: col.link.health().connected and col.of("status", type="status"), what="first status")
        device.bag_in("BAG-0001")
        device.bag_out("BAG-0001")
        wait_for(lambda: col.of("bag_out"), what="bag_out")
        ins = col.of("bag_in")
        assert [e.bag_id for e in ins] == ["BAG-0001"]
        assert col.of("bag_out")[0].bag_id == "BAG-0001"
        assert device.belt_running
        assert col.link.stop_belt("weapon on bag BAG-0001") is True
        assert not device.belt_running
        wait_for(lambda: col.of("status", type="belt", running=False), what="belt stopped report")
        # stays stopped until someone starts it again
        time.sleep(0.3)
        assert not device.belt_running
        assert col.link.start_belt() is True
        assert device.belt_running
        st = wait_for(lambda: (s := col.link.last_status) and s["bags"] and s["belt_running"] and s,
                      what="status with a bag and the belt running")
        assert st["kv"] == 160.0 and st["ma"] == 1.0 and st["interlock_open"] is False
        h = col.link.health()
        assert h.errors == 0 and h.items > 5 and h.state == "ok"
    finally:
        col.close()


def test_pty_and_socket_at_once_and_several_socket_clients(device):
    urls = control_urls(device)
    cols = [Collector(open_control_link(u)) for u in [urls[0], urls[0], urls[1]]]
    try:
        for c in cols:
            wait_for(lambda c=c: c.link.health().connected, what="connected")
        time.sleep(0.2)
        device.bag_in("B42")
        for c in cols:
            wait_for(lambda c=c: c.of("bag_in"), what="bag_in on every client")
            assert c.of("bag_in")[-1].bag_id == "B42"
        assert device.stats()["connections"] == 3  # two sockets + the pty
    finally:
        for c in cols:
            c.close()


def test_malformed_frames_get_error_frames_not_a_crash(device):
    host, port = device.urls["control"].removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        good = encode(MsgType.STATUS_REQUEST, 9)
        bad_crc = bytearray(encode(MsgType.STOP_BELT, 10, reason="x"))
        bad_crc[-1] ^= 0xFF
        wrong_way = encode(MsgType.BAG_IN, 11, t_ms=0, bag_id="not yours")
        unknown = bytes([0xA5, 0, 0, 0x77, 12])
        from drivers.scanner_protocol import crc16
        unknown += crc16(unknown[1:]).to_bytes(2, "big")
        s.sendall(b"hello garbage" + bytes(bad_crc) + wrong_way + unknown + good)
        parser = FrameParser()
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got += [m for m in parser.feed(s.recv(4096)) if not hasattr(m, "code")]
            if any(m.type == MsgType.ACK and m.fields["acked_seq"] == 9 for m in got):
                break
        errors = [m for m in got if m.type == MsgType.ERROR]
        codes = {m.fields["code"] for m in errors}
        assert {ErrorCode.GARBAGE, ErrorCode.BAD_CRC, ErrorCode.NOT_A_COMMAND, ErrorCode.UNKNOWN_TYPE} <= codes
        assert any(m.type == MsgType.ACK and m.fields["acked_seq"] == 9 for m in got)
    assert device.belt_running  # the corrupted stop-belt was not obeyed
    assert device.stats()["errors_in"] >= 4
    # the device still serves a fresh client
    col = Collector(open_control_link(device.urls["control"]))
    try:
        wait_for(lambda: col.of("status"), what="status after abuse")
    finally:
        col.close()


def test_garbage_and_half_frames_are_counted_and_the_link_recovers():
    # a quiet line (status every 30 s) so that a cut frame is found by the inter-byte timeout
    device = start(SerialSection(status_interval_s=30), seed=7, clock=SimClock(1.0))
    col = Collector(ScannerLink(device.urls["control"], frame_timeout_s=0.3))
    try:
        wait_for(lambda: col.link.health().connected, what="connected")
        time.sleep(0.2)
        device.inject("half_frame", 0.1, {"gap_s": 0.6})
        wait_for(lambda: col.of("error", error="half_frame"), timeout=10, what="half frame error")
        device.inject("garbage", 0.3, {"bytes": 64})
        wait_for(lambda: col.of("error", error="garbage"), timeout=10, what="garbage error")
        time.sleep(0.5)
        device.bag_in("AFTER-FAULTS")
        wait_for(lambda: any(e.bag_id == "AFTER-FAULTS" for e in col.of("bag_in")), what="bag after faults")
        assert col.link.request_status() is True
        wait_for(lambda: col.of("status", type="status"), what="status after faults")
        h = col.link.health()
        assert h.errors >= 2 and h.connected
        assert col.link.parser.errors["half_frame"] >= 1 and col.link.parser.garbage_bytes >= 64
        assert device.stats()["garbage_bytes"] >= 64
    finally:
        col.close()
        device.close()


def test_a_cut_frame_followed_by_traffic_is_dropped_and_the_next_frame_read(device):
    col = Collector(ScannerLink(device.urls["control"]))
    try:
        wait_for(lambda: col.of("status"), what="first status")
        device.inject("half_frame", 0.5, {"gap_s": 0.05})
        time.sleep(0.6)
        device.bag_in("NEXT")
        wait_for(lambda: any(e.bag_id == "NEXT" for e in col.of("bag_in")), what="bag after cut frames")
        assert col.link.health().errors >= 1
    finally:
        col.close()


def test_interlock_and_generator_fault_events(device):
    col = Collector(open_control_link(device.urls["control"], ack_timeout_s=10))
    try:
        wait_for(lambda: col.of("status"), what="first status")
        device.inject("interlock_open", 0.4, {})
        wait_for(lambda: col.of("interlock", open=True), what="interlock open")
        assert not device.belt_running
        assert col.link.start_belt() is False  # refused while the interlock is open
        wait_for(lambda: col.of("interlock", open=False), what="interlock closed")
        wait_for(lambda: device.belt_running, what="belt resumes")
        device.inject("generator_fault", 0.3, {"code": 0x0101})
        wait_for(lambda: col.of("fault", active=True), what="fault")
        f = col.of("fault", active=True)[0]
        assert f.data["code"] == 0x0101 and "generator" in f.data["text"]
        wait_for(lambda: col.of("fault", active=False), what="fault cleared")
    finally:
        col.close()


def test_port_vanishes_and_the_client_reconnects_with_backoff(device):
    col = Collector(ScannerLink(device.urls["control"], backoff_base_s=0.05, backoff_cap_s=0.2))
    try:
        wait_for(lambda: col.of("status"), what="first status")
        device.inject("disconnect", 0.6, {})
        wait_for(lambda: col.of("error", error="link_lost"), what="link lost")
        lost_at = len(col.events)
        # a refused connection still opens at the TCP level, so "reconnected" means data flows again
        wait_for(lambda: any(e.kind == "status" for e in col.events[lost_at:]) and device.stats()["refused"],
                 timeout=10, what="statuses after the port came back")
        wait_for(lambda: [e for e in col.events[lost_at:] if e.kind == "status"][-1].t > time.time() - 0.1,
                 timeout=10, what="a fresh status")
        assert col.link.health().reconnects >= 1
        device.bag_in("BACK")
        wait_for(lambda: any(e.bag_id == "BACK" for e in col.of("bag_in")), what="events after reconnect")
        assert device.stats()["refused"] >= 1  # it tried while the port was gone
    finally:
        col.close()


def test_stall_is_reported_then_cleared():
    # a TCP peer that accepts and then says nothing: the link must say it is stalled
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    conns = []
    threading.Thread(target=lambda: conns.append(srv.accept()[0]), daemon=True).start()
    col = Collector(ScannerLink(f"socket://127.0.0.1:{port}", stall_s=0.4, reopen_after_stall_s=30))
    try:
        wait_for(lambda: col.of("error", error="stall"), what="stall")
        h = col.link.health()
        assert h.stalls == 1 and h.state == "stalled"
        conns[0].sendall(encode(MsgType.BAG_IN, 1, t_ms=0, bag_id="late"))
        wait_for(lambda: col.of("bag_in"), what="data after the stall")
        assert col.link.health().state == "ok"
    finally:
        col.close()
        for c in conns:
            c.close()
        srv.close()


def test_unreachable_port_is_an_error_event_not_an_exception():
    col = Collector(ScannerLink("serial:///dev/does-not-exist?baud=9600", backoff_base_s=0.01, backoff_cap_s=0.05))
    try:
        wait_for(lambda: len(col.of("error", error="open_failed")) >= 2, what="repeated open failures")
        h = col.link.health()
        assert not h.connected and h.errors >= 2 and "does-not-exist" in h.last_error
        with pytest.raises(ConnectionError):
            col.link.stop_belt("no link")
    finally:
        col.close()


def test_url_mapping():
    assert port_args("serial:///dev/ttyUSB0?baud=9600") == ("/dev/ttyUSB0", {"baudrate": 9600})
    assert port_args("serial:///dev/ttyS1") == ("/dev/ttyS1", {"baudrate": 115200})
    assert port_args("socket://127.0.0.1:7001") == ("socket://127.0.0.1:7001", {})
    with pytest.raises(ValueError, match="baud"):
        port_args("serial:///dev/ttyS1?baud=fast")


def test_loop_url_round_trip():
    # pyserial's loop:// echoes what we write: a stop-belt frame comes back and parses as one
    link = open_control_link("loop://")
    stop = threading.Event()
    got = []

    def run():
        for ev in link.events(stop):
            got.append(ev)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    wait_for(lambda: link.health().connected, what="loop open")
    link.port.write(encode(MsgType.FAULT, 3, t_ms=1_700_000_000_000, code=0x0105, active=1, text="hot"))
    wait_for(lambda: got, what="looped frame")
    assert got[0].kind == "fault" and got[0].data["text"] == "hot" and got[0].data["device_t"] == 1.7e9
    stop.set()
    link.close()
    th.join(5)


def test_pyserial_socket_client_sees_frames_directly(device):
    # any pyserial user (not only our client) can talk to the simulator
    port = serial.serial_for_url(device.urls["control"], timeout=0.5)
    try:
        port.write(encode(MsgType.STATUS_REQUEST, 1))
        parser = FrameParser()
        msgs = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(m.type == MsgType.ACK for m in msgs):
            msgs += [m for m in parser.feed(port.read(64)) if not hasattr(m, "code")]
        assert any(m.type == MsgType.ACK and m.fields["acked_type"] == MsgType.STATUS_REQUEST for m in msgs)
    finally:
        port.close()


def test_pty_vanishing_is_link_lost_then_counted_retries():
    dev = start(SerialSection(status_interval_s=0.2), seed=1, clock=SimClock(1.0))
    col = Collector(ScannerLink(f"serial://{dev.urls['control_pty']}", backoff_base_s=0.05, backoff_cap_s=0.1))
    try:
        wait_for(lambda: col.of("status"), what="status over the pty")
        dev.close()  # the scanner's port is gone (a USB adapter unplugged)
        wait_for(lambda: col.of("error", error="link_lost"), what="loss noticed")
        # the device path is gone (or, on a busy box, reused by another pty): retried, counted
        wait_for(lambda: len(col.of("error", error="open_failed")) >= 2 or col.link.health().reconnects,
                 what="retries with backoff")
        h = col.link.health()
        assert h.errors >= 2 and col.thread.is_alive()
    finally:
        col.close()
        dev.close()


def test_serial_section_refuses_bad_keys_by_name(tmp_path):
    from common.configfile import ConfigError, validate_data

    with pytest.raises(ConfigError) as ei:
        validate_data(SerialSection, {"socket_port": 70000, "baud": 9600}, "[serial]", tmp_path)
    text = " ".join(ei.value.problems)
    assert "socket_port" in text and "unknown key 'baud'" in text
    s = validate_data(SerialSection, {"socket_port": 0, "pty": False}, "[serial]", tmp_path)
    dev = start(s, seed=0, clock=SimClock(1.0))
    try:
        assert set(dev.urls) == {"control"}  # no pty when the scenario says so
    finally:
        dev.close()
