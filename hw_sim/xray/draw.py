"""Drawing parts of a scene: polygons in centimetres -> anti-aliased coverage stamps -> density maps.

OpenCV's fillPoly/polylines with sub-pixel shift and LINE_AA draw each part into a small region of
interest; Canvas adds coverage x areal density (g/cm^2) into one map per material. dome() and
texture() give the thickness profiles of rounded bodies and of cloth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from hw_sim.xray.physics import MATERIAL_INDEX, MATERIALS


@dataclass
class Stamp:
    """Anti-aliased coverage (0..1) of one drawn part, over a region of interest of the frame."""

    alpha: np.ndarray
    y0: int
    x0: int


def rot(pts: np.ndarray, x: float, y: float, ang: float) -> np.ndarray:
    """Rotate points (N, 2) by `ang` radians, then move them to (x, y)."""
    c, s = math.cos(ang), math.sin(ang)
    return pts @ np.array([[c, s], [-s, c]]) + (x, y)


def rect(w: float, h: float, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """Corners of a w x h rectangle centred on (x0, y0)."""
    return np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]) + (x0, y0)


def ellipse(a: float, b: float, n: int = 40, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([a * np.cos(t) + x0, b * np.sin(t) + y0], axis=1)


def rounded_rect(w: float, h: float, r: float, n: int = 8) -> np.ndarray:
    r = min(r, w / 2, h / 2)
    pts = []
    for cx, cy, a0 in ((w / 2 - r, h / 2 - r, 0), (-w / 2 + r, h / 2 - r, 90), (-w / 2 + r, -h / 2 + r, 180),
                       (w / 2 - r, -h / 2 + r, 270)):
        for t in np.linspace(math.radians(a0), math.radians(a0 + 90), n):
            pts.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return np.array(pts)


def blob(rng: np.random.Generator, rx: float, ry: float, wobble: float = 0.18, n: int = 36) -> np.ndarray:
    """A soft irregular outline (folded clothes, a toiletry bag): an ellipse with random harmonics."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 4):
        r += wobble / k * rng.standard_normal() * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    r = np.clip(r, 0.55, 1.4)
    return np.stack([rx * r * np.cos(t), ry * r * np.sin(t)], axis=1)


class Canvas:
    """Per-material areal density maps that parts are added into."""

    def __init__(self, h: int, w: int, track_contraband: bool):
        self.h, self.w = h, w
        self.layers = np.zeros((len(MATERIALS), h, w), np.float32)
        self.track = track_contraband
        self.contraband: dict[str, np.ndarray] = {}

    def _roi(self, pts: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        x0 = max(int(math.floor(pts[:, 0].min() - pad)) - 1, 0)
        y0 = max(int(math.floor(pts[:, 1].min() - pad)) - 1, 0)
        x1 = min(int(math.ceil(pts[:, 0].max() + pad)) + 2, self.w)
        y1 = min(int(math.ceil(pts[:, 1].max() + pad)) + 2, self.h)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def poly(self, pts: np.ndarray) -> Stamp | None:
        box = self._roi(pts, 0)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        roi = np.zeros((y1 - y0, x1 - x0), np.uint8)
        # 4 fractional bits: sub-pixel edges, so thin parts keep their true mass.
        p = np.round((pts - (x0, y0)) * 16).astype(np.int32)
        cv2.fillPoly(roi, [p], 255, cv2.LINE_AA, shift=4)
        return Stamp(roi.astype(np.float32) * np.float32(1 / 255), y0, x0)

    def stroke(self, pts: np.ndarray, width_px: float, closed: bool) -> Stamp | None:
        box = self._roi(pts, width_px)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        roi = np.zeros((y1 - y0, x1 - x0), np.uint8)
        p = np.round((pts - (x0, y0)) * 16).astype(np.int32)
        cv2.polylines(roi, [p], closed, 255, max(1, int(round(width_px))), cv2.LINE_AA, shift=4)
        return Stamp(roi.astype(np.float32) * np.float32(1 / 255), y0, x0)

    def add(self, material: str, st: Stamp, density: np.ndarray | float, tag: str | None) -> None:
        h, w = st.alpha.shape
        val = st.alpha * density
        sl = (MATERIAL_INDEX[material], slice(st.y0, st.y0 + h), slice(st.x0, st.x0 + w))
        self.layers[sl] += val
        if tag is not None and self.track:
            if tag not in self.contraband:
                self.contraband[tag] = np.zeros_like(self.layers)
            self.contraband[tag][sl] += val


def dome(alpha: np.ndarray) -> np.ndarray:
    """Thickness profile of a rounded body (bottle, shoe, bundle): 1 on the axis, thin at the rim."""
    inside = (alpha >= 0.5).astype(np.uint8)
    d = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    mx = float(d.max())
    if mx <= 0:
        return np.full(alpha.shape, 0.5, np.float32)
    p = d / mx
    return np.float32(0.15) + np.float32(0.85) * np.sqrt(np.clip(2 * p - p * p, 0, 1))


def texture(rng: np.random.Generator, shape: tuple[int, int], amp: float, cell: int = 14) -> np.ndarray:
    """Low-frequency random thickness (folds of cloth, crumpled paper), mean 1."""
    h, w = shape
    small = rng.standard_normal((h // cell + 3, w // cell + 3)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(1.0 + amp * big, 0.2, None)
