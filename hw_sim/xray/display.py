"""The operator display: a dual-energy image in the usual three-colour pseudo-colour.

Scanners show organics orange, inorganics green and metals blue, with brightness from the
high-energy transmission; an officer reads the material from the hue. The simulator's MJPEG
stream shows exactly this, as a scanner's video output would.
"""

from __future__ import annotations

import numpy as np

from hw_sim.xray.physics import RATIO_INORGANIC_MAX, RATIO_ORGANIC_MAX, XRAY_WHITE

# BGR, as OpenCV encodes it
_ORGANIC = np.array([40, 140, 255], np.float32)
_INORGANIC = np.array([60, 200, 60], np.float32)
_METAL = np.array([255, 90, 30], np.float32)


def pseudocolour(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """uint16 (high, low) -> uint8 BGR (H, W, 3)."""
    th = np.maximum(high.astype(np.float32), 1.0) * np.float32(1.0 / XRAY_WHITE)
    tl = np.maximum(low.astype(np.float32), 1.0) * np.float32(1.0 / XRAY_WHITE)
    ah, al = -np.log(th), -np.log(tl)
    r = al / np.maximum(ah, 0.02)
    colour = np.where((r < RATIO_ORGANIC_MAX)[..., None], _ORGANIC,
                      np.where((r < RATIO_INORGANIC_MAX)[..., None], _INORGANIC, _METAL))
    # Near open beam the ratio is noise: fade to white there, as scanners do.
    tint = np.clip(ah / 0.15, 0, 1)[..., None]
    base = colour * tint + np.float32(255) * (1 - tint)
    out = base * np.sqrt(th)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)
