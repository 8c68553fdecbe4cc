"""Channelise one emitter out of a block: mix to 0 Hz, low-pass, decimate, fixed length, normalise.

The classifier sees every emitter at a sample rate tied to its measured bandwidth
(`oversample` x bandwidth), so a 12.5 kHz walkie-talkie and a 250 kHz LoRa link both fill
about half of the snippet's band, as in RadioML-style datasets. Training (models/rf/train.py)
makes its snippets with this same function from simulator captures, through the same front end,
so that the model is trained on exactly what it sees at run time.

Why an FFT channeliser rather than scipy.signal.resample_poly: the decimation factor is
rate / (oversample * bandwidth), rarely an integer, and one forward FFT of the segment plus one
short inverse FFT of the selected bins does the mix, an ideal low-pass and an arbitrary-ratio
decimation in one step, at a cost independent of the ratio.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

SNIPPET_LEN = 1024
OVERSAMPLE = 2.0
MIN_RATE_HZ = 8e3  # below ~3 front-end bins a bandwidth estimate means little


def snippet_rate(bandwidth_hz: float, rate_hz: float, oversample: float = OVERSAMPLE) -> float:
    """The output rate for an emitter of this bandwidth (never above the input rate)."""
    return float(min(rate_hz, max(MIN_RATE_HZ, oversample * bandwidth_hz)))


def channelise(x: np.ndarray, rate_hz: float, offset_hz: float, bandwidth_hz: float, start: int = 0,
               stop: int | None = None, n_out: int = SNIPPET_LEN, oversample: float = OVERSAMPLE) -> np.ndarray:
    """The emitter at `offset_hz` from the block's centre, as `n_out` complex64 samples at
    `snippet_rate(bandwidth_hz)`, taken from the middle of x[start:stop], unit mean power.

    A burst shorter than the snippet needs is zero-padded at the end (the model learns that too).
    """
    stop = x.size if stop is None else min(stop, x.size)
    start = max(0, min(start, stop))
    rate_out = snippet_rate(bandwidth_hz, rate_hz, oversample)
    need = int(np.ceil(n_out * rate_hz / rate_out))
    avail = stop - start
    if avail <= 0:
        raise ValueError("empty sample range for the snippet")
    if avail > need:
        start += (avail - need) // 2
        seg = x[start: start + need]
    else:
        seg = x[start:stop]
    L = sfft.next_fast_len(seg.size)
    spec = sfft.fft(seg, n=L, workers=1)
    k = max(2, int(round(L * rate_out / rate_hz)))
    c = int(round(offset_hz * L / rate_hz))
    idx = (c + np.arange(-(k // 2), k - k // 2)) % L
    sel = spec[idx]
    # a short cosine taper at the selected band's edges: less ringing than a brick wall
    edge = max(1, k // 32)
    taper = np.ones(k, np.float32)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    taper[:edge], taper[k - edge:] = ramp, ramp[::-1]
    y = sfft.ifft(sfft.ifftshift(sel * taper), workers=1)
    m = int(round(seg.size * k / L))  # the part of y that holds real samples, not FFT padding
    y = y[: max(1, min(m, y.size))]
    out = np.zeros(n_out, np.complex64)
    n = min(n_out, y.size)
    out[:n] = y[:n]
    p = float(np.mean(np.abs(out[:n]) ** 2))
    if p > 0 and np.isfinite(p):
        out /= np.float32(np.sqrt(p * n / n_out))
    return out


def to_model_input(snippets: np.ndarray) -> np.ndarray:
    """(B, N) complex -> (B, 2, N) float32 [I; Q], the classifier's input layout."""
    s = np.asarray(snippets, np.complex64)
    if s.ndim == 1:
        s = s[None]
    return np.stack([s.real, s.imag], axis=1).astype(np.float32)
