"""How far the narcotics pair (detector + verifier) can get, and where it stops, on a validation draw.

    python -m models.xray.candidates [--model PATH] [--seed 4001] [--bags 4000] [--json]

The verifier can only confirm a block the detector has proposed. So two figures per hiding place:
- ceiling: share of narcotics bags where the detector proposes a narcotics candidate on the block
  (IoU >= PD_IOU) from its MIN_CANDIDATE_SCORE, and from the verifier's MIN_VERIFIED_SCORE (what
  the runtime verifies). No verifier can find more than that.
- pd at a false-alarm rate: share of narcotics bags whose best verified candidate on the block
  scores above the verifier's score that only that many narcotics candidates per clean bag reach.
  Narcotics false alarms only and before the payload rule, so this isolates the verifier; the
  operating point (`zastava eval xray`) adds the other classes and the payload rule.

The draw: bag i from numpy.random.default_rng([seed, i]); even i clean, odd i contraband by the
training mix's shares (models/xray/mix.MIX), hiding places the simulator's uniform choice. A
seed used neither by training (1), the verifier's data (3001), the calibration (1001) nor the
held-out set (271828). Runtime code only (onnxruntime): it measures the shipped pair as it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from detectors.xray import CLASSES
from detectors.xray.evaluate import DEFAULT_MODEL, PD_IOU, iou
from models.xray.mix import MIX

FA_RATES = (0.015, 0.022, 0.03)
VERIFIED = "narcotics"

_pair = None


def _load(model: str):
    from detectors.xray.detector import MIN_CANDIDATE_SCORE, load_detector
    from detectors.xray.verifier import verifier_from_metadata

    det = load_detector(model, "zastava", thresholds={c: MIN_CANDIDATE_SCORE for c in CLASSES}, verifier=False)
    ver = verifier_from_metadata(Path(model), det.session.get_modelmeta().custom_metadata_map, det.class_names)
    if ver is None:
        raise SystemExit(f"{model} names no verifier in its metadata: nothing to measure")
    return det, ver


def bag_figures(args: tuple[str, int, int]) -> dict:
    """One bag: whether it is clean, its block's hiding place, the verifier's scores of its
    candidates from MIN_VERIFIED_SCORE, and which of them (and of all candidates) lie on the block."""
    from detectors.xray.verifier import to_verify
    from hw_sim.xray.scene import make_bag

    global _pair
    model, seed, i = args
    if _pair is None:  # one pair of sessions per worker process
        _pair = _load(model)
    det, ver = _pair
    rng = np.random.default_rng([seed, i])
    kind = None
    if i % 2:
        kinds = [k for k in MIX if k is not None]
        p = np.array([MIX[k] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    bag = make_bag(rng, contraband=kind)
    found = [f for f in det.detect(bag.high, bag.low) if f.cls == VERIFIED]
    checked = to_verify(found, VERIFIED)
    boxes = np.array([f.box for f in checked], np.float64).reshape(-1, 4)
    scores = ver.score(bag.high, bag.low, boxes, np.array([f.score for f in checked], np.float32))
    blocks = [o for o in bag.objects if o.cls == VERIFIED]
    out = {"clean": kind is None, "scores": scores.tolist(), "place": blocks[0].place if blocks else None}
    if blocks:
        gt = np.array([o.box for o in blocks], np.float64)
        on_all = iou(np.array([f.box for f in found], np.float64).reshape(-1, 4), gt).max(axis=1, initial=0.0)
        on = iou(boxes, gt).max(axis=1, initial=0.0)  # the verified ones: all from MIN_VERIFIED_SCORE
        out.update(proposed=bool((on_all >= PD_IOU).any()), proposed_verified=bool((on >= PD_IOU).any()),
                   best=float(scores[on >= PD_IOU].max()) if (on >= PD_IOU).any() else 0.0)
    return out


def flagging_threshold(negatives: np.ndarray, k: int) -> float:
    """The score that only the k best negatives exceed (ties aside), i.e. the threshold that spends
    a budget of k false alarms; `negatives` sorted best first. 0 when there are no more than k."""
    return float(negatives[k]) if k < len(negatives) else 0.0


def summarise(bags: list[dict], rates=FA_RATES) -> dict:
    """The figures of the module's docstring, overall and per hiding place."""
    clean = [b for b in bags if b["clean"]]
    negatives = np.sort(np.concatenate([np.asarray(b["scores"], np.float64) for b in clean] or [np.zeros(0)]))[::-1]
    carrying = [b for b in bags if b["place"]]
    by_place: dict[str, list[dict]] = defaultdict(list)
    for b in carrying:
        by_place[b["place"]].append(b)

    def share(group: list[dict], test) -> float:
        return round(float(np.mean([test(b) for b in group])), 3) if group else float("nan")

    out = {"bags": len(bags), "clean_bags": len(clean), "narcotics_bags": len(carrying), "places": {},
           "ceiling": {"from_candidate_score": share(carrying, lambda b: b["proposed"]),
                       "from_verified_score": share(carrying, lambda b: b["proposed_verified"])},
           "pd": {}}
    thresholds = {}
    for r in rates:
        thresholds[r] = flagging_threshold(negatives, int(r * len(clean)))
        out["pd"][str(r)] = {"verifier_threshold": round(thresholds[r], 3),
                             "pd": share(carrying, lambda b, t=thresholds[r]: b["best"] > t)}
    for place, group in sorted(by_place.items()):
        out["places"][place] = {
            "bags": len(group), "ceiling": share(group, lambda b: b["proposed"]),
            "ceiling_verified": share(group, lambda b: b["proposed_verified"]),
            **{f"pd@{r}": share(group, lambda b, t=thresholds[r]: b["best"] > t) for r in rates}}
    return out


def table(s: dict) -> str:
    rates = [k.split("@")[1] for k in next(iter(s["places"].values()), {}) if k.startswith("pd@")]
    head = f"{'place':<14}{'bags':>6}{'ceiling':>9}{'ceil>=.10':>10}" + "".join(f"{'pd@' + r:>10}" for r in rates)
    lines = [f"narcotics candidates on {s['bags']} bags ({s['clean_bags']} clean, {s['narcotics_bags']} with narcotics)",
             head, "-" * len(head)]
    for place, p in s["places"].items():
        lines.append(f"{place:<14}{p['bags']:>6}{p['ceiling']:>9.3f}{p['ceiling_verified']:>10.3f}"
                     + "".join(f"{p['pd@' + r]:>10.3f}" for r in rates))
    lines.append("-" * len(head))
    lines.append(f"{'all':<14}{s['narcotics_bags']:>6}{s['ceiling']['from_candidate_score']:>9.3f}"
                 f"{s['ceiling']['from_verified_score']:>10.3f}" + "".join(f"{s['pd'][r]['pd']:>10.3f}" for r in rates))
    lines.append("pd@r: narcotics false alarms per clean bag r, before the payload rule; ceiling: a candidate on "
                 "the block at all (from 0.05), and one the runtime verifies (from 0.10)")
    return "\n".join(lines)


def measure(model: Path, seed: int, bags: int, workers: int = 2) -> dict:
    jobs = [(str(model), seed, i) for i in range(bags)]
    with get_context("fork").Pool(workers) as pool:
        return summarise(list(pool.imap(bag_figures, jobs, chunksize=16)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--seed", type=int, default=4001)
    ap.add_argument("--bags", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.bags < 2:
        ap.error("--bags must be at least 2 (half of them are clean)")
    s = measure(a.model, a.seed, a.bags, a.workers)
    print(json.dumps(s) if a.json else table(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
