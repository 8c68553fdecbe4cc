"""Dual-energy X-ray preprocessing: log-attenuation, material classes with an effective-Z estimate,
the officers' pseudo-colour image, and the detector's input tensor.

Pixel convention: uint16 transmission, WHITE (65535) = open beam, 0 = nothing gets through.
Everything here is vectorised, mostly through OpenCV's SIMD kernels, because it runs on every bag
(and again for the console and for each of the verifier's crops).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

WHITE = 65535  # open beam; the same value as drivers.base.XRAY_WHITE (detectors never import drivers)

# Material classes, as officers know them from every baggage scanner.
NONE, ORGANIC, INORGANIC, METAL = 0, 1, 2, 3
MATERIAL_NAMES = ("none", "organic", "inorganic", "metal")

# Below this high-energy attenuation a pixel is air / the belt: its ratio is noise.
MIN_MU = 0.05
# Above this the low-energy image is photon-starved (a few counts left): the ratio is meaningless,
# call it metal/opaque, as consoles do.
OPAQUE_MU = 6.5

# Zeff boundaries between the classes (the usual security-imaging convention: organic < 10,
# inorganic 10..18, metal above).
Z_ORGANIC_MAX = 10.0
Z_INORGANIC_MAX = 17.5

_LN_WHITE = float(np.log(WHITE))


@dataclass(frozen=True)
class ZeffModel:
    """Ratio R = mu_low / mu_high as a function of Z, from the two-term attenuation model
    mu(E) ~ Compton(E) + k * Z^3 / E^3: R(Z) = (a + b*x) / (1 + x), x = k' * Z^3.

    a = Compton ratio between the two energies, b = the photoelectric ratio (E_high/E_low)^3,
    a, b, k fitted (least squares) to the effective mass attenuations of organic (Z 6.5, R 1.22),
    water (Z 7.4, R 1.27), aluminium (Z 13, R 1.79) and steel (Z 26, R 4.30) at the ~60 / ~120 keV
    spectra of a typical cabinet scanner (NIST XCOM values, the same the simulator uses); fitted
    b ~ 8.07 is the (120/60)^3 photoelectric ratio, as the model says. The inverse is closed-form,
    so the estimate is a handful of array operations per pixel.
    """

    a: float = 1.134
    b: float = 8.07
    k: float = 0.479e-4

    def ratio(self, z: np.ndarray | float) -> np.ndarray | float:
        x = self.k * np.power(z, 3.0)
        return (self.a + self.b * x) / (1.0 + x)

    def zeff(self, ratio: np.ndarray) -> np.ndarray:
        r = np.clip(ratio, self.a + 1e-3, self.b - 1e-3)
        x = (r - self.a) / (self.b - r)
        return np.cbrt(x / self.k).astype(np.float32)


ZEFF_MODEL = ZeffModel()


def check_pair(high: np.ndarray, low: np.ndarray | None) -> None:
    """Raise ValueError with a clear reason unless high (and low, if given) are 2-D uint16 images of
    the same, non-trivial shape. Float images with NaN are refused by dtype already."""
    for name, img in (("high", high), ("low", low)):
        if img is None:
            if name == "high":
                raise ValueError("high-energy image is missing")
            continue
        if not isinstance(img, np.ndarray):
            raise ValueError(f"{name}: expected a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint16:
            nan = " (contains NaN)" if img.dtype.kind == "f" and np.isnan(img).any() else ""
            raise ValueError(f"{name}: expected uint16 transmission, got dtype {img.dtype}{nan}")
        if img.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D image (rows, columns), got shape {img.shape}")
        if img.shape[0] < 16 or img.shape[1] < 16:
            raise ValueError(f"{name}: image too small ({img.shape}); at least 16 x 16")
    if low is not None and low.shape != high.shape:
        raise ValueError(f"high {high.shape} and low {low.shape} images differ in shape")


def attenuation(img: np.ndarray) -> np.ndarray:
    """-ln(T / WHITE) as float32: 0 for open beam, larger for denser material. T = 0 is clamped to
    one count so the log is finite (a fully opaque pixel reads as ln(65535) ~ 11.1).

    OpenCV's vectorised log on the float image, not a 65536-entry lookup table: right after the
    detector's network has run the 256 kB table is out of the caches, and gathering from it cost
    twice as much as these four passes (bench/bench_xray_detector.py, "dual-energy materials").
    The two agree to 1e-6."""
    mu = img.astype(np.float32)
    cv2.max(mu, 1.0, dst=mu)
    cv2.log(mu, dst=mu)
    return np.subtract(_LN_WHITE, mu, out=mu)


@dataclass
class Materials:
    """Per-pixel results of the dual-energy analysis (all on one grid). The class map is computed
    only when asked for (the detector needs it only where it found something)."""

    mu_high: np.ndarray  # float32 -ln T at the high energy
    mu_low: np.ndarray  # float32 -ln T at the low energy (= mu_high for single energy)
    zeff: np.ndarray  # float32 effective Z (0 where there is no material or single energy)
    dual: bool
    step: int = 1  # grid spacing in image pixels (binned blocks, or a strided view of a full-res grid)

    @cached_property
    def material(self) -> np.ndarray:
        """uint8 NONE / ORGANIC / INORGANIC / METAL. Single energy: opaque = metal, else organic
        (what single-energy consoles show)."""
        return self.region(slice(None), slice(None))

    def region(self, rows: slice, cols: slice) -> np.ndarray:
        """The class map of one region only (the detector describes a few boxes per frame; the
        whole map would cost more than all of them)."""
        return self.classify(self.mu_high[rows, cols], self.mu_low[rows, cols], self.zeff[rows, cols])

    def classify(self, mu_high: np.ndarray, mu_low: np.ndarray, zeff: np.ndarray) -> np.ndarray:
        """The classes of any pixels taken from these maps alike (a region, or the pixels of a box
        a mask picks: classifying only those costs a third of classifying the box)."""
        opaque = (mu_low if self.dual else mu_high) > OPAQUE_MU
        mat = np.full(mu_high.shape, ORGANIC, np.uint8)
        if self.dual:
            mat[zeff >= Z_ORGANIC_MAX] = INORGANIC
            mat[zeff >= Z_INORGANIC_MAX] = METAL
        mat[mu_high <= MIN_MU] = NONE
        mat[opaque] = METAL
        return mat


def bin_pixels(img: np.ndarray, step: int) -> np.ndarray:
    """Mean transmission of each step x step block (a ragged edge dropped), as a detector with
    pixels `step` times larger would read it. Binning before the log also makes the per-pixel log
    a quarter of the work at step 2 (bench/bench_xray_detector.py)."""
    if step == 1:
        return img
    h, w = img.shape[0] // step, img.shape[1] // step
    return cv2.resize(img[:h * step, :w * step], (w, h), interpolation=cv2.INTER_AREA)


def materials(high: np.ndarray, low: np.ndarray | None, model: ZeffModel = ZEFF_MODEL, step: int = 1) -> Materials:
    """Effective Z per pixel from the ratio of the two attenuations (0 without a low image).

    step > 1 works on binned pixels (bin_pixels): the detector's model sees half resolution
    anyway. The console's pseudo-colour image uses step 1."""
    mu_h = attenuation(bin_pixels(high, step))
    if low is None:
        return Materials(mu_h, mu_h, np.zeros_like(mu_h), False, step)
    mu_l = attenuation(bin_pixels(low, step))
    # The ratio of two noisy logs is noisier still on thin material: average 3x3 first (photon
    # noise is independent per pixel; objects are much larger than 3 px).
    k = (3, 3)
    bl, bh = cv2.blur(mu_l, k), cv2.blur(mu_h, k)
    # model.zeff(ratio), written in place: on a 448 x 640 frame the temporaries of the plain
    # expression cost more than the arithmetic (measured: ~3 ms -> ~1.5 ms per frame)
    cv2.max(bh, MIN_MU, dst=bh)  # OpenCV's: twice as fast as np.maximum with a scalar here
    r = np.divide(bl, bh, out=bl)
    np.clip(r, model.a + 1e-3, model.b - 1e-3, out=r)
    x = np.subtract(r, model.a, out=bh)
    np.subtract(model.b, r, out=r)
    np.divide(x, r, out=x)
    x *= 1.0 / model.k
    # The cube root as exp(log(x) / 3) with OpenCV's vectorised log and exp: numpy's float32 cbrt
    # is vectorised only where it has Intel's SVML (the AVX-512 machine of MODEL_CARD.md's
    # "Speed"; 1.34 ms a half-resolution frame on an AVX2 AMD EPYC), cv2.pow took 0.068 ms and
    # these three passes 0.029 (AVX-512 EPYC). They agree with a float64 cbrt to 6e-7 relative
    # (x > 0 here: the clip above keeps the ratio inside (a, b)).
    zeff = cv2.log(x, dst=x)
    np.multiply(zeff, np.float32(1.0 / 3.0), out=zeff)
    cv2.exp(zeff, dst=zeff)
    cv2.min(zeff, 40.0, dst=zeff)  # OpenCV's: twice as fast as np.minimum with a scalar
    # no material -> 0, opaque -> 30, through uint8 masks: np.copyto(where=) took three times as long
    cv2.copyTo(np.zeros_like(zeff), cv2.compare(mu_h, MIN_MU, cv2.CMP_LE), zeff)
    cv2.copyTo(np.full_like(zeff, 30.0), cv2.compare(mu_l, OPAQUE_MU, cv2.CMP_GT), zeff)
    return Materials(mu_h, mu_l, zeff, True, step)


