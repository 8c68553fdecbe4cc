"""Can the verifier's network tell narcotics from their look-alikes when shown the simulator's truth?

    python -m models.xray.truth_study [--bags 6000] [--jitter 0.0] [--epochs 20] [--seed 8001] [--json]

The shipped verifier learns from the detector's candidates, and stops near 0.80 of the narcotics
bags at the false-alarm budget (`python -m models.xray.candidates`). This asks whether the
information is in the crop at all: the same network (`VerifierNet`) and crops (`crop_input`),
trained on exact boxes from the simulator's ground truth. Positives: the narcotics block of each of
`--bags` bags (the training mix's hiding places, uniform). Negatives: the organic look-alikes of
as many clean bags (food, books, shoes, toiletries; `Bag.items` gives their boxes). `--jitter s`
moves each box side by N(0, s) of the box's size: 0.12 places boxes about as loosely as the
detector does (median IoU 0.70 with the truth; the detector's candidates on a block: 0.75).

Every fourth bag is held out for the test, so no bag is in both. The figures: pd at 1, 2 and 5 % of
the look-alikes flagged, and what that costs in false alarms per clean bag (look-alikes per clean
bag x the share). No detector score is given (0). Needs torch (the `train` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import get_context

import numpy as np

from detectors.xray.verifier import CHANNELS, CROP, box_features, crop_input
from models.xray.candidates import flagging_threshold

LOOKALIKES = ("food", "book", "shoes", "toiletries")
SHARES = (0.01, 0.02, 0.05)


def jittered(rng: np.random.Generator, box, s: float, shape: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    b = np.array([x1, y1, x2, y2]) + rng.normal(0.0, s, 4) * np.array([w, h, w, h])
    xs, ys = np.clip(np.sort(b[[0, 2]]), 0, shape[1]), np.clip(np.sort(b[[1, 3]]), 0, shape[0])
    return np.array([xs[0], ys[0], xs[1], ys[1]])


def bag_crops(args: tuple[int, int, bool, float]) -> tuple[np.ndarray, ...]:
    """One bag's crops: its narcotics block, or its look-alikes if clean; with each crop's mask
    target (masks.mask_target: where in the crop the narcotics are; none in a clean bag)."""
    from hw_sim.xray.scene import make_bag
    from models.xray.masks import MASK_SIDE, mask_target, truth_image

    seed, i, clean, s = args
    rng = np.random.default_rng([seed, i])
    bag = make_bag(rng, None if clean else "narcotics")
    blocks = [o for o in bag.objects if o.cls == "narcotics"]  # none in a clean bag
    truth = truth_image(blocks, bag.high.shape)
    if clean:
        found = [(b, "clean") for name, b in bag.items if name in LOOKALIKES]
    else:
        found = [(o.box, o.place) for o in blocks]
    jr = np.random.default_rng([seed, i, 99])
    boxes, places = [], []
    for b, place in found:
        jb = jittered(jr, b, s, bag.high.shape) if s > 0 else np.asarray(b, np.float64)
        if jb[2] - jb[0] >= 3 and jb[3] - jb[1] >= 3:
            boxes.append(jb)
            places.append(place)
    crops = np.zeros((len(boxes), CHANNELS, CROP, CROP), np.float16)
    masks = np.zeros((len(boxes), MASK_SIDE, MASK_SIDE), np.float16)
    for k, b in enumerate(boxes):
        crop_input(bag.high, bag.low, b, out=crops[k])
        masks[k] = mask_target(truth, b)
    feats = box_features(np.array(boxes, np.float32).reshape(-1, 4), np.zeros(len(boxes), np.float32))
    return crops, feats, np.full(len(boxes), 0.0 if clean else 1.0, np.float32), places, masks


def collect(bags: int, jitter: float, seed: int, workers: int = 2,
            skip_places: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The crops of `bags` narcotics bags (seed) and as many clean ones (seed + 100), in bag order;
    blocks in `skip_places` left out (the verifier's recipe leaves out false bottoms, see
    verifier_train.TRUTH_SKIP)."""
    jobs = [(seed, i, False, jitter) for i in range(bags)] + [(seed + 100, i, True, jitter) for i in range(bags)]
    with get_context("fork").Pool(workers) as pool:
        parts = pool.map(bag_crops, jobs, chunksize=16)
    out = {"crops": np.concatenate([p[0] for p in parts]), "feats": np.concatenate([p[1] for p in parts]),
           "labels": np.concatenate([p[2] for p in parts]),
           "places": np.array([pl for p in parts for pl in p[3]], "U16"),
           "masks": np.concatenate([p[4] for p in parts]),
           "test": np.concatenate([np.full(len(p[2]), j % bags % 4 == 0) for j, p in enumerate(parts)])}
    out["weights"] = np.ones(len(out["labels"]), np.float32)
    keep = ~np.isin(out["places"], list(skip_places))
    return out if keep.all() else {k: v[keep] for k, v in out.items()}


def evaluate(p: np.ndarray, labels: np.ndarray, places: np.ndarray, clean_bags: int) -> dict:
    """pd at each share of look-alikes flagged, overall and per hiding place."""
    neg = np.sort(p[labels == 0])[::-1]
    pos, pos_places = p[labels == 1], places[labels == 1]
    per_bag = len(neg) / max(clean_bags, 1)
    res: dict = {"lookalikes_per_clean_bag": round(per_bag, 2), "positives": int(len(pos)),
                 "lookalikes": int(len(neg)), "at": {}}
    for share in SHARES:
        thr = flagging_threshold(neg, int(share * len(neg)))
        row = {"fa_per_clean_bag": round(share * per_bag, 3), "pd": round(float((pos > thr).mean()), 3)}
        row.update({pl: round(float((pos[pos_places == pl] > thr).mean()), 3) for pl in sorted(set(pos_places))})
        res["at"][str(share)] = row
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bags", type=int, default=6000, help="narcotics bags, and as many clean bags")
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=8001)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import torch

    from models.xray.verifier_train import train

    t0 = time.monotonic()
    data = collect(a.bags, a.jitter, a.seed, a.workers)
    test = data.pop("test")
    places = data.pop("places")
    data.pop("masks")  # the study's figures are the label's alone, as first measured (MODEL_CARD.md)
    collect_s = time.monotonic() - t0
    net, facts = train({k: v[~test] for k, v in data.items()}, a.epochs, a.seed, progress=not a.json)
    with torch.no_grad():
        x, f = data["crops"][test], data["feats"][test]
        p = np.concatenate([torch.sigmoid(net(torch.from_numpy(x[i:i + 512].astype(np.float32)),
                                              torch.from_numpy(f[i:i + 512]))).numpy()
                            for i in range(0, len(x), 512)])
    clean_test = sum(1 for i in range(a.bags) if i % 4 == 0)
    res = evaluate(p, data["labels"][test], places[test], clean_test)
    res.update({"bags": a.bags, "jitter": a.jitter, "epochs": a.epochs, "seed": a.seed,
                "collect_s": round(collect_s, 1), "train_s": facts["train_seconds"]})
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{a.bags} narcotics + {a.bags} clean bags, jitter {a.jitter}, {a.epochs} epochs; test: every 4th bag, "
          f"{res['positives']} blocks, {res['lookalikes']} look-alikes ({res['lookalikes_per_clean_bag']} per clean bag)")
    for share, row in res["at"].items():
        places_txt = "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k not in ("pd", "fa_per_clean_bag"))
        print(f"  {float(share) * 100:4.1f} % flagged (~{row['fa_per_clean_bag']:.3f} FA/clean bag): "
              f"pd {row['pd']:.3f}   {places_txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
