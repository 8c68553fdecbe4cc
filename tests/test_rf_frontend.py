"""RF front end and tracker: signals made here with numpy (and the simulator's band), bad input, fuzzing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from detectors.rf.frontend import BadBlock, FrontEnd, cu8_to_complex64
from detectors.rf.tracker import Tracker
from hw_sim.rf.band import cu8_to_complex as sim_cu8_to_complex
from hw_sim.rf.band import to_cu8

RATE = 2.4e6
CENTER = 433.92e6
BLOCK = 1 << 18


def noise(rng, n, dbfs=-40.0):
    s = math.sqrt(10 ** (dbfs / 10) / 2)
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) * s).astype(np.complex64)


def tone(n, f, dbfs, t0=0):
    a = math.sqrt(10 ** (dbfs / 10))
    k = np.arange(t0, t0 + n)
    return (a * np.exp(2j * np.pi * f / RATE * k)).astype(np.complex64)


def test_cu8_conversion_matches_the_simulators_reference():
    raw = np.arange(256, dtype=np.uint8).repeat(2)
    raw = np.concatenate([raw, raw[::-1]])
    np.testing.assert_allclose(cu8_to_complex64(raw.tobytes()), sim_cu8_to_complex(raw), atol=1e-7)
    with pytest.raises(BadBlock, match="odd number"):
        cu8_to_complex64(b"\x01\x02\x03")
    with pytest.raises(BadBlock, match="empty"):
        cu8_to_complex64(b"")


def test_tone_is_found_at_its_frequency_with_its_snr():
    rng = np.random.default_rng(1)
    fe = FrontEnd()
    off = 312.5e3
    x = noise(rng, BLOCK) + tone(BLOCK, off, -40.0)  # noise -40 dBFS over 2.4 MHz; tone 30 dB over a bin's noise
    res = fe.process(x, 100.0, CENTER, RATE)
    assert len(res.bursts) == 1
    b = res.bursts[0]
    assert abs(b.center_hz - (CENTER + off)) < 2 * res.bin_hz
    assert b.bandwidth_hz < 5 * res.bin_hz
    assert b.peak_snr_db > 20
    assert abs(b.power_dbfs - (-40.0)) < 2.0  # the tone's power, read off the PSD (dBFS)


def test_burst_is_segmented_in_time_and_frequency():
    rng = np.random.default_rng(2)
    fe = FrontEnd()
    n = 3 * BLOCK
    x = noise(rng, n)
    s0, s1 = int(0.150 * RATE), int(0.170 * RATE)  # 20 ms, crossing no block edge
    band = noise(rng, s1 - s0, -40.0)
    # shape the burst to ~50 kHz around -400 kHz: a wideband signal, not a tone
    spec = np.fft.fft(band)
    f = np.fft.fftfreq(band.size, 1 / RATE)
    spec[np.abs(f + 400e3) > 25e3] = 0
    x[s0:s1] += (np.fft.ifft(spec) * 10).astype(np.complex64)
    bursts = []
    for i in range(0, n, BLOCK):
        res = fe.process(x[i:i + BLOCK], 10.0 + i / RATE, CENTER, RATE)
        bursts += res.bursts
    assert len(bursts) == 1, bursts
    b = bursts[0]
    row = fe.row_len / RATE
    assert abs(b.t_start - (10.0 + 0.150)) <= 1.5 * row
    assert abs(b.t_end - (10.0 + 0.170)) <= 1.5 * row
    assert abs(b.center_hz - (CENTER - 400e3)) < 5e3
    assert 35e3 < b.bandwidth_hz < 70e3


def test_noise_alone_raises_no_burst():
    rng = np.random.default_rng(3)
    fe = FrontEnd()
    found = []
    for i in range(40):  # 4.4 s of noise
        x = noise(rng, BLOCK, -35.0)
        res = fe.process(to_cu8(x).tobytes(), i * BLOCK / RATE, CENTER, RATE)
        found += res.bursts
    assert found == []


def test_floor_is_per_tuning_and_a_wide_rise_is_jamming():
    rng = np.random.default_rng(4)
    fe = FrontEnd()
    t = 0.0
    for _ in range(5):  # quiet on two hops
        for c in (CENTER, CENTER + 2e6):
            r = fe.process(noise(rng, BLOCK), t, c, RATE)
            t += BLOCK / RATE
            assert r.jam_fraction < 0.05
    # a barrage over ~60% of the first hop only
    x = noise(rng, BLOCK)
    j = noise(rng, BLOCK, -25.0)
    spec = np.fft.fft(j)
    spec[np.abs(np.fft.fftfreq(BLOCK, 1 / RATE)) > 0.7e6] = 0
    r = fe.process(x + np.fft.ifft(spec).astype(np.complex64), t, CENTER, RATE)
    assert r.jam_fraction > 0.4 and r.jam_rise_db > 6
    lo, hi = r.jam_band
    assert CENTER - 0.8e6 < lo < CENTER - 0.6e6 and CENTER + 0.6e6 < hi < CENTER + 0.8e6
    r2 = fe.process(noise(rng, BLOCK), t + BLOCK / RATE, CENTER + 2e6, RATE)
    assert r2.jam_fraction < 0.05


def test_short_blocks_are_carried_until_a_row_is_full():
    rng = np.random.default_rng(5)
    fe = FrontEnd()
    x = noise(rng, fe.row_len * 3)
    step = fe.row_len // 3
    rows = 0
    for i in range(0, x.size, step):
        res = fe.process(x[i:i + step], i / RATE, CENTER, RATE)
        rows += 0 if res is None else res.rows_db.shape[0]
    assert rows == 3
    assert fe.stats.short_blocks > 0


@pytest.mark.parametrize("samples, match", [
    (np.zeros(0, np.complex64), "empty"),
    (np.zeros((4, 4), np.complex64), "one-dimensional"),
    (np.zeros(100, np.float32), "complex"),
    ([1 + 1j, 2], "numpy array"),
    (np.full(10000, np.nan, np.complex64), "NaN, infinite"),
    (np.full(10000, 1e30, np.complex64), "absurdly large"),
])
def test_bad_samples_are_refused_and_counted(samples, match):
    fe = FrontEnd()
    with pytest.raises(BadBlock, match=match):
        fe.process(samples, 0.0, CENTER, RATE)
    assert fe.stats.refused == 1 and fe.stats.last_error


@pytest.mark.parametrize("t, center, rate, match", [
    (0.0, float("nan"), RATE, "center_hz is not a finite"),
    (0.0, -1e6, RATE, "center_hz"),
    (0.0, 1e15, RATE, "center_hz"),
    (0.0, CENTER, 0.0, "rate_hz"),
    (0.0, CENTER, float("inf"), "rate_hz is not a finite"),
    (0.0, CENTER, 1e12, "rate_hz"),
    (float("nan"), CENTER, RATE, "t is not a finite"),
    (-5.0, CENTER, RATE, "before 1970"),
])
def test_absurd_tunings_are_refused(t, center, rate, match):
    fe = FrontEnd()
    with pytest.raises(BadBlock, match=match):
        fe.process(np.zeros(BLOCK, np.complex64), t, center, rate)
    assert fe.stats.refused == 1


def test_a_few_nonfinite_samples_are_zeroed_and_counted():
    rng = np.random.default_rng(6)
    fe = FrontEnd()
    x = noise(rng, BLOCK)
    x[::1000] = np.nan
    x[5] = complex(np.inf, 0)
    res = fe.process(x, 0.0, CENTER, RATE)
    assert res is not None and np.isfinite(res.rows_db).all() and np.isfinite(res.floor_db).all()
    assert res.nonfinite == fe.stats.nonfinite_samples == len(range(0, BLOCK, 1000)) + 1


def test_tracker_follows_an_emitter_across_blocks_and_hops():
    rng = np.random.default_rng(7)
    fe, tr = FrontEnd(), Tracker()
    f_abs = CENTER + 300e3  # inside hop A only
    t = 0.0
    for i in range(8):
        for hop, c in enumerate((CENTER, CENTER + 2.4e6)):
            x = noise(rng, BLOCK)
            if hop == 0 and i % 2 == 0:  # keyed on in every other visit of hop A
                x += tone(BLOCK, f_abs - c, -35.0, i * BLOCK)
            tr.update(fe.process(x, t, c, RATE))
            t += BLOCK / RATE
    ems = tr.current()
    assert len(ems) == 1
    e = ems[0]
    assert abs(e.center_hz - f_abs) < 3e3
    assert e.bursts == 4
    # watched only while tuned to hop A: 8 blocks, on air in 4 of them
    assert e.observed_s == pytest.approx(8 * BLOCK / RATE, rel=0.05)
    assert 0.4 < e.duty_cycle < 0.6
    assert e.first_seen < 0.01 and e.last_seen > 0.1


def test_tracker_expires_an_emitter_after_silence():
    rng = np.random.default_rng(8)
    fe = FrontEnd()
    from detectors.rf.tracker import TrackerConfig

    tr = Tracker(TrackerConfig(expire_s=0.3))
    tr.update(fe.process(noise(rng, BLOCK) + tone(BLOCK, 100e3, -35.0), 0.0, CENTER, RATE))
    assert len(tr.current()) == 1
    t = BLOCK / RATE
    for _ in range(5):
        tr.update(fe.process(noise(rng, BLOCK), t, CENTER, RATE))
        t += BLOCK / RATE
    assert tr.current() == [] and len(tr.take_expired()) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=hnp.arrays(np.complex64, st.integers(0, 20000),
                          elements=st.complex_numbers(allow_nan=True, allow_infinity=True, width=64)),
       t=st.floats(allow_nan=True, allow_infinity=True),
       center=st.floats(allow_nan=True, allow_infinity=True),
       rate=st.floats(allow_nan=True, allow_infinity=True))
def test_fuzz_any_block_is_processed_or_refused_cleanly(samples, t, center, rate):
    fe = FrontEnd()
    try:
        res = fe.process(samples, t, center, rate)
    except BadBlock as e:
        assert str(e)
        assert fe.stats.refused == 1
        return
    if res is not None:
        assert np.isfinite(res.floor_db).all()
        for b in res.bursts:
            assert math.isfinite(b.center_hz) and b.bandwidth_hz > 0


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=0, max_size=40000))
def test_fuzz_cu8_bytes(data):
    fe = FrontEnd()
    try:
        fe.process(data, 1.0, CENTER, RATE)
    except BadBlock as e:
        assert "odd" in str(e) or "empty" in str(e)