def _build_palette() -> np.ndarray:
    """(4 classes, 256 brightness) -> BGR. Hue by material (organic orange, inorganic green, metal
    blue), value by transmission: the denser the darker, as on every baggage console."""
    hues_bgr = {
        NONE: (255, 255, 255),
        ORGANIC: (0, 140, 255),  # orange
        INORGANIC: (40, 200, 40),  # green
        METAL: (200, 80, 20),  # blue
    }
    t = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]  # transmission 0..1
    lut = np.zeros((4, 256, 3), np.uint8)
    for m, bgr in hues_bgr.items():
        c = np.asarray(bgr, np.float32)[None, :]
        # light material: pale tint towards white; dense: saturated and dark
        tint = c + (255.0 - c) * np.clip((t - 0.55) / 0.45, 0, 1) ** 1.5
        lut[m] = np.clip(tint * np.clip(0.15 + 0.85 * t / 0.55, 0, 1), 0, 255).astype(np.uint8)
    lut[NONE] = 255 - ((1.0 - t) * 255).astype(np.uint8).repeat(3, 1) // 2  # faint grey if any
    return lut


_PALETTE = _build_palette()
# The same palette as one uint32 (B, G, R, 0) per (material, brightness) entry: gathering 4-byte
# words with np.take is ~25x faster than fancy-indexing 3-byte rows (15 ms -> 0.5 ms per frame).
_PALETTE32 = np.concatenate([_PALETTE.reshape(-1, 3), np.zeros((4 * 256, 1), np.uint8)], axis=1).view(np.uint32).ravel()


