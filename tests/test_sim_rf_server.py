"""The simulated rtl_tcp server, checked byte by byte over real sockets with a bare client."""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.configfile import ConfigError, validate_data
from drivers.rtltcp_protocol import Cmd, pack_command
from hw_sim.clock import SimClock
from hw_sim.rf.band import Band, Emitter
from hw_sim.rf.device import ReceiverSection, start
from hw_sim.rf.rtltcp_server import RtlTcpServer
from tests.conftest import wait_for


def make_server(speed: float = 1.0, emitters=None, **kw) -> RtlTcpServer:
    band = Band(emitters or [Emitter("nfm", 446.05e6, 15.0)], center_hz=446.1e6, rate_hz=2.4e6,
                rng=np.random.default_rng(0))
    return RtlTcpServer(band, clock=SimClock(speed), **kw).start()


def recv_exact(s: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


@pytest.fixture
def server():
    srv = make_server()
    yield srv
    srv.close()


def connect(srv: RtlTcpServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    return s


def test_greeting_is_rtl0_r820t_29_gains(server):
    with connect(server) as s:
        g = recv_exact(s, 12)
    assert g[:4] == b"RTL0"
    assert struct.unpack(">II", g[4:]) == (5, 29)
    assert g == b"RTL0\x00\x00\x00\x05\x00\x00\x00\x1d"


def test_binds_loopback_by_default(server):
    assert server.host == "127.0.0.1"
    assert server._listener.getsockname()[0] == "127.0.0.1"


def test_stream_is_unsigned_8bit_iq_centred_on_127(server):
    with connect(server) as s:
        recv_exact(s, 12)
        data = np.frombuffer(recv_exact(s, 200000), np.uint8)
    assert 120 < data.mean() < 135
    assert 1.5 < data.astype(float).std() < 40  # a few LSB of noise, far from clipping
    assert len(np.unique(data)) > 12


def is_counter(d: np.ndarray) -> bool:
    return bool(np.all(np.diff(d.astype(np.int16)) % 256 == 1))


def until_counter(s: socket.socket, limit: int = 50_000_000) -> None:
    """Read past the samples made before test mode took effect (however many are in flight),
    ending on a pair boundary inside the counter stream."""
    seen = 0
    while seen < limit:
        d = np.frombuffer(recv_exact(s, 4096), np.uint8)
        seen += len(d)
        if is_counter(d):
            return
    raise AssertionError("test mode never started")


def send(s: socket.socket, *cmds: tuple[int, int]) -> None:
    s.sendall(b"".join(pack_command(c, p) for c, p in cmds))


def test_every_command_is_applied(server):
    with connect(server) as s:
        recv_exact(s, 12)
        send(s, (Cmd.SET_FREQ, 433_920_000), (Cmd.SET_GAIN_MODE, 1), (Cmd.SET_GAIN, 300),
             (Cmd.SET_FREQ_CORRECTION, -12 & 0xFFFFFFFF), (Cmd.SET_IF_GAIN, (1 << 16) | 30),
             (Cmd.SET_AGC_MODE, 1), (Cmd.SET_DIRECT_SAMPLING, 2), (Cmd.SET_RTL_XTAL, 28_800_100),
             (Cmd.SET_TUNER_XTAL, 28_799_900), (Cmd.SET_BIAS_TEE, 1))
        wait_for(lambda: server.stats()["commands"] >= 10, 5, what="commands applied")
        st_ = server.stats()
        assert st_["center_hz"] == 433_920_000 and server.band.center_hz == 433_920_000
        assert st_["gain_mode"] == 1 and st_["gain_tenths"] == 297  # nearest R820T gain to 30.0 dB
        assert st_["ppm"] == -12 and server.band.correction_ppm == -12
        assert st_["if_gain"] == {"1": 30}
        assert (st_["agc"], st_["direct_sampling"], st_["bias_tee"]) == (1, 2, 1)
        assert (st_["rtl_xtal"], st_["tuner_xtal"]) == (28_800_100, 28_799_900)
        send(s, (Cmd.SET_GAIN_BY_INDEX, 28))
        wait_for(lambda: server.stats()["gain_tenths"] == 496, 5, what="gain by index")
        send(s, (Cmd.SET_GAIN_BY_INDEX, 29), (Cmd.SET_OFFSET_TUNING, 1), (Cmd.SET_FREQ, 5_000_000))
        wait_for(lambda: server.stats()["refused_commands"] == 3, 5, what="refusals")
        assert server.stats()["gain_tenths"] == 496 and server.stats()["center_hz"] == 433_920_000


@pytest.mark.parametrize(("rate", "ok"), [(225001, True), (250000, True), (300000, True), (900001, True),
                                          (1024000, True), (2400000, True), (3200000, True), (225000, False),
                                          (300001, False), (900000, False), (3200001, False), (0, False)])
def test_sample_rates_as_librtlsdr_accepts_them(server, rate, ok):
    with connect(server) as s:
        recv_exact(s, 12)
        send(s, (Cmd.SET_SAMPLE_RATE, 2_400_000), (Cmd.SET_SAMPLE_RATE, rate))
        wait_for(lambda: server.stats()["commands"] >= 2, 5, what="rate command")
    assert server.stats()["rate_hz"] == (rate if ok else 2_400_000)
    assert server.stats()["refused_commands"] == (0 if ok else 1)


def test_real_time_pacing_follows_the_sample_rate():
    srv = make_server(speed=1.0)
    try:
        with connect(srv) as s:
            recv_exact(s, 12)
            send(s, (Cmd.SET_SAMPLE_RATE, 250_000))
            recv_exact(s, 100_000)  # whatever was queued at 2.4 MS/s before the command
            t0 = time.monotonic()
            recv_exact(s, 500_000)  # one second of 250 kS/s
            dt = time.monotonic() - t0
        assert 0.7 < dt < 3.0, dt  # not faster than the sample rate (upper bound: a loaded box)
    finally:
        srv.close()


def test_speed_zero_is_not_paced_by_the_clock():
    """Flat out, scenario time is the sample count (no clock to wait for); how fast that is,
    bench/bench_sim_rf.py measures."""
    srv = make_server(speed=0.0, emitters=[])
    try:
        time.sleep(0.3)  # wall time that must not show up in the stream's time
        with connect(srv) as s:
            recv_exact(s, 12)
            recv_exact(s, 2 * 600_000, timeout=30)
        st_ = srv.stats()
        assert st_["scenario_t"] == pytest.approx(st_["samples_sent"] / 2.4e6, abs=0.1)
        assert st_["dropped_samples"] == 0
    finally:
        srv.close()


def test_gain_raises_the_level(server):
    def power(gain_cmds):
        with connect(server) as s:
            recv_exact(s, 12)
            send(s, *gain_cmds)
            recv_exact(s, 400_000)
            x = (np.frombuffer(recv_exact(s, 400_000), np.uint8).astype(float) - 127.5) / 127.5
        return np.mean(x**2)

    low = power([(Cmd.SET_GAIN_MODE, 1), (Cmd.SET_GAIN_BY_INDEX, 0)])
    high = power([(Cmd.SET_GAIN_MODE, 1), (Cmd.SET_GAIN_BY_INDEX, 28)])
    assert high > 10 * low


def test_test_mode_sends_the_8bit_counter(server):
    with connect(server) as s:
        recv_exact(s, 12)
        send(s, (Cmd.SET_TEST_MODE, 1))
        until_counter(s)
        d = np.frombuffer(recv_exact(s, 100_000), np.uint8)
    assert is_counter(d)


def test_unknown_and_partial_commands_are_counted_not_fatal(server):
    with connect(server) as s:
        recv_exact(s, 12)
        s.sendall(bytes([0x42, 0, 0, 0, 1, 0xFF, 1, 2, 3, 4]))
        wait_for(lambda: server.stats()["bad_commands"] == 2, 5, what="bad commands counted")
        s.sendall(bytes([0x01, 0x19]))  # 2 bytes of a 5-byte command, then hang up
        recv_exact(s, 1000)
    wait_for(lambda: server.stats()["partial_commands"] == 1, 5, what="partial command counted")
    with connect(server) as s:  # and the server still serves
        assert recv_exact(s, 12)[:4] == b"RTL0"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=0, max_size=300))
