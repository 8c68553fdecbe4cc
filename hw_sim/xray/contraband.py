"""Contraband drawn into a Scene, each with its exact ground truth and hiding place.

Narcotics (wrapped blocks of compressed powder, 0.1-3 kg by density and size), weapons (pistols,
revolvers, knives, pistols stripped into parts), currency (banknote bundles) and structural
concealment (false bottoms, double walls), hidden at the places PLACES lists.
"""

from __future__ import annotations

import math

import numpy as np

from hw_sim.xray.builder import GroundTruth, Host, Scene
from hw_sim.xray.contents import add_item
from hw_sim.xray.draw import Stamp, ellipse, rect, rot, rounded_rect

# Where each class may be hidden (the `place` of its ground truth).
PLACES: dict[str, tuple[str, ...]] = {
    "narcotics": ("lining", "false_bottom", "double_wall", "electronics", "shoe", "bottle", "under_items"),
    "weapon": ("loose", "under_items", "lining", "electronics"),
    "currency": ("loose", "under_items", "lining", "false_bottom"),
    "concealment": ("false_bottom", "double_wall"),
}


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
        area_cm2 = float((st.alpha >= 0.5).sum()) / (sc.kx * sc.ky)
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
