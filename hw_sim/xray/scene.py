"""Scenes of a baggage scanner: suitcases, backpacks and parcels, their contents and contraband.

A scene is built as areal-density maps (g/cm^2 per material, see physics.py) by stamping
anti-aliased polygons with OpenCV into small regions of interest; physics.render turns the maps
into the two energies. Everything is sized in centimetres and real densities, so a 1 kg block of
cocaine has the attenuation a 1 kg block has, not a colour someone picked.

Ground truth is exact because it is the very stamp that went into the maps: class, box
[x1, y1, x2, y2] (pixel edges, x = belt column, y = detector row, x2/y2 exclusive), a full-frame
boolean mask, and where it was hidden. Only the numpy Generator passed in decides anything, so
the same seed gives the same bag bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from hw_sim.xray.physics import MATERIAL_INDEX, MATERIALS, Detector, render

GENERATOR_VERSION = "5"  # bump whenever the same seed would give different files
CLASSES = ("narcotics", "weapon", "currency", "concealment")
BAG_KINDS = ("suitcase", "backpack", "parcel")
IMAGE_SHAPE = (448, 640)  # rows along the detector line, columns along the belt
PIXEL_MM_AT_448 = 1.5  # a 448-element line covers 67 cm: a 6040-class cabinet scanner

# Where each class may be hidden (the `place` of its ground truth).
PLACES: dict[str, tuple[str, ...]] = {
    "narcotics": ("lining", "false_bottom", "double_wall", "electronics", "shoe", "bottle", "under_items"),
    "weapon": ("loose", "under_items", "lining", "electronics"),
    "currency": ("loose", "under_items", "lining", "false_bottom"),
    "concealment": ("false_bottom", "double_wall"),
}


@dataclass
class GroundTruth:
    """One contraband object: what it is, where it is in pixels, and how it was hidden."""

    cls: str
    box: tuple[int, int, int, int]
    mask: np.ndarray  # bool (H, W), True where the object is
    place: str
    subtype: str = ""
    attrs: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"cls": self.cls, "box": list(self.box), "place": self.place, "subtype": self.subtype,
                "attrs": self.attrs, "area_px": int(self.mask.sum())}


@dataclass
class Bag:
    """One scanned bag: the two energies, exact ground truth, and (if asked) its density maps."""

    bag_id: str
    kind: str
    high: np.ndarray  # uint16 (H, W), 65535 = open beam
    low: np.ndarray
    objects: list[GroundTruth]
    pixel_spacing_mm: tuple[float, float]
    contents: list[str] = field(default_factory=list)
    layers: np.ndarray | None = None  # (n_materials, H, W) g/cm^2, all objects
    # the share of `layers` each contraband class added (a concealment's payload under its own class)
    contraband_layers: dict[str, np.ndarray] | None = None

    @property
    def classes(self) -> list[str]:
        return [o.cls for o in self.objects]


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


@dataclass
class Host:
    """An ordinary item something can be hidden inside: its pose and inner size in bag cm."""

    x: float
    y: float
    ang: float
    w: float
    h: float
    depth: float


class Scene:
    """Builds one bag: owns the canvas, the bag's pose on the belt and the ground truth."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], track: bool):
        self.rng = rng
        self.h, self.w = shape
        self.k = 10.0 / (PIXEL_MM_AT_448 * 448 / shape[0])  # pixels per cm
        self.canvas = Canvas(self.h, self.w, track)
        self.pose = (0.0, 0.0, 0.0)
        self.hw = self.hh = 10.0  # interior half extents, bag cm
        self.objects: list[GroundTruth] = []
        self.hosts: dict[str, list[Host]] = {}
        self.contents: list[str] = []
        self.interior: np.ndarray | None = None  # full-frame coverage of the bag's inside
        self.drawing = "contraband"  # the class whose parts are being drawn (set by add_*)

    def close_bag(self, outline: np.ndarray) -> None:
        """From now on every part is clipped to the bag's inside: contents cannot poke out."""
        inner = outline * np.array([(self.hw + 0.5) / (self.hw + 1.5), (self.hh + 0.5) / (self.hh + 1.5)])
        st = self.canvas.poly(self.px(inner, (0.0, 0.0, 0.0)))
        self.interior = np.zeros((self.h, self.w), np.float32)
        if st is not None:
            hh, ww = st.alpha.shape
            self.interior[st.y0:st.y0 + hh, st.x0:st.x0 + ww] = st.alpha

    @property
    def pixel_mm(self) -> float:
        return 10.0 / self.k

    def px(self, pts: np.ndarray, at: tuple[float, float, float]) -> np.ndarray:
        return rot(rot(np.asarray(pts, np.float64), *at), *self.pose) * self.k

    def part(self, material: str, pts: np.ndarray, areal: float, *, at=(0.0, 0.0, 0.0), profile: str = "flat",
             contraband: bool = False, stroke_cm: float | None = None, closed: bool = True) -> Stamp | None:
        """Add one part of `areal` g/cm^2 (density x thickness) at pose `at` within the bag."""
        p = self.px(pts, at)
        st = self.canvas.poly(p) if stroke_cm is None else self.canvas.stroke(p, stroke_cm * self.k, closed)
        if st is None:
            return None
        if self.interior is not None:
            hh, ww = st.alpha.shape
            st.alpha *= self.interior[st.y0:st.y0 + hh, st.x0:st.x0 + ww]
        if profile == "dome":
            dens = dome(st.alpha) * np.float32(areal)
        elif profile == "soft":
            dens = texture(self.rng, st.alpha.shape, 0.35) * np.float32(areal)
        elif profile == "pillow":
            dens = (np.float32(0.55) + np.float32(0.45) * dome(st.alpha)) * np.float32(areal)
        else:
            dens = np.float32(areal)
        self.canvas.add(material, st, dens, self.drawing if contraband else None)
        return st

    def spot(self, margin: float) -> tuple[float, float]:
        mx = max(self.hw - margin, 0.5)
        my = max(self.hh - margin, 0.5)
        return float(self.rng.uniform(-mx, mx)), float(self.rng.uniform(-my, my))

    def truth(self, cls: str, stamps: list[Stamp | None], place: str, subtype: str = "",
              attrs: dict | None = None) -> GroundTruth | None:
        mask = np.zeros((self.h, self.w), bool)
        for st in stamps:
            if st is not None:
                hh, ww = st.alpha.shape
                mask[st.y0:st.y0 + hh, st.x0:st.x0 + ww] |= st.alpha >= 0.5
        if not mask.any():
            return None
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        gt = GroundTruth(cls, (x, y, x + w, y + h), mask, place, subtype, attrs or {})
        self.objects.append(gt)
        return gt


