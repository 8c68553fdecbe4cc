"""The rtltcp:// IQ source against the simulator's rtl_tcp server and against hostile byte streams."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from drivers.registry import open_iq_source
from drivers.rtltcp import RtlTcpSource, StreamParser
from drivers.rtltcp_protocol import ProtocolError, pack_greeting
from drivers.scanplan import Hop, fixed, from_options, span
from hw_sim.clock import SimClock
from hw_sim.rf.device import ReceiverSection, start
from hw_sim.rf.emitters import make_waveform


def receiver(emitters: list[dict], speed: float = 1.0, **kw):
    stop = threading.Event()
    sec = ReceiverSection.model_validate({"id": "rx", "emitters": emitters, **kw})
    return start(sec, seed=3, clock=SimClock(speed), stop=stop), stop


def take(src, stop, n, on_block=None, timeout=20.0):
    out = []
    deadline = time.monotonic() + timeout
    for b in src.blocks(stop):
        out.append(b)
        if on_block:
            on_block(len(out), b)
        if len(out) >= n or time.monotonic() > deadline:
            break
    return out


def test_registry_opens_rtltcp_and_checks_options():
    src = open_iq_source("rtltcp://127.0.0.1:1?gain=20&ppm=-3", center_hz=446e6)
    assert isinstance(src, RtlTcpSource) and src.gain_db == 20.0 and src.ppm == -3
    with pytest.raises(ValueError, match="unknown rtltcp"):
        open_iq_source("rtltcp://127.0.0.1:1?gian=20", center_hz=446e6)
    with pytest.raises(ValueError, match="center_hz"):
        open_iq_source("rtltcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="bad option value.*ppm"):
        open_iq_source("rtltcp://127.0.0.1:1?ppm=lots", center_hz=446e6)


def test_spectrum_shows_each_scheduled_emitter_at_its_frequency_and_snr():
    fc, rate = 434.0e6, 2.4e6
    ems = [{"class": "nfm", "freq_hz": 433.4e6, "snr_db": 12.0},
           {"class": "fsk2", "freq_hz": 434.35e6, "snr_db": 6.0},
           {"class": "lora", "freq_hz": 433.7e6, "snr_db": 3.0, "params": {"sf": 8}},
           {"class": "wfm", "freq_hz": 434.8e6, "snr_db": 18.0},
           {"class": "am", "freq_hz": 434.6e6, "snr_db": 9.0, "on": [[5000.0, 6000.0]]}]
    dev, stop = receiver(ems, speed=0.0, flaws={"dc_dbfs": -40.0, "ppm": 15.0})
    try:
        src = open_iq_source(dev.urls["iq"] + "?ppm=15", center_hz=fc, rate_hz=rate, block_samples=1 << 18)
        blocks = take(src, stop, 10)
        src.close()
    finally:
        stop.set()
        dev.close()
    assert all(b.center_hz == fc and b.rate_hz == rate and b.samples.dtype == np.complex64 for b in blocks)
    assert [b.seq for b in blocks] == list(range(len(blocks)))
    x = np.concatenate([b.samples for b in blocks[1:]])
    f, p = signal.welch(x, rate, nperseg=8192, return_onesided=False)
    bws = {e["class"]: make_waveform(e["class"], np.random.default_rng(0), rate, **e.get("params", {})).bandwidth_hz
           for e in ems}
    occupied = np.zeros(len(f), bool)
    for e in ems:
        occupied |= np.abs(f - (e["freq_hz"] - fc)) <= bws[e["class"]] / 2 + 20e3
    n0 = np.mean(p[~occupied & (np.abs(f) > 30e3) & (np.abs(f) < 0.45 * rate)])
    df = f[1] - f[0]
    for e in ems:
        inside = np.abs(f - (e["freq_hz"] - fc)) <= bws[e["class"]] / 2
        snr = 10 * np.log10(max((p[inside] - n0).sum() * df, 1e-30) / (n0 * bws[e["class"]]))
        if "on" in e:
            assert snr < -10, "an emitter scheduled for later must not be on air"
        else:
            assert abs(snr - e["snr_db"]) < 1.0, (e["class"], snr)
            # and at its frequency: the ppm correction put it back where it belongs
            sub = np.where(inside, p, 0)
            assert abs(f[np.argmax(sub)] - (e["freq_hz"] - fc)) < bws[e["class"]] / 2


def test_scan_plan_retunes_and_stamps_each_hop():
    dev, stop = receiver([{"class": "wfm", "freq_hz": 100.5e6, "snr_db": 25.0, "params": {"tone_hz": 1000.0}},
                          {"class": "nfm", "freq_hz": 446.05e6, "snr_db": 25.0}])
    try:
        scan = [{"center_hz": 100.0e6, "rate_hz": 2.4e6, "dwell_s": 0.2},
                {"center_hz": 446.3e6, "rate_hz": 1.2e6, "dwell_s": 0.2}]
        src = RtlTcpSource(dev.urls["iq"], scan=scan, block_samples=1 << 16)
        blocks = take(src, stop, 40)
        src.close()
        retunes = dev.stats()["retunes"]
    finally:
        stop.set()
        dev.close()
    hops = {b.hop for b in blocks}
    assert hops == {0, 1} and retunes >= 3
    for b in blocks:
        assert (b.center_hz, b.rate_hz) == ((100.0e6, 2.4e6) if b.hop == 0 else (446.3e6, 1.2e6))
    for hop, (want, bw) in {0: (0.5e6, 200e3), 1: (446.05e6 - 446.3e6, 12.5e3)}.items():
        bs = [b for b in blocks if b.hop == hop]
        x = np.concatenate([b.samples for b in bs])
        spec = np.abs(np.fft.fftshift(np.fft.fft(x))) ** 2
        f = np.fft.fftshift(np.fft.fftfreq(len(x), 1 / bs[0].rate_hz))
        inside = spec[np.abs(f - want) < bw / 2].sum() / len(f[np.abs(f - want) < bw / 2])
        assert inside > 30 * np.median(spec), f"hop {hop}: emitter not where the hop's tuning puts it"
    # settle: no block of hop 1 carries hop 0's broadcast station (at +0.5 MHz of hop 0's tuning)
    for b in blocks:
        if b.hop == 1:
            spec = np.abs(np.fft.fftshift(np.fft.fft(b.samples))) ** 2
            f = np.fft.fftshift(np.fft.fftfreq(len(b.samples), 1 / b.rate_hz))
            assert spec[np.abs(f - 0.5e6) < 80e3].mean() < 5 * np.median(spec), f"block {b.seq} holds hop 0 data"
    # dwell is counted in samples: every visit of a hop delivers ~dwell * rate of them
    first_visit = []
    for b in blocks:
        if b.hop != 0:
            break
        first_visit.append(len(b.samples))
    assert sum(first_visit) == int(0.2 * 2.4e6)


def test_reconnects_after_the_server_drops_it():
    dev, stop = receiver([{"class": "nfm", "freq_hz": 446.05e6, "snr_db": 10.0}])
    try:
        src = open_iq_source(dev.urls["iq"], center_hz=446.1e6, block_samples=1 << 15, backoff_base_s=0.05)
        blocks = take(src, stop, 30, on_block=lambda i, b: i == 5 and dev.inject("drop_client", 0.5))
        h = src.health()
        src.close()
    finally:
        stop.set()
        dev.close()
    assert len(blocks) == 30
    assert [b.seq for b in blocks] == list(range(30))
    assert h.reconnects >= 1 and h.errors >= 1 and h.connected and h.state == "ok"
    assert dev.stats()["clients"] >= 2


def test_stall_is_reported_then_recovered():
    dev, stop = receiver([{"class": "nfm", "freq_hz": 446.05e6, "snr_db": 10.0}])
    try:
        src = open_iq_source(dev.urls["iq"], center_hz=446.1e6, block_samples=1 << 15, stall_s=0.75,
                             backoff_base_s=0.05)
        states = []
        blocks = take(src, stop, 20, on_block=lambda i, b: (i == 3 and dev.inject("stall", 2.0),
                                                            states.append(src.health().state)))
        h = src.health()
        src.close()
    finally:
        stop.set()
        dev.close()
    assert len(blocks) == 20
    assert h.stalls >= 1 and "no data" in (h.last_error or "")


def test_a_garbage_greeting_is_counted_and_survived():
    dev, stop = receiver([{"class": "nfm", "freq_hz": 446.05e6, "snr_db": 10.0}])
    try:
        dev.inject("garbage", 0.6)
        src = open_iq_source(dev.urls["iq"], center_hz=446.1e6, block_samples=1 << 15, backoff_base_s=0.05)
        blocks = take(src, stop, 5)
        h = src.health()
        src.close()
    finally:
        stop.set()
        dev.close()
    assert len(blocks) == 5 and h.errors >= 1 and h.reconnects >= 1


def test_nothing_listening_is_counted_not_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_iq_source(f"rtltcp://127.0.0.1:{port}", center_hz=446e6, backoff_base_s=0.01, backoff_cap_s=0.05)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert list(src.blocks(stop)) == []
    h = src.health()
    assert h.errors >= 2 and "cannot connect" in h.last_error and not h.connected


# -- hostile bytes ------------------------------------------------------------------------------

def valid_stream(n_bytes: int, seed: int) -> bytes:
    return pack_greeting() + np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), block=st.integers(1, 64))
def test_parser_random_bytes_give_blocks_or_a_protocol_error(data, block):
    p = StreamParser(block)
    try:
        out = p.feed(data)
    except ProtocolError:
        assert len(data) >= 12 and (data[:4] != b"RTL0" or int.from_bytes(data[8:12], "big") > 1000)
        return
    assert len(data) < 12 or data[:4] == b"RTL0"
    assert len(out) == max(0, len(data) - 12) // (2 * block)


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(1, 97), max_size=40), block=st.integers(1, 50), seed=st.integers(0, 99))
def test_parser_chunking_never_changes_the_samples(cuts, block, seed):
    stream = valid_stream(1500, seed)
    whole = StreamParser(block).feed(stream)
    p, out, pos = StreamParser(block), [], 0
    for c in cuts:
        out += p.feed(stream[pos:pos + c])
        pos += c
    out += p.feed(stream[pos:])
    assert len(out) == len(whole)
    for a, b in zip(out, whole, strict=True):
        np.testing.assert_array_equal(a, b)


class Hostile:
    """A TCP server that sends each connecting client the given bytes, then hangs up."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                c.sendall(self.payload)
            except OSError:
                pass
            c.close()

    def close(self):
        self.done.set()
        self.t.join(2)
        self.sock.close()