def pseudocolor(high: np.ndarray, low: np.ndarray | None = None) -> np.ndarray:
    """The conventional pseudo-colour image, uint8 BGR (OpenCV order), same height and width."""
    check_pair(high, low)
    return pseudocolor_from(materials(high, low), high, low)


def pseudocolor_from(m: Materials, high: np.ndarray, low: np.ndarray | None) -> np.ndarray:
    """pseudocolor with the materials already computed."""
    # brightness from the mean transmission of both energies (high alone if single energy)
    t = high if low is None else ((high.astype(np.uint32) + low) >> 1)
    code = (m.material.astype(np.uint16) << 8) | (t >> 8).astype(np.uint16)
    bgra = np.take(_PALETTE32, code).view(np.uint8).reshape(*code.shape, 4)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2BGR)


# The model's input: both attenuations and Zeff, each scaled to about 0..1, at half resolution.
MU_SCALE = 1.0 / 8.0
Z_SCALE = 1.0 / 30.0


# Our model's input is made from materials of pixels binned this many to a side.
INPUT_STEP = 2


def model_input(high: np.ndarray, low: np.ndarray | None, size_hw: tuple[int, int]) -> np.ndarray:
    """[1, 3, H, W] float32 tensor for our model: mu_high, mu_low, zeff (scaled), from materials
    of pixels binned INPUT_STEP x INPUT_STEP, resized with area averaging where that grid is not the model's size.
    Single energy: mu_low = mu_high and zeff = 0 (the model is trained on some single-energy bags
    so it still works on them)."""
    return model_input_from(model_materials(high, low), size_hw)


def model_materials(high: np.ndarray, low: np.ndarray | None) -> Materials:
    """The materials our model's input is made from: training (model_input) and the runtime
    (the detector, which describes its findings from the same grid) call this one function, so
    the two cannot drift apart."""
    return materials(high, low, step=INPUT_STEP)


def model_input_from(m: Materials, size_hw: tuple[int, int]) -> np.ndarray:
    """model_input from materials already computed (the detector reuses them for describing)."""
    h, w = size_hw
    out = np.empty((1, 3, h, w), np.float32)
    for c, (img, scale) in enumerate(((m.mu_high, MU_SCALE), (m.mu_low, MU_SCALE), (m.zeff, Z_SCALE))):
        # resizing each plane straight into the tensor avoids stacking and transposing copies
        if img.shape == (h, w):
            np.multiply(img, scale, out=out[0, c])
        else:
            cv2.resize(img, (w, h), dst=out[0, c], interpolation=cv2.INTER_AREA)
            out[0, c] *= scale
    return out


def letterbox(img: np.ndarray, size_hw: tuple[int, int], pad: int = 114) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping aspect ratio and pad to size_hw, the way YOLO exporters expect.
    Returns (image, scale, pad_x, pad_y); image x = (input x - pad_x) / scale."""
    h, w = img.shape[:2]
    th, tw = size_hw
    s = min(th / h, tw / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    resized = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)
    px, py = (tw - nw) // 2, (th - nh) // 2
    out = np.full((th, tw, img.shape[2]), pad, img.dtype)
    out[py:py + nh, px:px + nw] = resized
    return out, s, px, py


def bag_mask(mu_high: np.ndarray, kernel: int = 9) -> np.ndarray:
    """The bag's outline as a filled uint8 mask (1 inside): the largest blob of material, holes
    filled, so things in the lining count as inside."""
    present = (mu_high > MIN_MU).astype(np.uint8)
    present = cv2.morphologyEx(present, cv2.MORPH_CLOSE, np.ones((kernel, kernel), np.uint8))
    contours, _ = cv2.findContours(present, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros_like(present)
    if contours:
        big = max(contours, key=cv2.contourArea)
        cv2.drawContours(mask, [big], -1, 1, thickness=cv2.FILLED)
    return mask