# ---------------------------------------------------------------------------------------------
# Bags. Each sets the scene's pose and interior, and draws shell, walls, handles, zips, wheels.


def _walls(sc: Scene, outline: np.ndarray, inset: float, material: str, areal: float) -> None:
    """Side walls seen edge-on: a band between outline and an inset copy, dense in projection."""
    c = outline.mean(axis=0)
    scale = 1.0 - inset / max(float(np.abs(outline - c).max()), 1.0)
    inner = (outline - c) * scale + c
    a = sc.part(material, outline, areal)
    if a is not None:
        sc.part(material, inner, -areal)


def _place_bag(sc: Scene, w: float, h: float) -> None:
    rng = sc.rng
    img_w, img_h = sc.w / sc.k, sc.h / sc.k
    ang = float(rng.uniform(-0.17, 0.17))
    ext_w = abs(w * math.cos(ang)) + abs(h * math.sin(ang))
    ext_h = abs(w * math.sin(ang)) + abs(h * math.cos(ang))
    shrink = min(1.0, (img_w - 4) / ext_w, (img_h - 3) / ext_h)
    w, h, ext_w, ext_h = w * shrink, h * shrink, ext_w * shrink, ext_h * shrink
    cx = float(rng.uniform(ext_w / 2 + 2, max(img_w - ext_w / 2 - 2, ext_w / 2 + 2)))
    cy = float(rng.uniform(ext_h / 2 + 1.5, max(img_h - ext_h / 2 - 1.5, ext_h / 2 + 1.5)))
    sc.pose = (cx, cy, ang)
    sc.hw, sc.hh = w / 2 - 1.5, h / 2 - 1.5


def bag_suitcase(sc: Scene) -> float:
    rng = sc.rng
    w, h, depth = rng.uniform(52, 76), rng.uniform(34, 48), rng.uniform(20, 28)
    _place_bag(sc, w, h)
    w, h = 2 * (sc.hw + 1.5), 2 * (sc.hh + 1.5)
    outline = rounded_rect(w, h, rng.uniform(3, 7))
    hard = rng.random() < 0.6
    if hard:  # polycarbonate shell, both faces
        sc.part("organic", outline, 1.2 * 0.6)
        _walls(sc, outline, 0.5, "organic", 1.2 * depth * 0.35)
    else:  # textile over a frame
        sc.part("organic", outline, 0.5 * 0.4, profile="soft")
        _walls(sc, outline, 0.6, "organic", 0.5 * depth * 0.4)
        sc.part("aluminium", outline * 0.97, 0.4, stroke_cm=0.5)
    # zip around the perimeter
    sc.part("steel", outline * np.array([(w - 2.5) / w, (h - 2.5) / h]), 0.35, stroke_cm=0.5)
    # trolley: two aluminium tubes along the length, a handle bar, wheels at one end
    gap = rng.uniform(8, min(12, h / 2 - 4))
    for y in (-gap, gap):
        sc.part("aluminium", rect(w * 0.85, 1.8), 2.7 * 0.5, at=(0, y, 0), profile="dome")
    sc.part("organic", rect(3, 2 * gap + 4), 1.2 * 2.5, at=(-w / 2 + 2, 0, 0))
    for y in ((-h / 2 + 3, h / 2 - 3) if rng.random() < 0.5 else (-h / 2 + 3, -h / 2 + 8, h / 2 - 8, h / 2 - 3)):
        sc.part("organic", ellipse(2.5, 2.5, 24), 1.2 * 4, at=(w / 2 - 2.5, y, 0), profile="dome")
        sc.part("steel", ellipse(0.5, 0.5, 12), 7.87 * 3, at=(w / 2 - 2.5, y, 0))
    sc.part("organic", rect(12, 2.5), 1.1 * 3, at=(0, h / 2 - 1.5, 0), profile="dome")  # carry handle
    sc.close_bag(outline)
    return depth


def bag_backpack(sc: Scene) -> float:
    rng = sc.rng
    w, h, depth = rng.uniform(36, 50), rng.uniform(28, 38), rng.uniform(14, 24)
    _place_bag(sc, w, h)
    w, h = 2 * (sc.hw + 1.5), 2 * (sc.hh + 1.5)
    outline = rounded_rect(w, h, rng.uniform(8, 13))
    sc.part("organic", outline, 0.6 * 0.4, profile="soft")
    _walls(sc, outline, 0.8, "organic", 0.6 * depth * 0.25)
    for i in range(int(rng.integers(1, 3))):  # zips: steel teeth along an arc
        arc = rounded_rect(w * (0.85 - 0.2 * i), h * (0.8 - 0.2 * i), 8)[: 16]
        sc.part("steel", arc, 0.4, stroke_cm=0.5, closed=False)
    for y in (-h / 4, h / 4):  # shoulder straps with buckles
        sc.part("organic", rect(w * 0.9, 5), 0.9 * 1.2, at=(0, y, 0), profile="soft")
        sc.part("organic" if rng.random() < 0.7 else "aluminium", rect(3, 5.5), 1.2, at=(w * 0.3, y, 0))
    if rng.random() < 0.4:  # aluminium frame stays
        for y in (-h / 6, h / 6):
            sc.part("aluminium", rect(w * 0.8, 2.0), 2.7 * 0.3, at=(0, y, 0.02))
    sc.close_bag(outline)
    return depth