@settings(max_examples=20, deadline=None)
@given(payload=st.one_of(st.binary(max_size=200),
                         st.builds(lambda n, s: valid_stream(n, s)[: 12 + n], st.integers(0, 3000), st.integers(0, 9))))
def test_client_survives_random_and_truncated_streams(payload):
    srv = Hostile(payload)
    try:
        src = RtlTcpSource(f"rtltcp://127.0.0.1:{srv.port}", center_hz=446e6, block_samples=256,
                           backoff_base_s=0.01, backoff_cap_s=0.02, stall_s=0.5)
        stop = threading.Event()
        timer = threading.Timer(0.3, stop.set)
        timer.start()
        t0 = time.monotonic()
        blocks = list(src.blocks(stop))  # must neither raise nor hang
        assert time.monotonic() - t0 < 10.0  # stop was set at 0.3 s: no hang
        h = src.health()
        assert h.errors >= 1  # every connection ended badly, and each was counted
        assert all(len(b.samples) == 256 for b in blocks)
        if payload[:4] != b"RTL0" and len(payload) >= 12:
            assert "not an rtl_tcp server" in h.last_error or "closed" in h.last_error
    finally:
        srv.close()


# -- scan plans ---------------------------------------------------------------------------------

def test_scan_plans():
    assert fixed(446e6).fixed and fixed(446e6).hops[0].dwell_samples is None
    p = from_options(None, 2.4e6, [{"center_hz": 433e6, "dwell_s": 0.5}, (868e6, 1.024e6, 2.0)])
    assert p.hops == (Hop(433e6, 2.4e6, 0.5), Hop(868e6, 1.024e6, 2.0))
    assert p.hops[0].dwell_samples == 1_200_000
    with pytest.raises(ValueError, match="accepts"):
        Hop(433e6, 500e3, 1.0)
    with pytest.raises(ValueError, match="center_hz"):
        from_options(None, 2.4e6, [])
    s = span(430e6, 440e6, 2.4e6, 0.25)
    edges = [(h.center_hz - 0.96e6, h.center_hz + 0.96e6) for h in s.hops]
    assert edges[0][0] <= 430e6 and edges[-1][1] >= 440e6
    assert all(a[1] >= b[0] for a, b in zip(edges, edges[1:], strict=False))
    it = s.cycle()
    assert [next(it)[0] for _ in range(2 * len(s.hops))] == list(range(len(s.hops))) * 2
