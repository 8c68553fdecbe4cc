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

from dataclasses import dataclass, field

import numpy as np

from hw_sim.xray.builder import PIXEL_MM_AT_448, GroundTruth, Scene
from hw_sim.xray.contents import BAGS, add_item
from hw_sim.xray.contraband import PLACES, add_concealment, add_currency, add_narcotics, add_weapon
from hw_sim.xray.physics import Detector, render

__all__ = ["BAG_KINDS", "CLASSES", "DEFAULT_MIX", "GENERATOR_VERSION", "IMAGE_SHAPE", "PIXEL_MM_AT_448", "PLACES", "Bag",
           "GroundTruth", "check_mix", "choose_contraband", "make_bag"]

GENERATOR_VERSION = "6"  # bump whenever the same seed would give different files
CLASSES = ("narcotics", "weapon", "currency", "concealment")
BAG_KINDS = ("suitcase", "backpack", "parcel")
IMAGE_SHAPE = (448, 640)  # rows along the detector line, columns along the belt


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
    items: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)  # every item and its box
    item_masks: list[np.ndarray] = field(default_factory=list)  # each item's mask inside its box (bool)
    layers: np.ndarray | None = None  # (n_materials, H, W) g/cm^2, all objects
    # the share of `layers` each contraband class added (a concealment's payload under its own class)
    contraband_layers: dict[str, np.ndarray] | None = None

    @property
    def classes(self) -> list[str]:
        return [o.cls for o in self.objects]


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
        pixel_spacing_mm=sc.pixel_spacing_mm, contents=sc.contents, items=sc.items, item_masks=sc.item_masks,
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