def bag_parcel(sc: Scene) -> float:
    rng = sc.rng
    w, h, depth = rng.uniform(26, 62), rng.uniform(20, 44), rng.uniform(12, 40)
    _place_bag(sc, w, h)
    w, h = 2 * (sc.hw + 1.5), 2 * (sc.hh + 1.5)
    outline = rect(w, h)
    sc.part("organic", outline, 0.25 * 0.5 * 2)  # cardboard faces
    _walls(sc, outline, 0.5, "organic", 0.25 * depth)
    for _ in range(int(rng.integers(1, 4))):  # packing tape
        sc.part("organic", rect(w, 5), 0.05, at=(0, float(rng.uniform(-h / 3, h / 3)), 0))
    if rng.random() < 0.4:  # packing peanuts / crumpled paper
        sc.part("organic", rect(w - 2, h - 2), 0.02 * depth, profile="soft")
    sc.close_bag(outline)
    return depth


BAGS: dict[str, Callable[[Scene], float]] = {"suitcase": bag_suitcase, "backpack": bag_backpack,
                                             "parcel": bag_parcel}


# ---------------------------------------------------------------------------------------------
# Ordinary contents. Each takes a pose in bag cm and draws itself.


def item_clothes(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    rx, ry = min(rng.uniform(8, 20), sc.hw), min(rng.uniform(7, 15), sc.hh)
    if rng.random() < 0.5:
        pts = rounded_rect(2 * rx, 2 * ry, rng.uniform(2, 5))
    else:
        pts = blob(rng, rx, ry)
    sc.part("organic", pts, rng.uniform(0.4, 1.6), at=(x, y, ang), profile="soft")
    if rng.random() < 0.2:  # buttons, a belt buckle, a zip
        sc.part("steel", rect(rng.uniform(3, 6), 4), 7.87 * 0.12, at=(x + rng.uniform(-rx, rx) / 2, y, ang))


def item_book(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    w, h, t = rng.uniform(13, 22), rng.uniform(18, 28), rng.uniform(1.2, 4.5)
    sc.part("organic", rect(w, h), 0.75 * t, at=(x, y, ang))
    sc.part("organic", rect(w + 0.4, h + 0.4), 0.4, at=(x, y, ang), stroke_cm=0.3)  # hard cover edge


def _shoe_outline(length: float, width: float) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    xs = length / 2 * np.cos(t)
    ys = width / 2 * np.sin(t) * (0.78 + 0.22 * np.cos(t))  # heel narrower than the forefoot
    return np.stack([xs, ys], axis=1)


def item_shoes(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    length, width = rng.uniform(24, 31), rng.uniform(8.5, 11)
    shank = rng.random() < 0.35
    for dy in (-width * 0.6, width * 0.6):
        flip = 0.0 if rng.random() < 0.5 else math.pi
        pose = rot(np.array([[0.0, dy]]), x, y, ang)[0]
        a = ang + flip
        sc.part("organic", _shoe_outline(length, width), 1.1 * 3.0, at=(*pose, a), profile="dome")
        if shank:
            sc.part("steel", rect(8, 1.2), 7.87 * 0.15, at=(*rot(np.array([[-4.0, 0]]), *pose, a)[0], a))
        for i in range(5):  # eyelets
            sc.part("steel", ellipse(0.3, 0.3, 8), 7.87 * 0.2, at=(*rot(np.array([[2.0 + i, 1.5]]), *pose, a)[0], a))
        sc.hosts.setdefault("shoe", []).append(Host(pose[0], pose[1], a, length * 0.45, width * 0.55, 5.0))


def item_bottle(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    d, length = rng.uniform(6, 9), rng.uniform(18, 28)
    body = rounded_rect(length * 0.72, d, d * 0.3)
    neck = rect(length * 0.28, d * 0.35, length * 0.5, 0)
    glass = rng.random() < 0.45
    # glass (Zeff ~11) attenuates like aluminium: two 3 mm walls of density 2.5; PET two 0.3 mm
    wall_mat, wall = ("aluminium", 2.5 * 0.3 * 2) if glass else ("organic", 1.4 * 0.03 * 2)
    sc.part(wall_mat, body, wall, at=(x, y, ang))
    sc.part(wall_mat, neck, wall * 1.5, at=(x, y, ang))
    fill = rng.uniform(0.6, 1.0)
    liquid = rect(length * 0.72 * fill, d * 0.92, -length * 0.36 * (1 - fill), 0)
    sc.part("water", liquid, 1.0 * d, at=(x, y, ang), profile="dome")
    sc.part("organic" if rng.random() < 0.7 else "aluminium", rect(2, d * 0.4, length * 0.64 + 1, 0), 1.0,
            at=(x, y, ang))
    sc.hosts.setdefault("bottle", []).append(Host(x - math.cos(ang) * length * 0.1, y - math.sin(ang) * length * 0.1,
                                                  ang, length * 0.5, d * 0.7, d))


def item_laptop(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    w, h = min(rng.uniform(30, 36), 2 * sc.hw - 1), min(rng.uniform(21, 25), 2 * sc.hh - 1)
    # Laptops lie flat along the bag, wholly inside it (they are what things get hidden in).
    ang = (0.0 if ang > 0 else math.pi) + float(rng.normal(0, 0.05))
    x = float(np.clip(x, -sc.hw + w / 2 + 0.5, sc.hw - w / 2 - 0.5)) if sc.hw > w / 2 + 0.5 else 0.0
    y = float(np.clip(y, -sc.hh + h / 2 + 0.5, sc.hh - h / 2 - 0.5)) if sc.hh > h / 2 + 0.5 else 0.0
    sc.part("aluminium", rounded_rect(w, h, 1.0), 2.7 * 0.15, at=(x, y, ang))
    sc.part("organic", rect(w - 2, h - 2), 1.2 * 0.5, at=(x, y, ang))  # keyboard, screen plastics
    by = -h / 2 + 4.5
    sc.part("steel", rect(w * 0.75, 6, 0, by), 7.87 * 0.06, at=(x, y, ang))  # battery cans
    sc.part("aluminium", rect(w * 0.75, 6, 0, by), 2.7 * 0.25, at=(x, y, ang))
    sc.part("organic", rect(w * 0.75, 6, 0, by), 1.0, at=(x, y, ang))
    sc.part("organic", rect(w * 0.5, h * 0.35, -w * 0.15, h * 0.15), 0.5, at=(x, y, ang))  # board
    sc.part("steel", rect(w * 0.5, h * 0.35, -w * 0.15, h * 0.15), 0.12, at=(x, y, ang))  # copper
    for _ in range(int(rng.integers(3, 8))):  # chips, heat pipe, fan
        cx, cy = rng.uniform(-w * 0.35, w * 0.05), rng.uniform(0, h * 0.3)
        sc.part("steel", rect(rng.uniform(1, 3), rng.uniform(1, 3), cx, cy), 0.3, at=(x, y, ang))
    sc.part("steel", ellipse(3, 3, 24, w * 0.3, h * 0.15), 0.15, at=(x, y, ang))
    for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1), (0, -1), (0, 1)):  # screws
        sc.part("steel", ellipse(0.25, 0.25, 8, sx * (w / 2 - 1), sy * (h / 2 - 1)), 7.87 * 0.5, at=(x, y, ang))
    sc.part("steel", rect(w * 0.6, 0.8, 0, h / 2 - 0.8), 7.87 * 0.2, at=(x, y, ang))  # hinge
    sc.hosts.setdefault("electronics", []).append(Host(x, y, ang, w * 0.8, h * 0.7, 1.6))
    sc.contents.append("laptop")


def item_electronics(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    kind = rng.choice(["phone", "powerbank", "charger", "speaker", "camera"])
    if kind == "phone":
        sc.part("aluminium", rounded_rect(15, 7.2, 0.8), 2.7 * 0.2, at=(x, y, ang))
        sc.part("steel", rect(9, 5.5), 0.3, at=(x, y, ang))
    elif kind == "powerbank":
        sc.part("organic", rounded_rect(14, 7, 1), 1.2 * 0.4, at=(x, y, ang))
        for i in range(int(rng.integers(2, 5))):  # 18650 cells, steel cans
            sc.part("steel", rect(6.5, 1.8, -3.5, -2.7 + i * 1.8), 7.87 * 0.1, at=(x, y, ang), profile="dome")
            sc.part("organic", rect(6.5, 1.8, -3.5, -2.7 + i * 1.8), 1.5, at=(x, y, ang), profile="dome")
    elif kind == "charger":
        sc.part("organic", rounded_rect(6, 5, 1), 1.2 * 2.5, at=(x, y, ang))
        sc.part("steel", rect(2.2, 2.2), 7.87 * 1.2, at=(x, y, ang))  # transformer core
        sc.part("steel", rect(1.5, 0.3, 3.7, -0.8), 7.87 * 0.1, at=(x, y, ang))
        sc.part("steel", rect(1.5, 0.3, 3.7, 0.8), 7.87 * 0.1, at=(x, y, ang))
    elif kind == "speaker":
        w, h = rng.uniform(16, 22), rng.uniform(8, 11)
        sc.part("organic", rounded_rect(w, h, 2), 1.2 * 0.3, at=(x, y, ang))
        _walls_local(sc, rounded_rect(w, h, 2), (x, y, ang), "organic", 1.2 * h * 0.2)
        for dx in (-w / 4, w / 4):
            sc.part("steel", ellipse(2.2, 2.2, 24, dx, 0), 7.87 * 1.0, at=(x, y, ang))  # magnets
        sc.hosts.setdefault("electronics", []).append(Host(x, y, ang, w * 0.9, h * 0.6, h * 0.6))
    else:
        sc.part("organic", rounded_rect(12, 8, 2), 1.2 * 1.5, at=(x, y, ang))
        sc.part("aluminium", ellipse(3, 3, 24, 3, 0), 2.7 * 1.0, at=(x, y, ang), profile="dome")
        sc.part("steel", rect(4, 5, -3, 0), 0.4, at=(x, y, ang))
    sc.contents.append(str(kind))


def _walls_local(sc: Scene, outline: np.ndarray, at: tuple[float, float, float], mat: str, areal: float) -> None:
    inner = outline * 0.9
    sc.part(mat, outline, areal, at=at)
    sc.part(mat, inner, -areal, at=at)


def item_cable(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    n = int(rng.integers(8, 20))
    steps = rng.standard_normal((n, 2)).cumsum(axis=0) * rng.uniform(1.5, 4)
    steps -= steps.mean(axis=0)
    steps[:, 0] = np.clip(steps[:, 0], -sc.hw, sc.hw)
    steps[:, 1] = np.clip(steps[:, 1], -sc.hh, sc.hh)
    w = rng.uniform(0.3, 0.7)
    sc.part("organic", steps, 1.3 * w, at=(x, y, ang), stroke_cm=w, closed=False)
    sc.part("steel", steps, 8.9 * 0.04 * 2, at=(x, y, ang), stroke_cm=max(w * 0.4, 0.2), closed=False)
    for end in (steps[0], steps[-1]):
        sc.part("steel", rect(1.6, 1.0, *end), 7.87 * 0.1, at=(x, y, ang))
        sc.part("organic", rect(2.5, 1.6, *end), 1.2 * 1.2, at=(x, y, ang))


def item_toiletries(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    sc.part("organic", blob(rng, rng.uniform(8, 12), rng.uniform(5, 8)), 0.3, at=(x, y, ang), profile="soft")
    for _ in range(int(rng.integers(2, 6))):
        dx, dy, a = rng.uniform(-6, 6), rng.uniform(-4, 4), rng.uniform(0, math.pi)
        at = rot(np.array([[dx, dy]]), x, y, ang)[0]
        what = rng.random()
        d, length = rng.uniform(3, 5), rng.uniform(8, 15)
        if what < 0.5:  # tube or small bottle of cream / shampoo
            sc.part("water", rounded_rect(length, d, d * 0.3), 0.95 * d, at=(*at, ang + a), profile="dome")
        elif what < 0.75:  # aerosol can
            sc.part("aluminium", rounded_rect(length, d, 0.5), 2.7 * 0.08 * 2, at=(*at, ang + a))
            sc.part("water", rounded_rect(length - 1, d - 0.3, 0.5), 0.8 * d, at=(*at, ang + a), profile="dome")
        elif what < 0.9:  # razor
            sc.part("organic", rect(12, 1.2), 1.2 * 1.0, at=(*at, ang + a))
            sc.part("steel", rect(4, 1.2, 6, 0), 7.87 * 0.08, at=(*at, ang + a))
        else:  # nail scissors
            sc.part("steel", rect(9, 0.6), 7.87 * 0.25, at=(*at, ang + a))
            sc.part("steel", rect(9, 0.6), 7.87 * 0.25, at=(*at, ang + a + 0.15))


def item_tools(sc: Scene, x: float, y: float, ang: float) -> None:
    rng = sc.rng
    what = rng.choice(["wrench", "screwdriver", "pliers", "hammer"])
    if what == "wrench":
        length = rng.uniform(14, 25)
        sc.part("steel", rect(length, 1.6), 7.87 * 0.5, at=(x, y, ang), profile="pillow")
        for dx in (-length / 2, length / 2):
            sc.part("steel", ellipse(1.8, 1.8, 20, dx, 0), 7.87 * 0.6, at=(x, y, ang))
    elif what == "screwdriver":
        length = rng.uniform(8, 16)
        sc.part("steel", rect(length, 0.6, length / 2, 0), 7.87 * 0.6, at=(x, y, ang), profile="dome")
        sc.part("organic", rounded_rect(10, 3, 1.2), 1.2 * 3, at=(x, y, ang), profile="dome")
    elif what == "pliers":
        for s in (-0.18, 0.18):
            sc.part("steel", rect(18, 1.2, 0, 0), 7.87 * 0.8, at=(x, y, ang + s), profile="pillow")
            sc.part("organic", rect(9, 1.8, -5, 0), 1.2 * 0.6, at=(x, y, ang + s))
    else:
        sc.part("steel", rect(3, 11), 7.87 * 2.5, at=(x, y, ang), profile="pillow")
        sc.part("organic", rounded_rect(28, 3, 1.2), 0.7 * 2.8, at=(x + 14 * math.cos(ang), y + 14 * math.sin(ang), ang),
                profile="dome")
    sc.contents.append(str(what))


def item_food(sc: Scene, x: float, y: float, ang: float) -> None:
    """Cheese, sausage, chocolate: dense organic blocks, the usual false alarm for narcotics."""
    rng = sc.rng
    w, h, t = rng.uniform(6, 18), rng.uniform(4, 10), rng.uniform(2, 6)
    shape = rounded_rect(w, h, rng.uniform(0.5, 2)) if rng.random() < 0.6 else ellipse(w / 2, h / 2, 32)
    sc.part("water" if rng.random() < 0.5 else "organic", shape, 1.05 * t, at=(x, y, ang), profile="pillow")


def item_fishing(sc: Scene, x: float, y: float, ang: float) -> None:
    """A tackle box with lead sinkers: the ordinary bag's rare heavy metal."""
    rng = sc.rng
    sc.part("organic", rounded_rect(18, 10, 1), 1.2 * 0.4, at=(x, y, ang))
    _walls_local(sc, rounded_rect(18, 10, 1), (x, y, ang), "organic", 1.2 * 5 * 0.2)
    for _ in range(int(rng.integers(3, 10))):
        r = rng.uniform(0.3, 0.9)
        sc.part("lead", ellipse(r, r * 1.4, 16, rng.uniform(-7, 7), rng.uniform(-3.5, 3.5)), 11.35 * r,
                at=(x, y, ang), profile="dome")
    sc.part("steel", ellipse(3, 3, 24, -4, 0), 0.3, at=(x, y, ang), stroke_cm=0.2)  # hooks, reel


ITEMS: dict[str, tuple[Callable[[Scene, float, float, float], None], float]] = {
    "clothes": (item_clothes, 0.26),
    "book": (item_book, 0.09),
    "shoes": (item_shoes, 0.07),
    "bottle": (item_bottle, 0.08),
    "laptop": (item_laptop, 0.06),
    "electronics": (item_electronics, 0.11),
    "cable": (item_cable, 0.11),
    "toiletries": (item_toiletries, 0.10),
    "tools": (item_tools, 0.05),
    "food": (item_food, 0.07),
    "fishing": (item_fishing, 0.01),
}
_ITEM_NAMES = list(ITEMS)
_ITEM_P = np.array([p for _, p in ITEMS.values()])
_ITEM_P = _ITEM_P / _ITEM_P.sum()


def add_item(sc: Scene, name: str | None = None, at: tuple[float, float] | None = None) -> str:
    rng = sc.rng
    if name is None:
        name = _ITEM_NAMES[int(rng.choice(len(_ITEM_NAMES), p=_ITEM_P))]
    x, y = at if at is not None else sc.spot(4.0)
    ITEMS[name][0](sc, x, y, float(rng.uniform(-math.pi, math.pi)))
    if name not in ("laptop", "electronics", "tools"):
        sc.contents.append(name)
    return name


# ---------------------------------------------------------------------------------------------
# Contraband.


def _host(sc: Scene, kind: str) -> Host:
    if not sc.hosts.get(kind):
        add_item(sc, {"shoe": "shoes", "bottle": "bottle", "electronics": "laptop"}[kind])
    hosts = sc.hosts[kind]
    return hosts[int(sc.rng.integers(len(hosts)))]


def _edge_side(sc: Scene) -> tuple[int, float]:
    """Pick one of the four inner walls: (side, its usable length in cm)."""
    side = int(sc.rng.integers(4))
    return side, float(2 * (sc.hw if side < 2 else sc.hh))


def _edge_pose(sc: Scene, side: int, across: float, length: float) -> tuple[float, float, float]:
    """Pose of a strip `across` cm wide and `length` long lying against inner wall `side`."""
    rng = sc.rng
    if side < 2:
        y = (sc.hh - across / 2 - 0.3) * (1 if side == 0 else -1)
        x = rng.uniform(-sc.hw + length / 2, sc.hw - length / 2) if 2 * sc.hw > length else 0.0
        return float(x), float(y), 0.0
    x = (sc.hw - across / 2 - 0.3) * (1 if side == 2 else -1)
    y = rng.uniform(-sc.hh + length / 2, sc.hh - length / 2) if 2 * sc.hh > length else 0.0
    return float(x), float(y), math.pi / 2


def _edge_strip(sc: Scene, across: float, length_frac: tuple[float, float]) -> tuple[float, float, float, float]:
    side, side_len = _edge_side(sc)
    length = float(sc.rng.uniform(*length_frac)) * side_len
    return (*_edge_pose(sc, side, across, length), length)


def add_narcotics(sc: Scene, place: str) -> GroundTruth | None:
    """A wrapped block of compressed powder, 0.1-3 kg, hidden at `place`."""
    sc.drawing = "narcotics"
    rng = sc.rng
    mass = float(math.exp(rng.uniform(math.log(0.1), math.log(3.0))))  # kg
    rho = float(rng.uniform(1.1, 1.4))
    over_with_items = False
    if place == "lining":
        t, width = rng.uniform(0.8, 2.0), rng.uniform(3.0, 10.0)
        side, side_len = _edge_side(sc)
        length = min(max(mass * 1000 / rho / t / width, 0.2 * side_len), 0.9 * side_len)
        pose, pts, profile = _edge_pose(sc, side, width, length), rect(length, width), "flat"
    elif place == "false_bottom":
        t = rng.uniform(1.0, 2.5)
        w, h = 2 * sc.hw * rng.uniform(0.5, 0.85), 2 * sc.hh * rng.uniform(0.5, 0.85)
        mass_max = w * h * t * rho / 1000
        t *= min(1.0, mass / mass_max)
        pose, pts, profile = (0.0, 0.0, 0.0), rect(w, h), "flat"
    elif place == "electronics":
        host = _host(sc, "electronics")
        t = min(host.depth, rng.uniform(1.0, 1.6))
        area = mass * 1000 / rho / t
        w = min(math.sqrt(area * host.w / host.h), host.w)
        h = min(area / w, host.h)
        pose, pts, profile = (host.x, host.y, host.ang), rect(w, h), "flat"
    elif place == "shoe":
        host = _host(sc, "shoe")
        t = host.depth * rng.uniform(0.8, 1.0)
        pose = (*rot(np.array([[host.w * 0.3, 0.0]]), host.x, host.y, host.ang)[0], host.ang)
        pts, profile = ellipse(host.w / 2, host.h / 2, 32), "pillow"
    elif place == "bottle":
        host = _host(sc, "bottle")
        t = host.depth * 0.8
        pose, pts, profile = (host.x, host.y, host.ang), rounded_rect(host.w, host.h, host.h * 0.3), "dome"
    else:  # under_items: a full brick, then ordinary things on top of it
        t = rng.uniform(3.0, 7.0)
        area = mass * 1000 / rho / t
        w = math.sqrt(area) * rng.uniform(0.8, 1.4)
        h = area / w
        fit = min(1.0, (2 * min(sc.hw, sc.hh) - 2) / math.hypot(w, h))  # any rotation stays inside
        w, h = w * fit, h * fit
        x, y = sc.spot(math.hypot(w, h) / 2 + 0.5)
        pose, pts, profile = (x, y, float(rng.uniform(-math.pi, math.pi))), rect(w, h), "pillow"
        over_with_items = True
    st = sc.part("organic", pts, rho * t, at=pose, profile=profile, contraband=True)
    wrap = sc.part("organic", pts, 0.25, at=pose, stroke_cm=0.4, contraband=True)  # tape and cling film
    if st is not None:
        area_cm2 = float((st.alpha >= 0.5).sum()) / sc.k**2
        mass = area_cm2 * t * rho / 1000 * (0.8 if profile != "flat" else 1.0)
    gt = sc.truth("narcotics", [st, wrap], place, "block", {"mass_kg": round(mass, 3), "density": round(rho, 3)})
    if over_with_items:
        for _ in range(int(rng.integers(1, 4))):
            name = ["clothes", "book", "laptop", "clothes", "shoes"][int(rng.integers(5))]
            add_item(sc, name, at=(pose[0] + rng.uniform(-3, 3), pose[1] + rng.uniform(-3, 3)))
    return gt


def add_weapon(sc: Scene, place: str) -> GroundTruth | None:
    sc.drawing = "weapon"
    rng = sc.rng
    u = rng.random()
    subtype = "knife" if place == "lining" or u < 0.4 else "firearm" if u < 0.85 else "revolver"
    if place == "electronics":
        subtype = "firearm_parts"
    if place == "lining":
        x, y, ang, _ = _edge_strip(sc, 3.0, (0.3, 0.4))
    elif place == "electronics":
        host = _host(sc, "electronics")
        x, y, ang = host.x, host.y, host.ang
    else:
        x, y = sc.spot(10.0)
        ang = float(rng.uniform(-math.pi, math.pi))
    at = (x, y, ang)
    stamps: list[Stamp | None] = []
    if subtype == "firearm":
        s = rng.uniform(0.8, 1.1)
        p = lambda pts: np.asarray(pts, float) * s  # noqa: E731 - scale a local outline
        stamps.append(sc.part("steel", p(rect(19, 3.0, 0, 0)), 7.87 * 0.9, at=at, profile="pillow", contraband=True))
        grip = p([[-9.5, 1.5], [-4.0, 1.5], [-5.0, 12.0], [-10.0, 11.0]])
        stamps.append(sc.part("organic", grip, 1.3 * 3.0, at=at, profile="pillow", contraband=True))
        mag = p([[-8.6, 2.0], [-5.2, 2.0], [-6.0, 11.0], [-9.3, 10.5]])
        stamps.append(sc.part("steel", mag, 7.87 * 0.35, at=at, contraband=True))
        guard = p([[-4.0, 1.5], [-3.8, 5.0], [0.5, 5.0], [0.5, 1.5]])
        stamps.append(sc.part("steel" if rng.random() < 0.5 else "organic", guard, 4.0, at=at, stroke_cm=0.5 * s,
                              closed=False, contraband=True))
        stamps.append(sc.part("steel", p(rect(0.5, 2.5, -2.0, 3.0)), 7.87 * 0.4, at=at, contraband=True))
    elif subtype == "revolver":
        barrel = rng.uniform(7, 15)
        stamps.append(sc.part("steel", rect(barrel, 1.6, barrel / 2 + 2.5, 0), 7.87 * 1.2, at=at, profile="dome",
                              contraband=True))
        stamps.append(sc.part("steel", ellipse(2.4, 2.0, 32), 7.87 * 2.5, at=at, profile="dome", contraband=True))
        for k in range(6):  # chambers: less steel where the cartridges sit (brass, counted as steel)
            a = k * math.pi / 3
            sc.part("steel", ellipse(0.45, 0.45, 12, 1.3 * math.cos(a), 1.1 * math.sin(a)), -7.87 * 1.2, at=at,
                    contraband=True)
        stamps.append(sc.part("steel", rect(9, 2.2, -1.5, -0.3), 7.87 * 0.8, at=at, contraband=True))  # frame
        grip = np.array([[-4.5, 0.8], [-2.0, 0.8], [-3.5, 10.0], [-7.0, 9.5]])
        stamps.append(sc.part("organic", grip, 0.8 * 3.0, at=at, profile="pillow", contraband=True))
        stamps.append(sc.part("steel", np.array([[-1.5, 0.8], [-1.2, 4.0], [2.0, 4.0], [2.0, 1.0]]), 7.87 * 0.3,
                              at=at, stroke_cm=0.45, closed=False, contraband=True))
    elif subtype == "firearm_parts":
        # a pistol stripped to hide it in electronics: slide with barrel, frame, magazine side by side
        stamps.append(sc.part("steel", rect(17, 2.6, 0, -3.0), 7.87 * 0.8, at=at, profile="pillow", contraband=True))
        stamps.append(sc.part("steel", rect(11, 1.3, 1.0, 0.0), 7.87 * 1.0, at=at, profile="dome", contraband=True))
        stamps.append(sc.part("steel", rect(11, 2.6, 0, 3.2), 7.87 * 0.35, at=at, contraband=True))
    else:
        blade_len, width = rng.uniform(8, 20), rng.uniform(1.8, 3.5)
        thick = rng.uniform(0.15, 0.35)
        xs = np.linspace(0, blade_len, 12)
        edge = width * np.sqrt(np.clip(1 - (xs / blade_len) ** 3, 0, 1))
        blade = np.concatenate([np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs[::-1], edge[::-1]], 1)])
        blade = blade - (0, width / 2)
        stamps.append(sc.part("steel", blade, 7.87 * thick, at=at, contraband=True))
        hl = rng.uniform(9, 13)
        stamps.append(sc.part("organic", rounded_rect(hl, 2.6, 1.0) - (hl / 2 + 0.5, 0), 1.2 * 2.0, at=at,
                              profile="dome", contraband=True))
        stamps.append(sc.part("steel", rect(hl * 0.8, 0.8, -hl / 2, 0), 7.87 * thick, at=at, contraband=True))
        stamps.append(sc.part("steel", rect(1.0, width + 0.8, -0.5, 0), 7.87 * 0.6, at=at, contraband=True))
    gt = sc.truth("weapon", stamps, place, subtype)
    if place == "under_items":
        for _ in range(int(rng.integers(1, 3))):
            add_item(sc, ["clothes", "book", "clothes"][int(rng.integers(3))], at=(x + rng.uniform(-3, 3), y))
    return gt


def add_currency(sc: Scene, place: str) -> GroundTruth | None:
    sc.drawing = "currency"
    rng = sc.rng
    nw, nh = (15.6, 6.6) if rng.random() < 0.5 else (14.0, 7.7)
    cols, rows, layers = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    if place in ("lining", "false_bottom"):
        layers = 1
    if place == "lining":
        x, y, ang, _ = _edge_strip(sc, nh * rows, (0.2, 0.3))
        cols = max(1, min(cols, int(2 * min(sc.hw, sc.hh) / nw)))
    elif place == "false_bottom":
        x, y, ang = 0.0, 0.0, float(rng.choice([0.0, math.pi / 2]))
    else:
        while cols * rows > 1 and math.hypot(cols * nw, rows * nh) > 2 * min(sc.hw, sc.hh) - 1:
            cols, rows = (cols - 1, rows) if cols >= rows else (cols, rows - 1)
        x, y = sc.spot(math.hypot(cols * nw, rows * nh) / 2 + 0.5)
        ang = float(rng.uniform(-math.pi, math.pi))
    stamps = []
    for i in range(cols):
        for j in range(rows):
            cx, cy = (i - (cols - 1) / 2) * (nw + 0.3), (j - (rows - 1) / 2) * (nh + 0.3)
            t = 1.05 * layers  # 100 notes make a 1 cm bundle
            stamps.append(sc.part("organic", rect(nw, nh, cx, cy), 0.85 * t, at=(x, y, ang), contraband=True))
            stamps.append(sc.part("organic", rect(3.0, nh, cx, cy), 0.1 * layers, at=(x, y, ang), contraband=True))
    wrap = rect(cols * (nw + 0.3) + 0.6, rows * (nh + 0.3) + 0.6)
    stamps.append(sc.part("organic", wrap, 0.05, at=(x, y, ang), contraband=True))
    gt = sc.truth("currency", stamps, place, "banknotes", {"bundles": cols * rows * layers})
    if place == "under_items":
        for _ in range(int(rng.integers(1, 3))):
            add_item(sc, ["clothes", "book"][int(rng.integers(2))], at=(x, y))
    return gt


def add_concealment(sc: Scene, place: str, payload: bool) -> GroundTruth | None:
    """A false bottom or a double wall, with a payload inside when `payload`."""
    sc.drawing = "concealment"
    rng = sc.rng
    if place == "false_bottom":
        w, h = 2 * sc.hw * rng.uniform(0.85, 0.97), 2 * sc.hh * rng.uniform(0.85, 0.97)
        mat = "aluminium" if rng.random() < 0.3 else "organic"
        sheet = 2.7 * 0.1 if mat == "aluminium" else 0.6 * 0.5
        stamps = [sc.part(mat, rect(w, h), sheet, contraband=True),
                  sc.part("aluminium", rect(w, h), 2.7 * 1.0, stroke_cm=1.0, contraband=True),  # frame
                  sc.part("organic", rect(w - 2, h - 2), 0.6, stroke_cm=0.4, contraband=True)]  # glue seam
        gt = sc.truth("concealment", stamps, place, "false_bottom")
        if payload:
            (add_narcotics if rng.random() < 0.6 else add_currency)(sc, "false_bottom")
        return gt
    x, y, ang, length = _edge_strip(sc, 4.0, (0.7, 0.95))
    gap = rng.uniform(2.5, 4.5)
    inward = -1.0 if (x > 0 if ang else y > 0) else 1.0
    off = inward * gap
    wx, wy = (x, y + off) if not ang else (x + off, y)
    cx, cy = (x, y + off / 2) if not ang else (x + off / 2, y)
    depth = 20.0
    stamps = [sc.part("organic", rect(length, 0.5), 1.2 * depth * 0.5, at=(wx, wy, ang), contraband=True),
              sc.part("organic", rect(length, gap), 0.3, at=(cx, cy, ang), contraband=True)]
    gt = sc.truth("concealment", stamps, "double_wall", "double_wall")
    if payload:
        sc.drawing = "narcotics"
        t = gap * 0.9
        mass = length * 0.8 * gap * 0.8 * t * 1.2 * 0.8 / 1000  # 0.8: the pillow profile's mean
        st = sc.part("organic", rect(length * 0.8, gap * 0.8), 1.2 * t, at=(cx, cy, ang), profile="pillow",
                     contraband=True)
        sc.truth("narcotics", [st], "double_wall", "block", {"mass_kg": round(mass, 3), "density": 1.2})
    return gt


# ---------------------------------------------------------------------------------------------


def make_bag(
    rng: np.random.Generator,
    contraband: str | None = None,
    *,
    place: str | None = None,
    kind: str | None = None,
    bag_id: str | None = None,
    shape: tuple[int, int] = IMAGE_SHAPE,
    detector: Detector | None = None,
    keep_layers: bool = False,
    noise: bool = True,
) -> Bag:
    """One bag with ordinary contents and, if `contraband` is a class name, that contraband.

    `place` forces the hiding place (one of PLACES[contraband]); `kind` the bag type.
    `keep_layers` keeps the density maps on the Bag (tests re-render with and without the
    contraband); `noise=False` renders the expected, noise-free transmission.
    """
    if contraband is not None and contraband not in CLASSES:
        raise ValueError(f"unknown contraband class {contraband!r}; expected one of {CLASSES}")
    if place is not None and (contraband is None or place not in PLACES[contraband]):
        raise ValueError(f"place {place!r} is not one of {PLACES.get(contraband or '', ())} for {contraband!r}")
    if kind is not None and kind not in BAGS:
        raise ValueError(f"unknown bag kind {kind!r}; expected one of {BAG_KINDS}")
    if bag_id is None:
        bag_id = f"B{int(rng.integers(0, 2**48)):012X}"
    kind = kind or BAG_KINDS[int(rng.choice(3, p=[0.45, 0.35, 0.20]))]
    sc = Scene(rng, shape, keep_layers)
    BAGS[kind](sc)
    n_items = int(rng.integers(2, 5) + (4 * sc.hw * sc.hh) / 450)
    if kind == "suitcase":  # a base layer of folded clothes
        for _ in range(int(rng.integers(2, 5))):
            add_item(sc, "clothes")
    if contraband is not None:
        where = place or PLACES[contraband][int(rng.integers(len(PLACES[contraband])))]
        if contraband == "narcotics" and where == "double_wall":
            add_concealment(sc, "double_wall", payload=True)
        elif contraband == "narcotics":
            add_narcotics(sc, where)
            if where == "false_bottom":
                add_concealment(sc, "false_bottom", payload=False)
        elif contraband == "weapon":
            add_weapon(sc, where)
        elif contraband == "currency":
            add_currency(sc, where)
            if where == "false_bottom":
                add_concealment(sc, "false_bottom", payload=False)
        else:
            add_concealment(sc, where, payload=bool(rng.random() < 0.6))
    for _ in range(n_items):
        add_item(sc)
    layers = sc.canvas.layers
    np.maximum(layers, 0, out=layers)
    high, low = render(layers, rng if noise else None, detector)
    return Bag(
        bag_id=bag_id, kind=kind, high=high, low=low, objects=sc.objects,
        pixel_spacing_mm=(sc.pixel_mm, sc.pixel_mm), contents=sc.contents,
        layers=layers if keep_layers else None,
        contraband_layers=sc.canvas.contraband if keep_layers else None,
    )


DEFAULT_MIX = {"narcotics": 0.4, "weapon": 0.2, "currency": 0.2, "concealment": 0.2}


def choose_contraband(rng: np.random.Generator, share: float, mix: dict[str, float] | None = None) -> str | None:
    """None (a clean bag) with probability 1 - share, else a class drawn from `mix`."""
    mix = mix or DEFAULT_MIX
    check_mix(mix)
    if rng.random() >= share:
        return None
    names = sorted(mix)
    p = np.array([mix[n] for n in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def check_mix(mix: dict[str, float]) -> None:
    bad = [k for k in mix if k not in CLASSES]
    if bad:
        raise ValueError(f"unknown class(es) in mix: {bad}; expected {CLASSES}")
    if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("class mix weights must be >= 0 and not all zero")