def test_random_command_bytes_never_kill_the_server(server, junk):
    with connect(server) as s:
        recv_exact(s, 12)
        s.sendall(junk)
        recv_exact(s, 2000)
    with connect(server) as s:
        assert recv_exact(s, 12)[:4] == b"RTL0"
        recv_exact(s, 2000)


def test_retune_moves_the_emitter_in_the_stream(server):
    def peak_offset(center):
        with connect(server) as s:
            recv_exact(s, 12)
            send(s, (Cmd.SET_FREQ, center))
            recv_exact(s, 300_000)
            x = np.frombuffer(recv_exact(s, 2 * 65536), np.uint8).astype(np.float32)
        z = ((x - 127.5) / 127.5).view(np.complex64)
        spec = np.abs(np.fft.fftshift(np.fft.fft(z))) ** 2
        f = np.fft.fftshift(np.fft.fftfreq(len(z), 1 / 2.4e6))
        spec[np.abs(f) < 5e3] = 0  # ignore the DC spike
        return f[np.argmax(spec)]

    assert abs(peak_offset(446_100_000) - (446.05e6 - 446.1e6)) < 8e3
    assert abs(peak_offset(445_500_000) - (446.05e6 - 445.5e6)) < 8e3


def test_fault_drop_client_refuses_then_comes_back():
    srv = make_server()
    try:
        s = connect(srv)
        recv_exact(s, 12)
        srv.inject("drop_client", 1.0)
        with pytest.raises((ConnectionError, OSError)):
            recv_exact(s, 50_000_000, timeout=5)
        s.close()
        time.sleep(0.2)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2)
        time.sleep(1.2)
        with connect(srv) as s2:
            assert recv_exact(s2, 12)[:4] == b"RTL0"
    finally:
        srv.close()


