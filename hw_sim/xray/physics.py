"""Dual-energy line-scan physics: areal densities per material -> two uint16 transmission images.

A baggage scanner's detector line sees, per pixel, the X-rays that crossed every object above it.
Beer-Lambert gives the expected transmission at each energy, exp(-sum_m mu_m * rho_t_m), where
rho_t_m is the areal density (g/cm^2) of material m along the ray and mu_m its mass attenuation
coefficient (cm^2/g). Two energies matter because mu falls with energy much faster for high-Z
materials (photo-electric effect ~ Z^4/E^3): the ratio ln(T_low) / ln(T_high) is ~1.2-1.3 for
organics and water, ~1.8 for aluminium and glass, and > 3 for steel and lead. That ratio is what
real scanners colour orange / green / blue, and what the detectors learn from, so the simulator
must get it right rather than merely draw dark shapes.

Then what the hardware does: detector blur (a Gaussian of ~0.7 px), Poisson photon noise at a
finite open-beam count, a per-element gain residual left after flat-field calibration (streaks
along the belt), a per-scan-line source flicker (lines across the belt) and a few dead elements.
Output convention (drivers/base.py): uint16 transmission, 65535 = open beam, rows = detector line,
columns = belt direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

XRAY_WHITE = 65535  # drivers.base.XRAY_WHITE; repeated so hw_sim has no import-time tie to drivers


@dataclass(frozen=True)
class Material:
    """Effective mass attenuation (cm^2/g) for the scanner's two filtered spectra.

    Values approximate NIST XCOM at ~60 keV (low) and ~120 keV (high). Lead's K-edge (88 keV)
    sits between the two, so a monoenergetic pair would make lead look organic; its high value is
    the spectrum-averaged one after beam hardening, which keeps lead the most metal-like, as real
    scanners show it.
    """

    name: str
    density: float  # g/cm^3, for converting thickness to areal density
    mu_low: float
    mu_high: float

    @property
    def ratio(self) -> float:
        return self.mu_low / self.mu_high


MATERIALS: tuple[Material, ...] = (
    Material("organic", 1.00, 0.195, 0.160),  # plastics, paper, textiles, narcotics (Zeff ~6-7)
    Material("water", 1.00, 0.206, 0.162),  # liquids, body-care products (Zeff ~7.4)
    Material("aluminium", 2.70, 0.278, 0.155),  # light metals, glass, ceramics (Zeff ~11-14)
    Material("steel", 7.87, 1.205, 0.280),  # iron, steel, copper (Zeff ~26-29)
    Material("lead", 11.35, 5.020, 1.100),  # lead, heavy metals (Zeff 82)
)
MATERIAL_INDEX = {m.name: i for i, m in enumerate(MATERIALS)}
MU_LOW = np.array([m.mu_low for m in MATERIALS], dtype=np.float32)
MU_HIGH = np.array([m.mu_high for m in MATERIALS], dtype=np.float32)

# Dual-energy ratio R = ln(T_low) / ln(T_high) thresholds, the usual three colour classes.
RATIO_ORGANIC_MAX = 1.45
RATIO_INORGANIC_MAX = 2.50


def classify_ratio(r: float) -> str:
    """'organic' (orange on a console), 'inorganic' (green) or 'metal' (blue)."""
    if r < RATIO_ORGANIC_MAX:
        return "organic"
    if r < RATIO_INORGANIC_MAX:
        return "inorganic"
    return "metal"


@dataclass(frozen=True)
class Detector:
    """The scanner's imaging chain; defaults are those of a typical 6040 cabinet scanner."""

    open_beam_low: float = 6000.0  # photons per pixel reaching the low-energy (front) detector
    open_beam_high: float = 9000.0  # the high-energy (rear) detector, behind its copper filter
    blur_sigma_px: float = 0.7
    gain_residual: float = 0.004  # per-element gain left after flat-field calibration (streaks)
    line_flicker: float = 0.003  # per-scan-line source intensity fluctuation
    dead_element_share: float = 0.002


