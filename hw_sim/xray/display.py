"""The operator display: a dual-energy image in the usual three-colour pseudo-colour.

Scanners show organics orange, inorganics green and metals blue, with brightness from the
high-energy transmission; an officer reads the material from the hue. The simulator's MJPEG
stream shows exactly this, as a scanner's video output would.

Per-pixel float colour maths over (H, W, 3) cost ~60 ms a bag on the shared box; instead every
pixel gets an index (material class x 32 tint steps x 256 brightness steps) into a 24k-entry
BGR table built once, about 3x cheaper (see bench/bench_sim_xray.py).
"""

from __future__ import annotations

import numpy as np

from hw_sim.xray.physics import RATIO_INORGANIC_MAX, RATIO_ORGANIC_MAX, XRAY_WHITE

# BGR, as OpenCV encodes it: organic orange, inorganic green, metal blue
_COLOURS = np.array([[40, 140, 255], [60, 200, 60], [255, 90, 30]], np.float32)
_TINT_STEPS = 32
_LEVELS = 256
_TINT_FULL = 0.15  # -ln(T_high) at which the hue is fully shown; nearer open beam it fades to white


def _table() -> np.ndarray:
    tint = (np.arange(_TINT_STEPS, dtype=np.float32) / (_TINT_STEPS - 1))[None, :, None, None]
    bright = np.sqrt(np.arange(_LEVELS, dtype=np.float32) / (_LEVELS - 1))[None, None, :, None]
    col = _COLOURS[:, None, None, :]
    out = (col * tint + 255 * (1 - tint)) * bright
    return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(-1, 3)


_LUT = _table()


def pseudocolour(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """uint16 (high, low) -> uint8 BGR (H, W, 3)."""
    th = np.maximum(high, 1).astype(np.float32) * np.float32(1.0 / XRAY_WHITE)
    tl = np.maximum(low, 1).astype(np.float32) * np.float32(1.0 / XRAY_WHITE)
    ah = -np.log(th)
    al = -np.log(tl)
    r = al / np.maximum(ah, np.float32(0.02))
    cls = (r >= RATIO_ORGANIC_MAX).astype(np.int32) + (r >= RATIO_INORGANIC_MAX)
    tint = np.minimum(ah * np.float32((_TINT_STEPS - 1) / _TINT_FULL), _TINT_STEPS - 1).astype(np.int32)
    level = (high >> 8).astype(np.int32)
    idx = (cls * _TINT_STEPS + tint) * _LEVELS + level
    return _LUT[idx]
