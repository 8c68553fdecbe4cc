"""The RF front end: IQ samples -> spectrogram rows -> noise floor -> CFAR -> bursts.

One `FrontEnd` serves one receiver. It keeps a noise-floor state per tuning (centre, rate), so
a receiver that hops over a scan plan has a floor for each hop, and it carries the samples that
did not fill a spectrogram row over to the next block of the same tuning when the blocks are
contiguous.

Why this shape (and not, say, a per-frame detector):
- non-overlapping Hann frames averaged K at a time give each spectrogram cell a chi-square
  statistic with 2K degrees of freedom: the noise floor's bias and the CFAR thresholds follow
  from that, not from guesses;
- the floor is estimated per bin from a low percentile over time (bursts do not raise it), then
  a wide median across frequency (a continuous emitter narrower than half the window does not
  raise it either), then tracked over time: fast down, slow up. A wide-band rise of the *instant*
  floor above the slow `baseline` is what jamming looks like;
- detection runs on a 2-D box average of the ratio to the floor (more degrees of freedom per
  test) with hysteresis: seeds over `seed_db` grown into cells over `grow_db`. A component must
  hold a seed and last `min_rows` rows (unless cut by the block's edge), which is what keeps the
  false alarm rate on noise alone low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage
from scipy.stats import chi2

# Plausible tunings: anything outside these is a driver or config bug, refused with a clear error.
MIN_CENTER_HZ = 1.0e3
MAX_CENTER_HZ = 20.0e9
MIN_RATE_HZ = 1.0e3
MAX_RATE_HZ = 250.0e6
# Full scale is 1.0; a sample component beyond this is a driver bug (and would overflow |X|^2
# in float32), so it is treated like NaN/inf: zeroed and counted.
MAX_SAMPLE_ABS = 1.0e6

_CU8_LUT: np.ndarray | None = None


class BadBlock(ValueError):
    """An IQ block the front end refuses; the message says why. Callers count these."""


def _cu8_lut() -> np.ndarray:
    """complex64 for every (I, Q) byte pair, indexed by the little-endian uint16 of the pair.

    One gather per sample is ~2x faster than converting I and Q separately and interleaving.
    """
    global _CU8_LUT
    if _CU8_LUT is None:
        v = (np.arange(256, dtype=np.float32) - 127.5) / 127.5
        idx = np.arange(65536)
        _CU8_LUT = (v[idx & 0xFF] + 1j * v[idx >> 8]).astype(np.complex64)
    return _CU8_LUT


def cu8_to_complex64(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """RTL-SDR unsigned 8-bit interleaved I/Q (rtl_tcp, SigMF cu8) -> complex64 in [-1, 1]."""
    raw = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if raw.size % 2:
        raise BadBlock(f"cu8 block has an odd number of bytes ({raw.size}): I/Q pairs are broken")
    if raw.size == 0:
        raise BadBlock("empty block")
    return _cu8_lut()[raw.view("<u2")]


@dataclass
class FrontEndConfig:
    fft_size: int = 1024
    avg_frames: int = 8  # FFT frames averaged per spectrogram row
    seed_db: float = 4.5  # CFAR seed threshold over the floor (after the 2-D box average)
    grow_db: float = 2.5  # cells over this join a seeded component
    box_rows: int = 2
    box_bins: int = 3
    min_rows: int = 2  # a closed component shorter than this is dropped
    min_seeds: int = 2
    floor_percentile: float = 20.0
    floor_tau_up_s: float = 20.0  # the floor follows a rise this slowly (a burst never lifts it)
    baseline_tau_s: float = 600.0  # the jamming baseline follows a quiet floor this slowly
    jam_rise_db: float = 6.0  # instant floor over baseline by this much ...
    jam_min_fraction: float = 0.25  # ... over this share of the band = jamming
    # bins either side of DC that keep their own floor (the RTL-SDR's LO leakage spike sits
    # there): a signal must rise over the spike, not over the band's floor, to be detected
    dc_notch_bins: int = 3
    edge_bins_fraction: float = 0.02  # band edges (anti-alias roll-off) ignored
    max_nonfinite_fraction: float = 0.5  # above this a block is refused, below it bad samples are zeroed


@dataclass
class Burst:
    """One connected region of occupied cells in one block, in absolute frequency and UTC time."""

    t_start: float
    t_end: float
    f_lo_hz: float
    f_hi_hz: float
    power_dbfs: float  # signal power above the noise floor, summed over the occupied bins
    snr_db: float  # in the occupied band: mean signal-to-noise ratio over the burst's cells
    peak_snr_db: float
    sample0: int  # indices into BlockResult.samples
    sample1: int
    open_start: bool  # touches the start of the block: may continue a burst of the previous block
    open_end: bool
    rows: tuple[int, int] = (0, 0)
    bins: tuple[int, int] = (0, 0)

    @property
    def center_hz(self) -> float:
        return 0.5 * (self.f_lo_hz + self.f_hi_hz)

    @property
    def bandwidth_hz(self) -> float:
        return self.f_hi_hz - self.f_lo_hz

    @property
    def duration_s(self) -> float:
        return self.t_end - self.t_start


@dataclass
class BlockResult:
    t: float  # time of samples[0]
    center_hz: float
    rate_hz: float
    samples: np.ndarray  # what was analysed (carry from the previous block + this block)
    rows_db: np.ndarray  # spectrogram, rows x bins, dB (fftshifted: bin 0 = lowest frequency)
    floor_db: np.ndarray  # tracked noise floor per bin, dB
    bursts: list[Burst]
    row_len: int  # samples per spectrogram row
    jam_fraction: float  # share of the band whose instant floor rose over the baseline
    jam_rise_db: float  # median rise over that share
    jam_band: tuple[float, float] | None = None  # lowest and highest risen frequency (Hz)
    nonfinite: int = 0

    @property
    def bin_hz(self) -> float:
        return self.rate_hz / self.rows_db.shape[1]

    @property
    def duration_s(self) -> float:
        return self.rows_db.shape[0] * self.row_len / self.rate_hz


@dataclass
class _TuningState:
    floor_db: np.ndarray
    baseline_db: np.ndarray
    t_last: float
    carry: np.ndarray
    carry_t: float
    last_ratio: np.ndarray | None = None  # last row of the previous block's ratio, for the box filter


@dataclass
class FrontEndStats:
    blocks: int = 0
    samples: int = 0
    refused: int = 0
    nonfinite_samples: int = 0  # NaN, inf or > MAX_SAMPLE_ABS: zeroed
    short_blocks: int = 0  # too short for one row: carried, nothing analysed yet
    last_error: str | None = None


def check_tuning(t: float, center_hz: float, rate_hz: float) -> None:
    """Refuse times and tunings no receiver can have (a driver or config bug), naming the value."""
    for name, v in (("t", t), ("center_hz", center_hz), ("rate_hz", rate_hz)):
        if not isinstance(v, int | float | np.floating | np.integer) or not math.isfinite(v):
            raise BadBlock(f"{name} is not a finite number: {v!r}")
    if not MIN_CENTER_HZ <= center_hz <= MAX_CENTER_HZ:
        raise BadBlock(f"center_hz {center_hz:g} is outside {MIN_CENTER_HZ:g}..{MAX_CENTER_HZ:g}")
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise BadBlock(f"rate_hz {rate_hz:g} is outside {MIN_RATE_HZ:g}..{MAX_RATE_HZ:g}")
    if t < 0:
        raise BadBlock(f"t {t:g} is before 1970")


def as_complex64(samples) -> tuple[np.ndarray, int]:
    """Validate and convert a block; non-finite samples are zeroed and counted (returned)."""
    if isinstance(samples, bytes | bytearray | memoryview):
        return cu8_to_complex64(samples), 0
    if not isinstance(samples, np.ndarray):
        raise BadBlock(f"samples must be a numpy array or cu8 bytes, not {type(samples).__name__}")
    if samples.ndim != 1:
        raise BadBlock(f"samples must be one-dimensional, got shape {samples.shape}")
    if samples.size == 0:
        raise BadBlock("empty block")
    if samples.dtype == np.uint8:
        return cu8_to_complex64(samples), 0
    if not np.issubdtype(samples.dtype, np.complexfloating):
        raise BadBlock(f"samples must be complex (or cu8 uint8), got dtype {samples.dtype}")
    x = samples.astype(np.complex64, copy=False)
    # one comparison catches NaN (compares False), inf and absurd magnitudes alike
    finite = (np.abs(x.view(np.float32)) < MAX_SAMPLE_ABS).reshape(-1, 2).all(axis=1)
    bad = int(x.size - np.count_nonzero(finite))
    if bad:
        x = np.where(finite, x, np.complex64(0))
    return x, bad


class FrontEnd:
    """Spectrogram, floor and bursts for one receiver; `process` per IQ block."""

    def __init__(self, config: FrontEndConfig | None = None):
        self.cfg = c = config or FrontEndConfig()
        if c.fft_size < 16 or c.fft_size & (c.fft_size - 1):
            raise ValueError(f"fft_size must be a power of two >= 16, got {c.fft_size}")
        if c.avg_frames < 1:
            raise ValueError("avg_frames must be >= 1")
        self.window = np.hanning(c.fft_size).astype(np.float32)
        # |X|^2 / (N * sum(w^2)) summed over bins = mean |x|^2 (Parseval): bins read as dBFS
        self.norm = np.float32(1.0 / (c.fft_size * float(np.sum(self.window.astype(np.float64) ** 2))))
        dof = 2 * c.avg_frames
        # a low percentile of chi2(dof)/dof sits below the mean by this factor: undo it
        self.floor_bias_db = float(10 * np.log10(chi2.ppf(c.floor_percentile / 100.0, dof) / dof))
        self.row_len = c.fft_size * c.avg_frames
        self._buf = np.empty((0, c.fft_size), np.complex64)
        self.stats = FrontEndStats()
        self._tunings: dict[tuple[int, int], _TuningState] = {}
        n = c.fft_size
        valid = np.ones(n, dtype=bool)
        edge = int(round(c.edge_bins_fraction * n))
        if edge:
            valid[:edge] = False
            valid[n - edge:] = False
        self._notch = (n // 2 - c.dc_notch_bins, n // 2 + c.dc_notch_bins + 1) if c.dc_notch_bins >= 0 else (0, 0)
        self.detect_bins = valid.copy()  # where CFAR runs: all but the band edges
        valid[self._notch[0]: self._notch[1]] = False
        self.valid_bins = valid  # where the floor's rise is measured: also not the DC spike

    # -- spectrum -------------------------------------------------------------------------------

    def spectrogram(self, x: np.ndarray) -> np.ndarray:
        """Rows of K averaged Hann-windowed periodograms (linear, dBFS-normalised, fftshifted)."""
        c = self.cfg
        nrows = x.size // self.row_len
        nfr = nrows * c.avg_frames
        if self._buf.shape[0] < nfr:  # reused between blocks: no 2 MB allocation per block
            self._buf = np.empty((nfr, c.fft_size), np.complex64)
        frames = self._buf[:nfr]
        np.multiply(x[: nrows * self.row_len].reshape(-1, c.fft_size), self.window, out=frames)
        spec = sfft.fft(frames, axis=1, workers=1, overwrite_x=True)
        # |X|^2 by squaring the float32 view in place and adding the I and Q halves: ~2x faster
        # than spec.real**2 + spec.imag**2, which makes two strided temporaries
        v = spec.view(np.float32)
        np.square(v, out=v)
        p = v[:, 0::2] + v[:, 1::2]
        rows = p.reshape(nrows, c.avg_frames, c.fft_size).sum(axis=1)
        rows *= self.norm / c.avg_frames
        return np.fft.fftshift(rows, axes=1)

    def instant_floor_db(self, rows_db: np.ndarray) -> np.ndarray:
        """Per-bin floor of this block: low percentile over time, wide median over frequency."""
        n = rows_db.shape[1]
        k = max(1, int(round(self.cfg.floor_percentile / 100.0 * (rows_db.shape[0] - 1))))
        q = np.partition(rows_db, k, axis=0)[k] if rows_db.shape[0] > 1 else rows_db[0].copy()
        q = q - self.floor_bias_db
        # Median over 1/4 of the band, computed on 4-bin means (16x cheaper, same answer to
        # ~0.1 dB). The "narrow" median (36 bins) only matters where the receiver's anti-alias
        # roll-off bends the floor down; it is smooth enough not to chase noise, which the
        # fast-down tracking would otherwise turn into a floor biased low in random bins.
        dec = 4 if n >= 64 else 1
        qd = q.reshape(-1, dec).mean(axis=1)
        wide = ndimage.median_filter(qd, size=max(3, (n // 4) // dec | 1), mode="nearest")
        narrow = ndimage.median_filter(qd, size=9, mode="nearest")
        floor = np.repeat(np.minimum(wide, narrow), dec)
        lo, hi = self._notch
        if hi > lo:  # the DC spike's bins: their own level (+0.5 dB: a per-bin estimate is noisier)
            floor[lo:hi] = np.maximum(floor[lo:hi], q[lo:hi] + 0.5)
        return floor

    # -- per block --------------------------------------------------------------------------------

    def process(self, samples, t: float, center_hz: float, rate_hz: float) -> BlockResult | None:
        """Analyse one block; None when it was too short to fill a row (kept for the next one).

        Raises BadBlock (a ValueError) for input no receiver should produce; counted in `stats`.
        """
        try:
            check_tuning(t, center_hz, rate_hz)
            x, bad = as_complex64(samples)
            if bad > self.cfg.max_nonfinite_fraction * x.size:
                raise BadBlock(f"{bad} of {x.size} samples are NaN, infinite or absurdly large")
        except BadBlock as e:
            self.stats.refused += 1
            self.stats.last_error = str(e)
            raise
        self.stats.blocks += 1
        self.stats.samples += x.size
        self.stats.nonfinite_samples += bad
        key = (int(round(center_hz)), int(round(rate_hz)))
        st = self._tunings.get(key)
        t0 = t
        contiguous = False
        if st is not None:
            expected = st.carry_t + st.carry.size / rate_hz
            contiguous = abs(expected - t) <= 2.0 * self.row_len / rate_hz
            if contiguous and st.carry.size:
                x = np.concatenate([st.carry, x])
                t0 = st.carry_t
        nrows = x.size // self.row_len
        if nrows == 0:
            self.stats.short_blocks += 1
            if st is not None:
                st.carry, st.carry_t = x.copy(), t0
            else:
                self._pending_state(key, x, t0)
            return None
        rows = self.spectrogram(x)
        rows_db = 10.0 * np.log10(np.maximum(rows, 1e-20))
        inst = self.instant_floor_db(rows_db)
        t_end = t0 + nrows * self.row_len / rate_hz
        if st is None or st.floor_db.shape != inst.shape:
            st = _TuningState(floor_db=inst.copy(), baseline_db=inst.copy(), t_last=t_end,
                              carry=np.empty(0, np.complex64), carry_t=t_end)
            self._tunings[key] = st
        jam_fraction, jam_rise, jam_bins = self._update_floor(st, inst, t_end)
        used = nrows * self.row_len
        st.carry = x[used:].copy()
        st.carry_t = t0 + used / rate_hz
        prev = st.last_ratio if contiguous else None
        bursts, st.last_ratio = self.detect(rows, st.floor_db, t0, center_hz, rate_hz, prev)
        return BlockResult(t=t0, center_hz=center_hz, rate_hz=rate_hz, samples=x, rows_db=rows_db,
                           floor_db=st.floor_db.copy(), bursts=bursts, row_len=self.row_len,
                           jam_fraction=jam_fraction, jam_rise_db=jam_rise, nonfinite=bad,
                           jam_band=None if jam_bins is None else
                           tuple(center_hz + (b - rows.shape[1] / 2) * rate_hz / rows.shape[1] for b in jam_bins))

    def _pending_state(self, key, x, t0) -> None:
        """A tuning seen only in blocks too short for a row so far: hold its samples."""
        self._tunings[key] = _TuningState(floor_db=np.empty(0), baseline_db=np.empty(0), t_last=t0,
                                          carry=x.copy(), carry_t=t0)

    def _update_floor(self, st: _TuningState, inst: np.ndarray,
                      t_end: float) -> tuple[float, float, tuple[int, int] | None]:
        c = self.cfg
        dt = max(0.0, t_end - st.t_last)
        st.t_last = t_end
        a_up = 1.0 - math.exp(-dt / c.floor_tau_up_s) if c.floor_tau_up_s > 0 else 1.0
        down = inst < st.floor_db
        # fast down (a quieter floor is real), slow up (a rise is a signal until it persists)
        st.floor_db = np.where(down, st.floor_db + 0.3 * (inst - st.floor_db), st.floor_db + a_up * (inst - st.floor_db))
        rise_all = inst - st.baseline_db
        risen_all = (rise_all > c.jam_rise_db) & self.valid_bins
        rise = rise_all[self.valid_bins]
        risen = risen_all[self.valid_bins]
        fraction = float(np.count_nonzero(risen)) / max(1, rise.size)
        rise_db = float(np.median(rise[risen])) if risen.any() else 0.0
        where = np.flatnonzero(risen_all)
        band = (int(where[0]), int(where[-1]) + 1) if where.size else None
        if fraction < c.jam_min_fraction:  # the baseline learns only while the band is not jammed
            a_b = 1.0 - math.exp(-dt / c.baseline_tau_s) if c.baseline_tau_s > 0 else 1.0
            bdown = inst < st.baseline_db
            st.baseline_db = np.where(bdown, st.baseline_db + 0.5 * (inst - st.baseline_db),
                                      st.baseline_db + a_b * (inst - st.baseline_db))
        return fraction, rise_db, band

    def detect(self, rows: np.ndarray, floor_db: np.ndarray, t0: float, center_hz: float,
               rate_hz: float, prev_ratio: np.ndarray | None = None) -> tuple[list[Burst], np.ndarray]:
        """CFAR with hysteresis on the box-averaged ratio to the floor; components -> bursts.

        `prev_ratio` (the previous contiguous block's last ratio rows) makes the box filter see
        across the block boundary, so the first row is tested like any other. Returns the bursts
        and this block's last ratio rows for the next call.
        """
        c = self.cfg
        floor_lin = np.power(10.0, floor_db / 10.0).astype(np.float32)
        ratio = rows / floor_lin
        keep = max(1, c.box_rows - 1)
        tail = ratio[-keep:].copy()
        if prev_ratio is not None and prev_ratio.shape[1] == ratio.shape[1]:
            ext = np.concatenate([prev_ratio, ratio])
            # uniform_filter centres even windows at i - 1 .. i: row i sees row i - 1 (the past)
            smooth = ndimage.uniform_filter(ext, size=(c.box_rows, c.box_bins), mode="nearest")[prev_ratio.shape[0]:]
        else:
            smooth = ndimage.uniform_filter(ratio, size=(min(c.box_rows, rows.shape[0]), c.box_bins), mode="nearest")
        seed_t, grow_t = 10 ** (c.seed_db / 10), 10 ** (c.grow_db / 10)
        grow = (smooth > grow_t) & self.detect_bins
        if not grow.any():
            return [], tail
        seed = (smooth > seed_t) & grow
        # Bridge small gaps (FSK tones, OOK bits) so one transmission is one component: label
        # the dilated mask, then keep the labels only on the cells that are really occupied.
        bridged = ndimage.binary_dilation(grow, structure=np.ones((3, 5), bool))
        lo, hi = self._notch
        if hi - lo and 0 < lo and hi < bridged.shape[1]:  # a wide emitter across DC stays one emitter
            bridged[:, lo:hi] |= (bridged[:, lo - 1] & bridged[:, hi])[:, None]
        labels, n = ndimage.label(bridged)
        if n == 0:
            return [], tail
        labels *= grow
        lab = labels.ravel()
        seeds = np.bincount(lab, weights=seed.ravel(), minlength=n + 1)
        cells = np.bincount(lab, weights=grow.ravel(), minlength=n + 1)
        excess = np.bincount(lab, weights=(np.maximum(ratio - 1.0, 0.0) * grow).ravel(), minlength=n + 1)
        nrows, nbins = rows.shape
        bin_hz = rate_hz / nbins
        row_s = self.row_len / rate_hz
        out = []
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None or seeds[i] < c.min_seeds:
                continue
            r0, r1 = sl[0].start, sl[0].stop
            b0, b1 = sl[1].start, sl[1].stop
            open_start, open_end = r0 == 0, r1 == nrows
            if r1 - r0 < c.min_rows and not open_end:  # a burst cut by the block's end may go on
                continue
            # the box filter spreads a component by about half its width on each side
            shrink = min(c.box_bins // 2, max(0, (b1 - b0 - 1) // 2))
            fb0, fb1 = b0 + shrink, b1 - shrink
            sub_rows = rows[r0:r1, fb0:fb1]
            sub_floor = floor_lin[fb0:fb1]
            sig = np.maximum(sub_rows - sub_floor, 0.0)
            power = float(sig.sum(axis=1).mean())
            mean_snr = float(excess[i] / max(cells[i], 1.0))
            peak = float((sub_rows / sub_floor).max() - 1.0)
            out.append(Burst(
                t_start=t0 + r0 * row_s, t_end=t0 + r1 * row_s,
                f_lo_hz=center_hz + (fb0 - nbins / 2) * bin_hz, f_hi_hz=center_hz + (fb1 - nbins / 2) * bin_hz,
                power_dbfs=10 * math.log10(max(power, 1e-20)), snr_db=10 * math.log10(max(mean_snr, 1e-6)),
                peak_snr_db=10 * math.log10(max(peak, 1e-6)), sample0=r0 * self.row_len, sample1=r1 * self.row_len,
                open_start=open_start, open_end=open_end, rows=(r0, r1), bins=(fb0, fb1)))
        return out, tail

