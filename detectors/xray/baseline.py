"""A physics baseline with no learning, behind the same Detector interface (model = "physics").

It encodes what a screener looks for, from the dual-energy image alone:

- narcotics: a dense, evenly filled organic mass inside the bag outline (a pressed block is
  uniform; clothes and food are not);
- weapon: an elongated metal shape (blade, barrel) or a compact metal mass of gun size;
- currency: a flat, rectangular organic slab of banknote density;
- concealment: a long straight dense seam inside the bag, away from its outline (a second wall
  or the frame of a false bottom).

Scores are smooth functions of those features so that the evaluation can draw PR curves; the
constants are physical (areal densities in -ln T, pixel sizes at ~1.5 mm/px), set by hand, never
fitted. It is the yardstick our model must beat, and a fallback that needs no model file.
"""

from __future__ import annotations

import cv2
import numpy as np

from detectors.xray import CLASSES
from detectors.xray.detector import Candidates, Postprocess, XrayFinding, describe
from detectors.xray.preprocess import METAL, ORGANIC, Materials, bag_mask, check_pair, materials


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _components(mask: np.ndarray, min_area: int):
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area >= min_area:
            yield labels[y:y + h, x:x + w] == i, (int(x), int(y), int(x + w), int(y + h)), int(area)


def _elongation(comp: np.ndarray) -> tuple[float, float]:
    """(long side / short side, long side in px) of the component's minimum-area rectangle."""
    pts = cv2.findNonZero(comp.astype(np.uint8))
    (_, _), (w, h), _ = cv2.minAreaRect(pts)
    long_, short = max(w, h), max(min(w, h), 1.0)
    return long_ / short, long_


def narcotics(m: Materials, inside: np.ndarray, mu_s: np.ndarray) -> list[tuple[tuple, float]]:
    dense = (m.material == ORGANIC) & (mu_s > 0.45) & (inside > 0)
    dense = cv2.morphologyEx(dense.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    out = []
    for comp, (x1, y1, x2, y2), area in _components(dense, 250):
        vals = mu_s[y1:y2, x1:x2][comp]
        mean, cv = float(vals.mean()), float(vals.std() / max(vals.mean(), 1e-3))
        fill = area / float((x2 - x1) * (y2 - y1))
        score = 0.45 * _ramp(mean, 0.45, 1.3) + 0.35 * (1 - _ramp(cv, 0.08, 0.4)) + 0.2 * _ramp(fill, 0.4, 0.85)
        out.append(((x1, y1, x2, y2), score))
    return out


def weapons(m: Materials, inside: np.ndarray) -> list[tuple[tuple, float]]:
    metal = (m.material == METAL) & (inside > 0)
    metal = cv2.morphologyEx(metal.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    out = []
    for comp, box, area in _components(metal, 60):
        elong, length = _elongation(comp)
        blade = _ramp(elong, 2.5, 6.0) * _ramp(length, 40, 110)
        gun = _ramp(area, 500, 1500) * _ramp(length, 80, 140)
        out.append((box, max(blade, gun)))
    return out


def currency(m: Materials, inside: np.ndarray, mu_s: np.ndarray) -> list[tuple[tuple, float]]:
    # a bundle of 100 notes is ~1 cm of paper (~0.9 g/cm^2, mu ~0.15); up to three layers
    slab = (m.material == ORGANIC) & (mu_s > 0.12) & (mu_s < 0.6) & (inside > 0)
    slab = cv2.morphologyEx(slab.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    out = []
    for comp, box, area in _components(slab, 1500):
        pts = cv2.findNonZero(comp.astype(np.uint8))
        (_, _), (w, h), _ = cv2.minAreaRect(pts)
        rect = area / max(w * h, 1.0)
        vals = mu_s[box[1]:box[3], box[0]:box[2]][comp]
        cv = float(vals.std() / max(vals.mean(), 1e-3))
        score = 0.6 * _ramp(rect, 0.75, 0.97) + 0.4 * (1 - _ramp(cv, 0.05, 0.3))
        out.append((box, score))
    return out


def concealment(m: Materials, inside: np.ndarray, mu_s: np.ndarray) -> list[tuple[tuple, float]]:
    core = cv2.erode(inside, np.ones((25, 25), np.uint8))  # stay clear of the bag's own walls
    if not core.any():
        return []
    edges = cv2.Canny(np.clip(mu_s * 120, 0, 255).astype(np.uint8), 40, 100)
    edges[core == 0] = 0
    ys, xs = np.nonzero(core)
    span = max(xs.max() - xs.min(), ys.max() - ys.min())
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=80, minLineLength=int(0.5 * span), maxLineGap=6)
    out = []
    for x1, y1, x2, y2 in (lines.reshape(-1, 4) if lines is not None else []):
        length = float(np.hypot(x2 - x1, y2 - y1))
        straight = min(abs(x2 - x1), abs(y2 - y1)) < 0.05 * length  # along a bag axis
        if not straight:
            continue
        score = _ramp(length / span, 0.5, 0.9)
        pad = 12
        out.append(((int(min(x1, x2)), int(min(y1, y2)) - pad, int(max(x1, x2)), int(max(y1, y2)) + pad)
                    if abs(x2 - x1) > abs(y2 - y1) else
                    (int(min(x1, x2)) - pad, int(min(y1, y2)), int(max(x1, x2)) + pad, int(max(y1, y2))), score))
    return out


class PhysicsDetector:
    """The baseline as a Detector: same findings, thresholds and NMS as the ONNX detectors."""

    def __init__(self, thresholds: dict[str, float] | None = None, default_threshold: float = 0.5,
                 payload_thresholds: dict[str, float] | None = None):
        self.class_names = list(CLASSES)
        self.post = Postprocess(self.class_names, dict(thresholds or {}), default_threshold,
                                payload_thresholds=dict(payload_thresholds or {}))

    def candidates(self, m: Materials) -> Candidates:
        inside = bag_mask(m.mu_high)
        mu_s = cv2.blur(m.mu_high, (5, 5))
        per_class = {
            "narcotics": narcotics(m, inside, mu_s),
            "weapon": weapons(m, inside),
            "currency": currency(m, inside, mu_s) if m.dual else [],
            "concealment": concealment(m, inside, mu_s),
        }
        boxes, scores, classes = [], [], []
        for c, found in per_class.items():
            for box, score in found:
                boxes.append(box)
                scores.append(score)
                classes.append(self.class_names.index(c))
        if not boxes:
            return Candidates.empty()
        return Candidates(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                          np.asarray(classes, np.int64))

    def detect(self, high: np.ndarray, low: np.ndarray | None) -> list[XrayFinding]:
        check_pair(high, low)
        m = materials(high, low)
        kept = self.post.select(self.candidates(m), high.shape[1], high.shape[0])
        return describe(kept, self.class_names, m)