def attenuation(layers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line integrals mu*rho*t at (low, high) energy from (n_materials, H, W) areal densities."""
    # A plain loop of scaled adds: numpy's (5,) @ (5, N) matmul takes a slow non-BLAS path,
    # ~20x slower than this for our shapes.
    low = np.zeros(layers.shape[1:], np.float32)
    high = np.zeros(layers.shape[1:], np.float32)
    for i in range(layers.shape[0]):
        layer = layers[i]
        if layer.any():
            low += MU_LOW[i] * layer
            high += MU_HIGH[i] * layer
    return low, high


# Above this many expected photons a Poisson count is drawn as lam + sqrt(lam) * N(0, 1).
POISSON_EXACT_BELOW = 40.0


def photon_counts(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon counts for expected counts `lam` (float32).

    Hand-written rather than rng.poisson(lam) alone: numpy's sampler costs ~40 ns a draw, the
    dominant cost of a bag. Above POISSON_EXACT_BELOW counts the normal approximation's error
    (skewness 1/sqrt(lam) < 0.16) is below what a 16-bit image or a detector can tell; the dark
    pixels behind metal, where the shape of the distribution matters, are drawn exactly.
    """
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    counts = lam + np.sqrt(lam) * z
    low = lam < POISSON_EXACT_BELOW
    if low.any():
        counts[low] = rng.poisson(lam[low])
    return np.maximum(counts, 0.0, out=counts)


def _expected_counts(att: np.ndarray, open_beam: float, blur: float) -> np.ndarray:
    t = np.exp(-att)
    if blur > 0:
        # Blur the flux, not the noise: the scintillator spreads light before photons are counted.
        t = cv2.GaussianBlur(t, (0, 0), blur, borderType=cv2.BORDER_REPLICATE)
    return t * np.float32(open_beam)


def render(
    layers: np.ndarray,
    rng: np.random.Generator | None,
    detector: Detector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Areal densities (n_materials, H, W) float32 g/cm^2 -> (high, low) uint16 transmission.

    With rng=None the result is the noise-free expected transmission (blur still applied), which
    the tests use to check physics without noise.
    """
    det = detector or Detector()
    att_low, att_high = attenuation(layers)
    out = []
    h, w = att_low.shape
    for att, i0 in ((att_high, det.open_beam_high), (att_low, det.open_beam_low)):
        lam = _expected_counts(att, i0, det.blur_sigma_px)
        if rng is None:
            t = lam / np.float32(i0)
        else:
            gain = 1.0 + det.gain_residual * rng.standard_normal(h, dtype=np.float32)
            flicker = 1.0 + det.line_flicker * rng.standard_normal(w, dtype=np.float32)
            lam *= gain[:, None]
            lam *= flicker[None, :]
            counts = photon_counts(lam, rng)
            # Dead elements: the scanner's bad-pixel map replaces them with their neighbours' mean,
            # which leaves a noiseless, slightly smeared row, as on real images.
            dead = np.flatnonzero(rng.random(h) < det.dead_element_share)
            if dead.size:
                above = np.clip(dead - 1, 0, h - 1)
                below = np.clip(dead + 1, 0, h - 1)
                counts[dead, :] = 0.5 * (counts[above, :] + counts[below, :])
            counts *= np.float32(1.0 / i0)
            t = counts
        t *= np.float32(XRAY_WHITE)
        t += np.float32(0.5)
        np.clip(t, 0, XRAY_WHITE, out=t)
        out.append(t.astype(np.uint16))
    return out[0], out[1]


def transmission(img: np.ndarray) -> np.ndarray:
    """uint16 image -> transmission in (0, 1], floored so that log() stays finite."""
    return np.maximum(img.astype(np.float32), 1.0) / np.float32(XRAY_WHITE)


def dual_energy_ratio(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Per-pixel R = ln(T_low) / ln(T_high); NaN where the high image is (near) open beam."""
    lh = -np.log(transmission(high))
    ll = -np.log(transmission(low))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lh > 0.02, ll / lh, np.nan)