def test_fault_stall_stops_the_bytes_but_keeps_the_connection():
    srv = make_server()
    try:
        with connect(srv) as s:
            recv_exact(s, 12)
            recv_exact(s, 100_000)
            srv.inject("stall", 1.5)
            s.settimeout(5)
            last, gaps, got = time.monotonic(), [], 0
            while got < 2_000_000:  # ~0.4 s of stream after the stall
                c = s.recv(1 << 20)
                assert c, "the connection must stay open through a stall"
                now = time.monotonic()
                gaps.append(now - last)
                last, got = now, got + len(c)
            assert max(gaps) > 1.2  # silence for the stall, then the stream resumes
    finally:
        srv.close()


def test_fault_short_writes_split_iq_pairs_without_losing_alignment():
    srv = make_server()
    try:
        with connect(srv) as s:
            recv_exact(s, 12)
            send(s, (Cmd.SET_TEST_MODE, 1))
            until_counter(s)
            srv.inject("short_writes", 2.0)
            s.settimeout(5)
            sizes, data = [], bytearray()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.5:  # past what was in flight, into the short writes
                c = s.recv(65536)
                sizes.append(len(c))
                data += c
        assert is_counter(np.frombuffer(bytes(data), np.uint8))
        assert any(n % 2 for n in sizes)
    finally:
        srv.close()


def test_fault_garbage_greets_with_something_else():
    srv = make_server()
    try:
        srv.inject("garbage", 1.0)
        with connect(srv) as s:
            assert recv_exact(s, 12)[:4] != b"RTL0"
        time.sleep(1.1)
        with connect(srv) as s:
            assert recv_exact(s, 12)[:4] == b"RTL0"
    finally:
        srv.close()


def test_several_receivers_on_several_ports_from_a_scenario_section():
    stop = threading.Event()
    secs = [ReceiverSection.model_validate({"id": f"rx{i}", "center_hz": 446.1e6 + i * 1e6,
                                            "emitters": [{"class": "nfm", "freq_hz": 446.05e6, "snr_db": 10,
                                                          "on": [[0, 5]]}]}) for i in range(2)]
    devs = [start(sec, seed=i, clock=SimClock(1.0), stop=stop) for i, sec in enumerate(secs)]
    try:
        ports = {int(d.urls["iq"].rsplit(":", 1)[1]) for d in devs}
        assert len(ports) == 2
        for p in ports:
            with socket.create_connection(("127.0.0.1", p), timeout=5) as s:
                assert recv_exact(s, 12)[:4] == b"RTL0"
                recv_exact(s, 10000)
        assert devs[0].truth()[0]["cls"] == "nfm" and devs[0].truth()[0]["stop_s"] == 5
        assert devs[0].stats()["clients"] == 1
    finally:
        stop.set()
        for d in devs:
            d.close()


def test_receiver_section_refuses_bad_emitters_with_the_key():
    for bad, word in [({"class": "tv", "freq_hz": 1e8, "snr_db": 3}, "class"),
                      ({"class": "lora", "freq_hz": 868e6, "snr_db": 3, "params": {"sf": 20}}, "SF"),
                      ({"class": "nfm", "freq_hz": 446e6, "snr_db": 3, "on": [[5, 1]]}, "ends before"),
                      ({"class": "nfm", "freq_hz": 446e6, "snr_db": 3, "colour": 1}, "colour")]:
        with pytest.raises(ConfigError) as e:
            validate_data(ReceiverSection, {"id": "rx", "emitters": [bad]}, "scenario.toml", None)
        assert word in str(e.value)
