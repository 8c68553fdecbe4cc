"""The scene being built: one bag's canvas, its pose on the belt, its hiding places and ground truth.

Contents (contents.py) and contraband (contraband.py) draw themselves through Scene.part in bag
centimetres; Scene.truth turns the stamps of one contraband object into its exact ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from hw_sim.xray.draw import Canvas, Stamp, dome, rot, texture

PIXEL_MM_AT_448 = 1.5  # a 448-element line covers 67 cm: a 6040-class cabinet scanner


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
        # Pixels per cm across the belt (rows: the detector pitch) and along it (columns: belt speed
        # over line rate). The default 448 x 640 image is 67 x 96 cm with square 1.5 mm pixels; other
        # shapes keep that field of view, so their pixels may be oblong, as on real line scanners.
        self.ky = self.h / (PIXEL_MM_AT_448 * 448 / 10.0)
        self.kx = self.w / (PIXEL_MM_AT_448 * 640 / 10.0)
        self.k = math.sqrt(self.kx * self.ky)  # for stroke widths
        self.canvas = Canvas(self.h, self.w, track)
        self.pose = (0.0, 0.0, 0.0)
        self.hw = self.hh = 10.0  # interior half extents, bag cm
        self.objects: list[GroundTruth] = []
        self.hosts: dict[str, list[Host]] = {}
        self.contents: list[str] = []
        # every ordinary item drawn, with its box: the truth about the clutter, for studies of
        # what a detector confuses with contraband (no effect on the pixels)
        self.items: list[tuple[str, tuple[int, int, int, int]]] = []
        # and where each lies inside its box (bool, the box's shape): the exact masks, for training
        # a network to tell the clutter's kinds apart (models/xray/train.py, --items-weight)
        self.item_masks: list[np.ndarray] = []
        self._collect: list[Stamp] | None = None
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
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """(row spacing, column spacing) in mm, DICOM PixelSpacing order."""
        return 10.0 / self.ky, 10.0 / self.kx

    def px(self, pts: np.ndarray, at: tuple[float, float, float]) -> np.ndarray:
        return rot(rot(np.asarray(pts, np.float64), *at), *self.pose) * (self.kx, self.ky)

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
        if self._collect is not None:
            self._collect.append(st)
        return st

    def record_item(self, name: str, draw) -> None:
        """Draw one item with `draw()` and remember its name and box (pixels)."""
        outer, self._collect = self._collect, []
        try:
            draw()
            mask = self._mask(self._collect)
        finally:
            self._collect = outer
        if mask.any():
            x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
            self.items.append((name, (x, y, x + w, y + h)))
            self.item_masks.append(mask[y:y + h, x:x + w].copy())

    def _mask(self, stamps: list[Stamp | None]) -> np.ndarray:
        """Where the stamps cover at least half a pixel."""
        mask = np.zeros((self.h, self.w), bool)
        for st in stamps:
            if st is not None:
                hh, ww = st.alpha.shape
                mask[st.y0:st.y0 + hh, st.x0:st.x0 + ww] |= st.alpha >= 0.5
        return mask

    def spot(self, margin: float) -> tuple[float, float]:
        mx = max(self.hw - margin, 0.5)
        my = max(self.hh - margin, 0.5)
        return float(self.rng.uniform(-mx, mx)), float(self.rng.uniform(-my, my))

    def truth(self, cls: str, stamps: list[Stamp | None], place: str, subtype: str = "",
              attrs: dict | None = None) -> GroundTruth | None:
        mask = self._mask(stamps)
        if not mask.any():
            return None
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        gt = GroundTruth(cls, (x, y, x + w, y + h), mask, place, subtype, attrs or {})
        self.objects.append(gt)
        return gt
