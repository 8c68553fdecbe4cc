"""Labelled classifier snippets from the simulator, made the way the monitor makes them at run time.

Each capture holds one emitter (or none, for the "noise" class) keyed on for a burst inside
a stretch of receiver noise with the dongle's flaws, quantised to cu8 as an RTL-SDR delivers it.
The capture goes through detectors.rf's FrontEnd; the burst the front end finds on the
emitter's frequency is cut out by detectors.rf.channel.channelise with the front end's own
centre and bandwidth estimates. An emitter the front end does not find gives no snippet (the
classifier never sees those at run time either); the "noise" class is channelised from a random
place and bandwidth of an emitter-free capture, which is what a false detection looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from detectors.rf.channel import channelise
from detectors.rf.frontend import FrontEnd, cu8_to_complex64
from hw_sim.rf.band import Emitter, Flaws, synthesize
from hw_sim.rf.emitters import CLASSES, make_waveform, random_params

RATE_HZ = 2.4e6
CENTER_HZ = 433.92e6
CAPTURE_S = 0.16


@dataclass
class Snippet:
    iq: np.ndarray  # complex64 (SNIPPET_LEN,)
    cls: str
    snr_db: float
    bandwidth_hz: float  # as the front end measured it
    detected: bool


def _flaws(rng: np.random.Generator) -> Flaws:
    return Flaws(dc_dbfs=float(rng.uniform(-55, -40)), iq_gain=float(rng.uniform(0.97, 1.03)),
                 iq_phase_deg=float(rng.uniform(-2, 2)), ppm=float(rng.uniform(-20, 20)))


def match_burst(bursts, freq_hz: float, bandwidth_hz: float):
    """The strongest detected burst overlapping the emitter's nominal band, or None."""
    lo, hi = freq_hz - max(bandwidth_hz / 2, 5e3), freq_hz + max(bandwidth_hz / 2, 5e3)
    cand = [b for b in bursts if b.f_hi_hz > lo and b.f_lo_hz < hi]
    return max(cand, key=lambda b: b.power_dbfs, default=None)


def make_snippet(cls: str, snr_db: float, rng: np.random.Generator, rate_hz: float = RATE_HZ) -> Snippet | None:
    """One capture of `cls` at `snr_db` through the front end and the channeliser.

    Half the captures are a burst inside a longer stretch of noise (15..130 ms keyed inside
    0.16 s), half have the emitter on from the first sample to the last, over 27..109 ms (the
    simulator dataset's labelled captures, and a continuous emitter in one 2^18-sample block).
    """
    params = random_params(cls, rng, rate_hz)
    if rng.random() < 0.5:
        n = int(CAPTURE_S * rate_hz)
        start = float(rng.uniform(0.0, 0.02))
        dur = float(rng.uniform(0.015, CAPTURE_S - start - 0.01))
    else:
        n = int(rng.choice([1 << 16, 1 << 17, 1 << 18]))
        start, dur = 0.0, n / rate_hz
    if cls == "noise":
        x8 = synthesize([], center_hz=CENTER_HZ, rate_hz=rate_hz, n=n, rng=rng, flaws=_flaws(rng), quantize=True)
        x = cu8_to_complex64(x8)
        bw = float(math.exp(rng.uniform(math.log(5e3), math.log(600e3))))
        off = float(rng.uniform(-0.45 * rate_hz + bw / 2, 0.45 * rate_hz - bw / 2))
        i0 = int(start * rate_hz)
        return Snippet(channelise(x, rate_hz, off, bw, i0, i0 + int(dur * rate_hz)), cls, snr_db, bw, True)
    bw_nom = params.get("bw_hz", 0.0) if cls == "jammer" else 0.0
    reach = 0.45 * rate_hz - max(bw_nom, 250e3) / 2
    off = float(rng.uniform(-reach, reach))
    if abs(off) < 20e3:  # keep off the DC spike, as a receiver's tuning plan would
        off = math.copysign(20e3 + abs(off), off if off else 1.0)
    em = Emitter(cls=cls, freq_hz=CENTER_HZ + off, snr_db=snr_db, params=params,
                 schedule=[(start, start + dur)] if start > 0 else None)
    x8 = synthesize([em], center_hz=CENTER_HZ, rate_hz=rate_hz, n=n, rng=rng, flaws=_flaws(rng), quantize=True)
    x = cu8_to_complex64(x8)
    res = FrontEnd().process(x, 0.0, CENTER_HZ, rate_hz)
    nominal = make_waveform(cls, np.random.default_rng(0), rate_hz, **params).bandwidth_hz
    b = match_burst(res.bursts if res else [], em.freq_hz, nominal)
    if b is None:
        return Snippet(np.zeros(0, np.complex64), cls, snr_db, 0.0, False)
    iq = channelise(res.samples, rate_hz, b.center_hz - CENTER_HZ, b.bandwidth_hz, b.sample0, b.sample1)
    return Snippet(iq, cls, snr_db, b.bandwidth_hz, True)


def make_set(per_class: int, seed: int, snr_range: tuple[float, float] = (-4.0, 26.0),
             classes: tuple[str, ...] = CLASSES, log=None) -> dict:
    """`per_class` detected snippets of every class at SNRs uniform in `snr_range`.

    Deterministic for a seed: one generator per (seed, class) so classes can be made in any order.
    """
    xs, ys, snrs, bws = [], [], [], []
    tried = dict.fromkeys(classes, 0)
    for ci, cls in enumerate(classes):
        rng = np.random.default_rng([seed, ci])
        got = 0
        while got < per_class:
            snr = float(rng.uniform(*snr_range))
            tried[cls] += 1
            s = make_snippet(cls, snr, rng)
            if s is None or not s.detected:
                continue
            xs.append(s.iq)
            ys.append(ci)
            snrs.append(snr)
            bws.append(s.bandwidth_hz)
            got += 1
        if log:
            log(f"  {cls:7s} {got} snippets ({tried[cls]} captures)")
    return {"iq": np.stack(xs).astype(np.complex64), "y": np.array(ys, np.int64), "snr": np.array(snrs, np.float32),
            "bw": np.array(bws, np.float32), "classes": list(classes), "tried": tried}
