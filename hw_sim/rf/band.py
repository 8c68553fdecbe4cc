"""The band a receiver hears: emitters at absolute frequencies + thermal noise + the dongle's flaws.

An `Emitter` is a scenario's description of one transmitter (class, frequency, SNR, schedule,
drift); a `Band` streams what a receiver tuned to `center_hz` at `rate_hz` sees, chunk after
chunk, in scenario time; `synthesize()` is the one-shot form the dataset writer uses.

SNR definition (also in docs/rtl_tcp.md): snr_db = 10*log10(P / (N0 * B)), where P is the
emitter's mean power while it transmits (for OOK: while the key is down), N0 the noise power
spectral density and B the emitter's nominal bandwidth (`Waveform.bandwidth_hz`, >= 98% of its
power). Noise density is given as `noise_dbfs_hz`, dB relative to a full-scale complex sinusoid
per Hz, so the total noise power grows with the sample rate as it does on a real dongle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drivers.rtltcp_protocol import cu8_to_complex64 as cu8_to_complex  # noqa: F401  (re-exported)
from hw_sim.rf.emitters import CLASSES, Waveform, cis, make_waveform


@dataclass
class Emitter:
    """One transmitter of a scenario.

    `schedule` lists (start_s, stop_s) intervals of scenario time when it may transmit (None =
    always). Inside them, `period_s`/`duty` key it periodically (on for duty*period at the start
    of every period, e.g. DMR TDMA 0.06 s / 0.458), otherwise it is on for the whole interval.
    `drift_hz_per_s` moves its carrier linearly with scenario time (a warming crystal).
    """

    cls: str
    freq_hz: float
    snr_db: float
    params: dict = field(default_factory=dict)
    schedule: list[tuple[float, float]] | None = None
    period_s: float | None = None
    duty: float = 1.0
    drift_hz_per_s: float = 0.0
    id: str = ""

    def __post_init__(self):
        if self.cls not in CLASSES:
            raise ValueError(f"unknown emitter class {self.cls!r} (known: {', '.join(CLASSES)})")
        if not 0 < self.duty <= 1:
            raise ValueError("duty must be in (0, 1]")
        if self.period_s is not None and self.period_s <= 0:
            raise ValueError("period_s must be > 0")

    def on_segments(self, t0: float, t1: float) -> list[tuple[float, float, float]]:
        """On-intervals clipped to [t0, t1): (a, b, burst_start) with burst_start the unclipped start."""
        sched = self.schedule if self.schedule is not None else [(-math.inf, math.inf)]
        out: list[tuple[float, float, float]] = []
        for s, e in sched:
            a, b = max(s, t0), min(e, t1)
            if a >= b:
                continue
            if self.period_s is None or self.duty >= 1:
                out.append((a, b, s))
                continue
            base = s if math.isfinite(s) else 0.0
            on = self.duty * self.period_s
            k = math.floor((a - base) / self.period_s)
            while True:
                ps = base + k * self.period_s
                if ps >= b:
                    break
                sa, sb = max(ps, a), min(ps + on, b)
                if sa < sb:
                    out.append((sa, sb, ps))
                k += 1
        return out


@dataclass
class Flaws:
    """The receiver's own imperfections (an R820T dongle's, by default mild ones)."""

    dc_dbfs: float | None = -45.0  # LO leakage spike at 0 Hz; None = none
    iq_gain: float = 1.0  # Q-arm gain relative to I
    iq_phase_deg: float = 0.0  # quadrature error
    ppm: float = 0.0  # crystal error: the true LO sits at center*(1+ppm*1e-6)


class _Live:
    """Per-emitter streaming state at one sample rate."""

    def __init__(self, em: Emitter, wf: Waveform):
        self.em, self.wf = em, wf
        self.phase = 0.0
        self.burst = None  # start time of the burst being played, to know when to restart


class Band:
    """Streams the complex baseband of a receiver in scenario time (seconds from t0_s).

    Retuning or changing the rate keeps the scenario time running and each emitter's schedule;
    waveforms are rebuilt for a new rate (their sample grid depends on it).
    """

    def __init__(self, emitters: list[Emitter], *, center_hz: float, rate_hz: float, rng: np.random.Generator,
                 noise_dbfs_hz: float = -95.0, flaws: Flaws | None = None, t0_s: float = 0.0, gain_db: float = 0.0):
        self.emitters = list(emitters)
        self.rng = rng
        self.noise_dbfs_hz = noise_dbfs_hz
        self.flaws = flaws or Flaws()
        self.gain_db = gain_db  # relative to the reference gain at which noise_dbfs_hz holds
        self.correction_ppm = 0.0  # what the client asked for (rtl_tcp 0x05)
        self.t = float(t0_s)
        self.center_hz = float(center_hz)
        self.rate_hz = float(rate_hz)
        self._seeds = [int(s) for s in rng.integers(0, 2**63, len(self.emitters))]
        self._gen = 0
        self._live: list[_Live] = []
        self._build()

    def _build(self) -> None:
        self._gen += 1
        self._live = []
        for em, s in zip(self.emitters, self._seeds, strict=True):
            wf = make_waveform(em.cls, np.random.default_rng([s, self._gen]), self.rate_hz, **em.params)
            self._live.append(_Live(em, wf))

    def retune(self, center_hz: float | None = None, rate_hz: float | None = None) -> None:
        if center_hz is not None:
            self.center_hz = float(center_hz)
        if rate_hz is not None and float(rate_hz) != self.rate_hz:
            self.rate_hz = float(rate_hz)
            self._build()

    @property
    def lo_hz(self) -> float:
        """Where the dongle's LO really is: its crystal error, minus the correction the client set."""
        return self.center_hz * (1 + (self.flaws.ppm - self.correction_ppm) * 1e-6)

    @property
    def noise_power(self) -> float:
        return 10 ** (self.noise_dbfs_hz / 10) * self.rate_hz

    def amplitude(self, em: Emitter, wf: Waveform) -> float:
        """Scale of a unit-power waveform that gives the emitter its SNR in its own bandwidth."""
        n0 = 10 ** (self.noise_dbfs_hz / 10)
        return math.sqrt(10 ** (em.snr_db / 10) * n0 * wf.bandwidth_hz)

    def offset_hz(self, em: Emitter, t: float) -> float:
        return em.freq_hz + em.drift_hz_per_s * t - self.lo_hz

    def visible(self, t0: float, t1: float) -> list[dict]:
        """Ground truth: emitters on air and inside the band during [t0, t1)."""
        out = []
        for lv in self._live:
            off = self.offset_hz(lv.em, t0)
            if abs(off) >= self.rate_hz / 2:
                continue
            for a, b, _ in lv.em.on_segments(t0, t1):
                out.append({"id": lv.em.id, "cls": lv.em.cls, "freq_hz": lv.em.freq_hz + lv.em.drift_hz_per_s * a,
                            "offset_hz": off, "bandwidth_hz": lv.wf.bandwidth_hz, "snr_db": lv.em.snr_db,
                            "start_s": a, "stop_s": b})
        return out

    def read(self, n: int, *, noise: bool = True, flaws: bool = True) -> np.ndarray:
        """The next n samples (complex64, full scale = 1.0), advancing scenario time."""
        rate = self.rate_hz
        t0 = self.t
        t1 = t0 + n / rate
        if noise:
            x = self.rng.standard_normal(2 * n, dtype=np.float32).view(np.complex64)
            x *= np.float32(math.sqrt(self.noise_power / 2))
        else:
            x = np.zeros(n, np.complex64)
        T = n / rate
        for lv in self._live:
            em = lv.em
            f_start = self.offset_hz(em, t0)
            f_mid = self.offset_hz(em, (t0 + t1) / 2)
            segs = em.on_segments(t0, t1) if abs(f_start) < rate / 2 else []
            # carrier phase runs continuously whether or not the emitter is keyed
            for a, b, burst in segs:
                ia = min(n, max(0, int(round((a - t0) * rate))))
                ib = min(n, max(ia, int(round((b - t0) * rate))))
                if ib <= ia:
                    continue
                if lv.burst != burst:
                    lv.wf.restart()
                    lv.burst = burst
                seg = lv.wf.read(ib - ia)
                # the chunk's mid frequency from a cheap oscillator (continuous phase) ...
                osc = oscillator(lv.phase + 2 * np.pi * f_mid * ia / rate, f_mid, rate, ib - ia)
                if em.drift_hz_per_s:
                    # ... times the chirp of the drift about the chunk's middle, which adds no
                    # phase over the whole chunk, so the carried phase stays right
                    tt = np.arange(ia, ib, dtype=np.float64) / rate - T / 2
                    osc *= cis(np.pi * em.drift_hz_per_s * (tt * tt - T * T / 4))
                osc *= np.float32(self.amplitude(em, lv.wf))
                osc *= seg
                x[ia:ib] += osc
            if not segs:
                lv.burst = None
            lv.phase = (lv.phase + 2 * np.pi * f_mid * T) % (2 * np.pi)
        if self.gain_db:
            x *= np.float32(10 ** (self.gain_db / 20))
        if flaws:
            apply_flaws(x, self.flaws)
        self.t = t1
        return x


