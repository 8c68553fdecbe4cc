"""Threat Image Projection: synthetic threats drawn into clear bags, and each officer's score.

Certified screening systems keep officers alert by projecting fictional threats into real bag images
and scoring who finds them. Here:
- `draw_threat` makes a knife or handgun silhouette as an X-ray would show it: the steel multiplies the
  transmitted light down to the conventional metal blue, a plastic grip to organic orange (multiplying,
  not pasting, so the bag's own contents still show through as they would in a real image);
- `TipScores` keeps every trial in its own small SQLite file (console-owned, never synced): a hit with its
  response time, a miss when the bag left the screen unflagged, a false alarm when a bag with no
  projection was flagged. Projections themselves are stored as TIP alerts in the agent store
  (Alert(tip=True)), which the store never queues for central.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

THREATS = ("knife", "handgun")

# BGR transmission factors: what fraction of each channel survives the object (pseudo-colour convention:
# metal -> blue, organic -> orange).
STEEL = np.array([0.80, 0.34, 0.12], dtype=np.float32)
PLASTIC = np.array([0.30, 0.62, 0.95], dtype=np.float32)


def _knife(scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
    blade = np.array([[0, 8], [150, 0], [175, 10], [150, 20], [0, 22]], np.float32)
    guard = np.array([[-6, -2], [4, -2], [4, 32], [-6, 32]], np.float32)
    grip = np.array([[-80, 6], [-6, 4], [-6, 26], [-80, 24], [-86, 15]], np.float32)
    return [(grip * scale, PLASTIC), (blade * scale, STEEL), (guard * scale, STEEL)]


def _handgun(scale: float) -> list[tuple[np.ndarray, np.ndarray]]:
    slide = np.array([[0, 0], [130, 0], [130, 24], [0, 24]], np.float32)
    frame = np.array([[8, 24], [120, 24], [120, 34], [52, 34], [44, 52], [30, 52], [26, 34], [8, 34]], np.float32)
    grip = np.array([[10, 30], [36, 30], [28, 100], [0, 100], [-6, 92]], np.float32)
    return [(grip * scale, STEEL * 1.05), (frame * scale, STEEL), (slide * scale, STEEL * 0.8)]


def bag_region(img: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of what is not empty belt (near-white) in a pseudo-colour image."""
    h, w = img.shape[:2]
    k = 4  # on a quarter-size copy: the region needs no pixel precision, and it is 16x less work
    small = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (max(1, w // k), max(1, h // k)),
                       interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small < 225)
    if len(xs) < 10:
        return (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    return (int(np.percentile(xs, 2)) * k, int(np.percentile(ys, 2)) * k, min(w - 1, int(np.percentile(xs, 98)) * k),
            min(h - 1, int(np.percentile(ys, 98)) * k))


def draw_threat(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Composite a threat into a copy of `img` (BGR uint8); returns the image and the threat's box."""
    if kind not in THREATS:
        raise ValueError(f"unknown TIP threat {kind!r}; one of {THREATS}")
    h, w = img.shape[:2]
    x1, y1, x2, y2 = bag_region(img)
    size = max(40.0, min(x2 - x1, y2 - y1, 0.6 * min(w, h)))
    scale = float(np.clip(size / 190.0 * rng.uniform(0.7, 1.0), 0.25, 3.0))
    parts = _knife(scale) if kind == "knife" else _handgun(scale)
    pts_all = np.concatenate([p for p, _ in parts])
    centre = pts_all.mean(axis=0)
    ang = np.deg2rad(rng.uniform(0, 360))
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], np.float32)
    placed = [((p - centre) @ rot.T, t) for p, t in parts]
    extent = np.concatenate([p for p, _ in placed])
    span_x = extent[:, 0].max() - extent[:, 0].min()
    span_y = extent[:, 1].max() - extent[:, 1].min()
    cx = rng.uniform(x1 + span_x / 2, max(x1 + span_x / 2 + 1, x2 - span_x / 2))
    cy = rng.uniform(y1 + span_y / 2, max(y1 + span_y / 2 + 1, y2 - span_y / 2))
    cx = float(np.clip(cx, span_x / 2 + 2, w - span_x / 2 - 2))
    cy = float(np.clip(cy, span_y / 2 + 2, h - span_y / 2 - 2))
    allp = extent + [cx, cy]
    box = [int(max(0, allp[:, 0].min())), int(max(0, allp[:, 1].min())),
           int(min(w - 1, allp[:, 0].max())), int(min(h - 1, allp[:, 1].max()))]
    # Work only in the threat's bounding box (plus the blur margin): the rest of the bag is untouched.
    rx1, ry1 = max(0, box[0] - 3), max(0, box[1] - 3)
    rx2, ry2 = min(w, box[2] + 4), min(h, box[3] + 4)
    rh, rw = ry2 - ry1, rx2 - rx1
    trans = np.ones((rh, rw, 3), np.float32)
    for poly, factor in placed:
        mask = np.zeros((rh, rw), np.uint8)
        cv2.fillPoly(mask, [np.round(poly + [cx - rx1, cy - ry1]).astype(np.int32)], 255, lineType=cv2.LINE_AA)
        # Slightly soft edges: a real object's edge is blurred by the detector's line-scan pitch.
        a = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)[..., None] / 255.0
        trans *= 1.0 - a * (1.0 - np.clip(factor, 0, 1))
    out = img.copy()
    roi = out[ry1:ry2, rx1:rx2]
    out[ry1:ry2, rx1:rx2] = np.clip(roi.astype(np.float32) * trans, 0, 255).astype(np.uint8)
    return out, box


