"""Bags (suitcase, backpack, parcel) and their ordinary contents, drawn into a Scene.

Each bag sets the scene's pose and interior and draws its shell, walls, handles, zips and
wheels; each item takes a pose in bag centimetres. Sizes and densities are real ones, so that
clothes, books, bottles, laptops, cables, tools and food confuse a detector the way they do at
a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from hw_sim.xray.builder import Host, Scene
from hw_sim.xray.draw import blob, ellipse, rect, rot, rounded_rect


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
    img_w, img_h = sc.w / sc.kx, sc.h / sc.ky
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
    ang = float(rng.uniform(-math.pi, math.pi))
    sc.record_item(name, lambda: ITEMS[name][0](sc, x, y, ang))
    if name not in ("laptop", "electronics", "tools"):
        sc.contents.append(name)
    return name