def oscillator(phase0: float, freq_hz: float, rate_hz: float, n: int, block: int = 1024) -> np.ndarray:
    """exp(j(phase0 + 2 pi f k / rate)) for k < n as an outer product of two short tables.

    One complex multiply per sample instead of a cos and a sin: the synthesiser mixes every
    emitter to its offset and this is its hot loop. Error stays ~1e-6 (float64 tables).
    """
    w = 2 * np.pi * freq_hz / rate_hz
    m = -(-n // block)
    fine = np.exp(1j * w * np.arange(block)).astype(np.complex64)
    coarse = np.exp(1j * (phase0 + w * block * np.arange(m))).astype(np.complex64)
    return (coarse[:, None] * fine[None, :]).reshape(-1)[:n]


def apply_flaws(x: np.ndarray, flaws: Flaws) -> np.ndarray:
    """IQ imbalance then the DC spike, in place (the ppm error lives in Band.lo_hz)."""
    if flaws.iq_gain != 1.0 or flaws.iq_phase_deg:
        phi = math.radians(flaws.iq_phase_deg)
        i, q = x.real.copy(), x.imag.copy()
        x.imag = np.float32(flaws.iq_gain) * (q * np.float32(math.cos(phi)) + i * np.float32(math.sin(phi)))
    if flaws.dc_dbfs is not None:
        x += np.complex64(10 ** (flaws.dc_dbfs / 20) * (1 + 1j) / math.sqrt(2))
    return x


def to_cu8(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """8-bit quantisation as the RTL2832U's ADC: floor(x*128 + 128) clipped to 0..255, I then Q.

    Readers map back with (b - 127.5) / 127.5, the convention of rtl_sdr tools and pyrtlsdr,
    which puts each code at the middle of its quantisation step.
    """
    f = x.view(np.float32)
    tmp = f * np.float32(128.0)
    tmp += np.float32(128.0)
    np.clip(tmp, 0, 255, out=tmp)
    if out is None:
        out = np.empty(len(f), np.uint8)
    np.copyto(out, tmp, casting="unsafe")
    return out


def synthesize(emitters: list[Emitter], *, center_hz: float, rate_hz: float, n: int, rng: np.random.Generator,
               t0_s: float = 0.0, noise_dbfs_hz: float = -95.0, flaws: Flaws | None = None,
               quantize: bool = False) -> np.ndarray:
    """n samples of the band around center_hz from scenario time t0_s (complex64, or cu8 bytes)."""
    band = Band(emitters, center_hz=center_hz, rate_hz=rate_hz, rng=rng, noise_dbfs_hz=noise_dbfs_hz,
                flaws=flaws, t0_s=t0_s)
    x = band.read(n)
    return to_cu8(x) if quantize else x
