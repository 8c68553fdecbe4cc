"""The simulator's emitters decoded by ordinary textbook receivers, and the band's SNR in the spectrum.

Each decoder here is written from the signal's definition (PWM pulse widths, LoRa dechirp,
FM discriminator, envelope detector), not from hw_sim's code, so a wrong emitter fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from drivers.rtltcp_protocol import cu8_to_complex64
from hw_sim.rf.band import Band, Emitter, Flaws, to_cu8
from hw_sim.rf.emitters import (
    CLASSES,
    FSK2,
    FSK4,
    OOK,
    LoRa,
    crc16_ccitt,
    generate,
    make_waveform,
    pmr446_channel_hz,
    pt2262_bits,
)


def awgn(x: np.ndarray, snr_db: float, bw: float, rate: float, rng) -> np.ndarray:
    """Noise such that a unit-power signal has snr_db in bandwidth bw."""
    n0 = 1.0 / (10 ** (snr_db / 10) * bw)
    sigma = np.sqrt(n0 * rate / 2)
    return x + sigma * (rng.standard_normal(len(x)) + 1j * rng.standard_normal(len(x)))


def channelise(x: np.ndarray, rate: float, offset_hz: float, out_rate: float, cutoff_hz: float) -> np.ndarray:
    """Mix down, low-pass, decimate: the front of every narrowband receiver."""
    n = np.arange(len(x))
    y = x * np.exp(-2j * np.pi * offset_hz * n / rate)
    taps = signal.firwin(255, cutoff_hz, fs=rate)
    y = signal.lfilter(taps, 1.0, y)
    return y[:: int(round(rate / out_rate))]


def fm_demod(x: np.ndarray, rate: float) -> np.ndarray:
    return np.angle(x[1:] * np.conj(x[:-1])) * rate / (2 * np.pi)


def peak_hz(y: np.ndarray, rate: float, lo: float = 50.0) -> float:
    w = np.hanning(len(y))
    spec = np.abs(np.fft.rfft((y - y.mean()) * w))
    f = np.fft.rfftfreq(len(y), 1 / rate)
    spec[f < lo] = 0
    return float(f[np.argmax(spec)])


def test_class_names_are_the_shared_contract():
    assert CLASSES == ("noise", "wfm", "nfm", "am", "ook", "fsk2", "fsk4", "lora", "gmsk", "jammer")


@pytest.mark.parametrize("cls", [c for c in CLASSES if c != "noise"])
def test_unit_power_and_bandwidth_hold_the_power(cls):
    rate = 2.4e6
    w = make_waveform(cls, np.random.default_rng(3), rate)
    x = w.read(1 << 19)
    p = np.mean(np.abs(x) ** 2)
    if cls == "ook":  # key-down power is 1; the average is the mark share of the frame
        assert abs(p - np.mean(w.env**2)) < 0.02
    else:
        assert abs(p - 1.0) < 0.02
    spec = np.abs(np.fft.fftshift(np.fft.fft(x))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(len(x), 1 / rate))
    assert spec[np.abs(f) <= w.bandwidth_hz / 2].sum() / spec.sum() > 0.975


def test_same_seed_same_samples_and_chunking_does_not_matter():
    for cls in CLASSES[1:]:
        a = generate(cls, np.random.default_rng(5), 1e6, 30000)
        w = make_waveform(cls, np.random.default_rng(5), 1e6)
        b = np.concatenate([w.read(k) for k in (1, 999, 10000, 19000)])
        np.testing.assert_array_equal(a, b)


def decode_pwm(x: np.ndarray, rate: float, unit_s: float) -> list[int]:
    """An rtl_433-style OOK PWM decoder: channel filter, envelope, threshold, pulse widths after a
    long gap."""
    x = channelise(x, rate, 0.0, rate / 10, 12e3)
    rate = rate / 10
    env = np.abs(x)
    k = max(1, int(rate * unit_s / 8))
    env = np.convolve(env, np.ones(k) / k, mode="same")
    on = env > (np.percentile(env, 99) / 2)
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    runs = np.diff(edges) / (rate * unit_s)  # alternating run lengths in units
    levels = on[edges[:-1] + 1]
    # find a sync gap (low run ~31 units), then read 24 high pulses
    for i, (r, lv) in enumerate(zip(runs, levels, strict=True)):
        if not lv and 25 < r < 40:
            highs = [rr for rr, ll in zip(runs[i + 1:], levels[i + 1:], strict=True) if ll][:24]
            if len(highs) == 24:
                return [1 if h > 2 else 0 for h in highs]
    raise AssertionError("no OOK frame found")


@pytest.mark.parametrize("unit_s", [460e-6, 350e-6])
def test_ook_ev1527_bits_decode_back(unit_s):
    rate = 1e6
    code = 0b1011_0011_1000_1111_0101_0110
    w = OOK(np.random.default_rng(1), rate, code=code, unit_s=unit_s)
    x = awgn(w.read(int(rate * 0.15)), 15.0, w.bandwidth_hz, rate, np.random.default_rng(2))
    bits = decode_pwm(x, rate, unit_s)
    assert bits == [(code >> i) & 1 for i in range(23, -1, -1)]


def test_ook_pt2262_trits_travel_as_pwm_pairs():
    rate = 1e6
    code = pt2262_bits("0F1F00F1110F")
    w = OOK(np.random.default_rng(1), rate, code=code)
    bits = decode_pwm(w.read(int(rate * 0.15)), rate, 460e-6)
    trits = "".join({(0, 0): "0", (1, 1): "1", (0, 1): "F"}[(bits[i], bits[i + 1])] for i in range(0, 24, 2))
    assert trits == "0F1F00F1110F"
    with pytest.raises(ValueError):
        pt2262_bits("0F1")


def dechirp(x: np.ndarray, sf: int, os: int) -> list[int]:
    """Textbook LoRa demodulation: filter and decimate to the chirp rate, multiply by the conjugate base
    up-chirp exp(j2pi(n^2/2N - n/2)), FFT, argmax; one symbol per 2^sf samples."""
    N = 1 << sf
    n = np.arange(N)
    base = np.exp(2j * np.pi * (n * n / (2 * N) - n / 2))
    y = signal.resample_poly(x, 1, os) if os > 1 else x
    return [int(np.argmax(np.abs(np.fft.fft(y[k * N:(k + 1) * N] * np.conj(base))))) for k in range(len(y) // N)]


@pytest.mark.parametrize(("sf", "bw", "rate"), [(7, 125e3, 1e6), (9, 250e3, 2e6), (12, 500e3, 1e6)])
def test_lora_dechirps_to_preamble_sync_and_payload(sf, bw, rate):
    w = LoRa(np.random.default_rng(sf), rate, sf=sf, bw_hz=bw, sync_word=0x34, payload_symbols=6)
    os = int(rate / bw)
    N = 1 << sf
    pkt = w.read(int(round((8 + 2 + 2.25 + 6) * N * os)))
    x = awgn(pkt, -5.0, bw, rate, np.random.default_rng(0))  # LoRa works below the noise
    syms = dechirp(x, sf, os)
    assert syms[:8] == [0] * 8
    assert syms[8:10] == [24, 32]  # sync word 0x34: nibbles times 8
    # the payload starts 2.25 symbols of down-chirp later
    start = int(round(12.25 * N * os))
    pay = dechirp(x[start:], sf, os)[:6]
    assert pay == [int(s) for s in w.last_symbols]


def test_nfm_tone_through_the_band_and_an_fm_discriminator():
    rate, fc = 2.4e6, 446.1e6
    f_ch = pmr446_channel_hz(3)
    band = Band([Emitter("nfm", f_ch, 25.0, {"tone_hz": 1000.0, "deviation_hz": 2500.0})], center_hz=fc,
                rate_hz=rate, rng=np.random.default_rng(0), flaws=Flaws(dc_dbfs=None))
    x = cu8_to_complex64(to_cu8(band.read(int(rate * 0.25))))
    bb = channelise(x, rate, f_ch - fc, 48e3, 7e3)
    audio = fm_demod(bb, 48e3)[500:]
    assert abs(peak_hz(audio, 48e3) - 1000.0) < 15
    # deviation: the tone's peak frequency swing is the configured 2.5 kHz
    assert 2000 < np.percentile(np.abs(audio), 99) < 3300


def test_wfm_broadcast_tone_and_19k_pilot():
    rate = 2.4e6
    x = awgn(generate("wfm", np.random.default_rng(0), rate, int(rate * 0.2), tone_hz=1000.0), 30, 200e3, rate,
             np.random.default_rng(1))
    bb = channelise(x, rate, 0.0, 240e3, 110e3)
    mpx = fm_demod(bb, 240e3)[300:]
    assert abs(peak_hz(mpx, 240e3) - 1000.0) < 15
    spec = np.abs(np.fft.rfft(mpx * np.hanning(len(mpx))))
    f = np.fft.rfftfreq(len(mpx), 1 / 240e3)
    pilot = spec[np.abs(f - 19e3) < 30].max()
    floor = np.median(spec[(f > 20e3) & (f < 50e3)])
    assert pilot > 30 * floor


def test_am_envelope_gives_the_tone():
    rate = 250e3
    x = awgn(generate("am", np.random.default_rng(0), rate, int(rate * 0.2), tone_hz=800.0, depth=0.6), 30, 10e3,
             rate, np.random.default_rng(1))
    env = np.abs(channelise(x, rate, 0.0, 25e3, 5e3))[100:]
    assert abs(peak_hz(env, 25e3) - 800.0) < 15
    depth = (env.max() - env.min()) / (env.max() + env.min())
    assert 0.5 < depth < 0.75


def test_gfsk_packet_decodes_with_valid_crc():
    rate, baud = 1.2e6, 38400.0
    w = FSK2(np.random.default_rng(4), rate, baud=baud, deviation_hz=20e3, bt=0.5)
    x = awgn(w.read(int(rate * 0.03)), 20, w.bandwidth_hz, rate, np.random.default_rng(0))
    freq = fm_demod(channelise(x, rate, 0, rate, 60e3), rate)
    # the first packet starts at sample 0; read bits at symbol centres
    n_bits = 8 * (4 + 2 + 1)
    centres = ((np.arange(n_bits) + 0.5) * rate / baud).astype(int)
    bits = (freq[np.clip(centres + 127, 0, len(freq) - 1)] > 0).astype(np.uint8)  # 127 = FIR group delay
    head = np.packbits(bits).tobytes()
    assert head[:6] == b"\xaa\xaa\xaa\xaa\x2d\xd4"
    length = head[6]
    total = 8 * (7 + length + 2)
    centres = ((np.arange(total) + 0.5) * rate / baud).astype(int) + 127
    body = np.packbits((freq[centres] > 0).astype(np.uint8)).tobytes()[6:]
    assert crc16_ccitt(body[:-2]).to_bytes(2, "big") == body[-2:]


def test_dmr_4fsk_symbols_sit_on_four_deviations():
    rate, baud = 48e3, 4800.0
    w = FSK4(np.random.default_rng(2), rate, frame_symbols=400)
    x = w.read(int(400 * rate / baud))
    freq = fm_demod(x, rate)
    centres = ((np.arange(20, 380) + 0.5) * rate / baud).astype(int)
    got = freq[centres - 1]
    want = np.array([648.0, 1944.0, -648.0, -1944.0])[w.last_dibits[20:380]]
    assert np.mean(np.abs(got - want) < 400) > 0.95


def test_gmsk_is_constant_envelope_with_quarter_baud_deviation():
    rate = 2.4e6
    x = generate("gmsk", np.random.default_rng(0), rate, 200000)
    assert np.allclose(np.abs(x), 1.0, atol=1e-3)
    freq = fm_demod(x, rate)
    assert 0.6 * 67.7e3 < np.percentile(np.abs(freq), 95) < 1.02 * 67.7e3


def test_swept_jammer_covers_its_band_in_a_sawtooth():
    rate = 2.4e6
    x = generate("jammer", np.random.default_rng(0), rate, 48000, kind="sweep", bw_hz=1e6, sweep_period_s=1e-3)
    freq = fm_demod(x, rate)
    assert freq.max() > 0.45e6 and freq.min() < -0.45e6
    wraps = np.flatnonzero(np.diff(freq) < -0.5e6)
    assert np.allclose(np.diff(wraps), 2400, atol=2)  # one sweep per millisecond


def measured_snr_db(x: np.ndarray, rate: float, offset_hz: float, bw: float, noise_bins: np.ndarray,
                    f: np.ndarray, p: np.ndarray) -> float:
    n0 = np.mean(p[noise_bins])
    inside = np.abs(f - offset_hz) <= bw / 2
    df = f[1] - f[0]
    return float(10 * np.log10((p[inside] - n0).sum() * df / (n0 * bw)))


def test_band_spectrum_shows_each_emitter_snr_within_1_db():
    rate, fc = 2.4e6, 434.0e6
    ems = [Emitter("nfm", fc - 700e3, 12.0, id="a"), Emitter("fsk2", fc + 350e3, 6.0, id="b"),
           Emitter("lora", fc - 300e3, 3.0, {"sf": 8}, id="c"), Emitter("wfm", fc + 800e3, 18.0, id="d"),
           Emitter("ook", fc + 100e3, 15.0, id="e"), Emitter("jammer", fc - 900e3, 0.0, {"bw_hz": 80e3}, id="f"),
           Emitter("am", fc + 600e3, 9.0, schedule=[(100.0, 200.0)], id="off")]
    band = Band(ems, center_hz=fc, rate_hz=rate, rng=np.random.default_rng(0), flaws=Flaws(dc_dbfs=-40, ppm=0))
    x = cu8_to_complex64(to_cu8(band.read(int(rate * 1.0))))
    f, p = signal.welch(x, rate, nperseg=8192, return_onesided=False, scaling="density")
    occupied = np.zeros(len(f), bool)
    for lv in band._live:
        occupied |= np.abs(f - band.offset_hz(lv.em, 0)) <= lv.wf.bandwidth_hz / 2 + 20e3
    noise_bins = ~occupied & (np.abs(f) > 30e3) & (np.abs(f) < 0.45 * rate)
    for lv in band._live:
        em = lv.em
        got = measured_snr_db(x, rate, band.offset_hz(em, 0), lv.wf.bandwidth_hz, noise_bins, f, p)
        if em.id == "off":
            assert got < -10, "an emitter scheduled later must not be on air"
            continue
        want = em.snr_db + (10 * np.log10(np.mean(lv.wf.env**2)) if em.cls == "ook" else 0.0)
        assert abs(got - want) < 1.0, (em.cls, got, want)


def test_flaws_dc_spike_iq_image_and_ppm_offset():
    rate, fc, ppm = 2.4e6, 900e6, 25.0
    band = Band([Emitter("jammer", fc + 500e3, 30.0, {"kind": "sweep", "bw_hz": 2e3, "sweep_period_s": 1.0})],
                center_hz=fc, rate_hz=rate, rng=np.random.default_rng(0),
                flaws=Flaws(dc_dbfs=-30, iq_gain=1.1, iq_phase_deg=5.0, ppm=ppm))
    x = band.read(1 << 18)
    spec = np.abs(np.fft.fftshift(np.fft.fft(x))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(len(x), 1 / rate))
    peak = f[np.argmax(np.where(np.abs(f) > 100e3, spec, 0))]
    assert abs(peak - (500e3 - fc * ppm * 1e-6)) < 3e3  # the tone sits 22.5 kHz low: the crystal is fast
    image = spec[np.abs(f + peak) < 2e3].max()
    assert 1e-4 < image / spec.max() < 0.1  # an IQ-imbalance image on the mirror frequency
    assert spec[np.abs(f) < 20].max() > 100 * np.median(spec)  # the DC spike


def test_drift_moves_the_carrier_and_duty_keys_the_emitter():
    rate, fc = 1.024e6, 446.1e6
    band = Band([Emitter("am", fc + 100e3, 30.0, {"tone_hz": 500.0}, drift_hz_per_s=20e3, id="drift"),
                 Emitter("nfm", fc - 200e3, 30.0, period_s=0.1, duty=0.3, id="keyed")],
                center_hz=fc, rate_hz=rate, rng=np.random.default_rng(0), flaws=Flaws(dc_dbfs=None))
    x = band.read(int(rate * 1.0))

    def carrier(seg):
        spec = np.abs(np.fft.fft(seg)) ** 2
        f = np.fft.fftfreq(len(seg), 1 / rate)
        spec[f < 0] = 0
        return f[np.argmax(spec)]

    n = int(rate * 0.1)
    assert abs((carrier(x[-n:]) - carrier(x[:n])) - 20e3 * 0.9) < 500  # 20 kHz/s over 0.9 s
    # keyed emitter: power in its channel is on for 30% of each 100 ms period, starting at 0
    bb = channelise(x, rate, -200e3, rate / 8, 6e3)
    p = np.abs(bb) ** 2
    win = int(rate / 8 * 0.005)
    on = p[: len(p) // win * win].reshape(-1, win).mean(axis=1) > 10 * np.median(p)
    assert abs(on.mean() - 0.3) < 0.05
    assert on[1:5].all() and not on[8:18].any()  # on 5..30 ms, off 40..90 ms
