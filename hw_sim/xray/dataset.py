"""`zastava sim dataset xray`: N labelled dual-energy bags on disk, byte-identical for a seed.

Layout of DIR:
  images/{i:06d}_high.png, images/{i:06d}_low.png   16-bit PNG, 65535 = open beam
  masks/{i:06d}_{k:02d}.png                          8-bit PNG, 255 inside object k of bag i
  labels.jsonl   one JSON object per bag, in order: {"index", "bag_id", "kind", "high", "low",
                 "pixel_spacing_mm", "objects": [{"cls", "box": [x1, y1, x2, y2], "place", "subtype",
                 "attrs", "area_px", "mask"}]}; a clean bag has "objects": []
  dataset.json   seed, count, generator version, share of contraband bags, class mix, tallies

Bag i is drawn from numpy's SeedSequence([seed, i]), so any bag can be regenerated alone and a
dataset of 1000 starts with the same 100 bags as a dataset of 100. Nothing reads the clock
except the progress line on stderr, which never reaches a file.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from hw_sim.xray.scene import (
    CLASSES,
    DEFAULT_MIX,
    GENERATOR_VERSION,
    IMAGE_SHAPE,
    Bag,
    check_mix,
    choose_contraband,
    make_bag,
)


def bag_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of bag `index` of a dataset or scanner stream with `seed`."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be >= 0")
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes (16-bit for uint16); cv2's encoder writes no timestamps, so output is stable."""
    ok, buf = cv2.imencode(".png", img)  # default level: 4x faster than 3, 4 % larger
    if not ok:
        raise RuntimeError(f"PNG encoding failed for an array of {img.dtype} {img.shape}")
    return buf.tobytes()


def dataset_bag(seed: int, index: int, contraband_share: float, class_mix: dict[str, float],
                shape: tuple[int, int] = IMAGE_SHAPE) -> Bag:
    rng = bag_rng(seed, index)
    cls = choose_contraband(rng, contraband_share, class_mix)
    return make_bag(rng, cls, bag_id=f"DS{seed}-{index:06d}", shape=shape)


class Progress:
    """A plain-text progress line on stderr, at most twice a second."""

    def __init__(self, total: int, enabled: bool, label: str = "xray dataset"):
        self.total, self.enabled, self.label = total, enabled, label
        self.t0 = self.last = time.monotonic()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.5 and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        width = 30
        fill = int(width * done / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
                         f"{rate:5.1f} bags/s")
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def encoded_bag(args: tuple[int, int, float, dict[str, float], tuple[int, int]]) -> tuple[dict[str, bytes], dict]:
    """Bag `index` of a dataset as ({relative path: file bytes}, its labels.jsonl record).

    A plain function of its arguments, so worker processes can make bags in any order and the
    result is the same as making them one by one.
    """
    seed, i, share, mix, shape = args
    bag = dataset_bag(seed, i, share, mix, shape)
    high, low = f"images/{i:06d}_high.png", f"images/{i:06d}_low.png"
    files = {high: encode_png(bag.high), low: encode_png(bag.low)}
    objects = []
    for k, gt in enumerate(bag.objects):
        mask_name = f"masks/{i:06d}_{k:02d}.png"
        files[mask_name] = encode_png(gt.mask.astype(np.uint8) * 255)
        objects.append({**gt.as_json(), "mask": mask_name})
    rec = {"index": i, "bag_id": bag.bag_id, "kind": bag.kind, "high": high, "low": low,
           "pixel_spacing_mm": list(bag.pixel_spacing_mm), "objects": objects}
    return files, rec


def write_dataset(
    out: Path,
    count: int,
    seed: int,
    progress: bool = True,
    *,
    contraband_share: float = 0.5,
    class_mix: dict[str, float] | None = None,
    shape: tuple[int, int] = IMAGE_SHAPE,
    workers: int = 1,
) -> None:
    """Write `count` bags under `out`; ~`contraband_share` of them carry contraband from `class_mix`.

    `workers` > 1 makes bags in that many processes; the files are the same bytes either way.
    (Processes are spawned: a script calling this needs the usual `if __name__ == "__main__":`.)
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if not 0.0 <= contraband_share <= 1.0:
        raise ValueError("contraband_share must be within [0, 1]")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    mix = dict(class_mix or DEFAULT_MIX)
    check_mix(mix)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    tally = {c: 0 for c in CLASSES}
    bags = {"clean": 0, "with_contraband": 0}
    places: dict[str, int] = {}
    bar = Progress(count, progress)
    jobs = ((seed, i, contraband_share, mix, tuple(shape)) for i in range(count))
    pool = None
    if workers > 1:
        # spawn, not fork: the caller may hold threads (a test runner, the simulator) that fork would copy
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(encoded_bag, jobs, chunksize=4)
    else:
        results = map(encoded_bag, jobs)
    try:
        with open(out / "labels.jsonl", "w", encoding="utf-8", newline="\n") as labels:
            for i, (files, rec) in enumerate(results):
                for rel, data in files.items():
                    (out / rel).write_bytes(data)
                for o in rec["objects"]:
                    tally[o["cls"]] += 1
                    places[f"{o['cls']}/{o['place']}"] = places.get(f"{o['cls']}/{o['place']}", 0) + 1
                bags["with_contraband" if rec["objects"] else "clean"] += 1
                labels.write(json.dumps(rec, sort_keys=True) + "\n")
                bar.update(i + 1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    meta = {
        "generator": "zastava hw_sim.xray", "version": GENERATOR_VERSION, "seed": seed, "count": count,
        "contraband_share": contraband_share, "class_mix": mix, "image_shape": list(shape),
        "pixel_convention": "uint16 transmission, 65535 = open beam; rows = detector line, columns = belt",
        "box_convention": "[x1, y1, x2, y2] pixel edges, x = column, x2 and y2 exclusive",
        "tally": {"bags": bags, "objects": tally, "places": dict(sorted(places.items()))},
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