SCHEMA = """
CREATE TABLE IF NOT EXISTS tip_trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    officer TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('hit', 'miss', 'false_alarm')),
    tip_uuid TEXT,
    lane TEXT NOT NULL,
    bag_id TEXT NOT NULL,
    threat TEXT,
    shown_t REAL,
    response_s REAL,
    t REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tip_trials_officer ON tip_trials (officer, t);
"""


@dataclass
class OfficerScore:
    officer: str
    projections: int
    hits: int
    misses: int
    false_alarms: int
    hit_rate: float | None
    mean_response_s: float | None
    median_response_s: float | None


class TipScores:
    """Trial outcomes in `path` (SQLite). One connection guarded by a lock: writes are a few per minute."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def record(self, officer: str, outcome: str, lane: str, bag_id: str, tip_uuid: str | None = None,
               threat: str | None = None, shown_t: float | None = None, response_s: float | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO tip_trials (officer, outcome, tip_uuid, lane, bag_id, threat, shown_t, response_s, t) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [officer, outcome, tip_uuid, lane, bag_id, threat, shown_t, response_s, time.time()])

    def trials(self, officer: str | None = None) -> list[dict]:
        sql = "SELECT * FROM tip_trials" + (" WHERE officer = ?" if officer else "") + " ORDER BY t"
        with self._lock:
            cur = self._db.execute(sql, [officer] if officer else [])
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def scores(self) -> list[OfficerScore]:
        by: dict[str, list[dict]] = {}
        for t in self.trials():
            by.setdefault(t["officer"], []).append(t)
        out = []
        for officer, ts in sorted(by.items()):
            hits = [t for t in ts if t["outcome"] == "hit"]
            misses = sum(t["outcome"] == "miss" for t in ts)
            fas = sum(t["outcome"] == "false_alarm" for t in ts)
            rts = [t["response_s"] for t in hits if t["response_s"] is not None]
            proj = len(hits) + misses
            out.append(OfficerScore(
                officer=officer, projections=proj, hits=len(hits), misses=misses, false_alarms=fas,
                hit_rate=round(len(hits) / proj, 3) if proj else None,
                mean_response_s=round(statistics.fmean(rts), 2) if rts else None,
                median_response_s=round(statistics.median(rts), 2) if rts else None))
        return out

    def close(self) -> None:
        self._db.close()
