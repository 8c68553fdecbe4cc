"""Choosing the operating point of our X-ray model from scores on a calibration draw: the class
thresholds and the payload thresholds. Plain numpy, apart from training: what calibration
decides can be tested (and re-run) without torch."""

from __future__ import annotations

import numpy as np

from detectors.xray.detector import CONTAINER_CLASS
from detectors.xray.evaluate import best_overlap_score, standing

# Weights of each class's detection rate when the operating thresholds share out the false-alarm
# budget: narcotics and weapons are what the targets (and officers) care about most.
CALIBRATION_WEIGHTS = {"narcotics": 2.0, "weapon": 2.0, "currency": 1.0, "concealment": 1.0}
THRESHOLD_GRID = np.round(np.arange(0.10, 0.951, 0.025), 3)
# Detection rates the operating point must keep on the calibration draw, when any combination can:
# the weapon target is 0.98 on a held-out set, so the draw must show a little more. Without this
# floor, a narcotics verifier that buys detections cheaply took the weapon threshold from 0.375 to
# 0.45 (0.990 -> 0.980 on the draw): the weighted sum gained, the weapon target was at risk.
CALIBRATION_FLOORS = {"weapon": 0.985}


def choose_thresholds(fa_scores: dict[str, list[float]], pd_scores: dict[str, list[float]], clean: int,
                      budget: float, weights: dict[str, float] | None = None,
                      floors: dict[str, float] | None = None) -> tuple[dict[str, float], dict]:
    """Per-class thresholds on THRESHOLD_GRID that maximise the weighted sum of detection rates while
    all classes together stay within `budget` false alarms per clean bag and each class in `floors`
    (default CALIBRATION_FLOORS) keeps its detection rate (the floors are dropped, and the facts
    say so, when no combination within the budget keeps them).

    fa_scores[c]: scores of class-c findings on clean bags; pd_scores[c]: per bag carrying c, the best
    score of a class-c finding overlapping its object (0 if none). Every combination is tried (35^4
    for four classes, a vectorised sum): a budget split evenly between classes wastes it on classes
    that raise no false alarms at all while narcotics, the class that confuses with food, starves."""
    weights = weights or CALIBRATION_WEIGHTS
    floors = CALIBRATION_FLOORS if floors is None else floors
    classes = list(fa_scores)
    g = THRESHOLD_GRID
    fa = [np.array([(np.asarray(fa_scores[c]) >= t).sum() / max(clean, 1) for t in g]) for c in classes]
    pd = [np.array([(np.asarray(pd_scores[c]) >= t).mean() if len(pd_scores[c]) else 0.0 for t in g])
          for c in classes]
    total_fa = np.zeros((len(g),) * len(classes))
    gain = np.zeros_like(total_fa)
    kept = np.ones_like(total_fa, dtype=bool)
    for k, c in enumerate(classes):
        shape = [1] * len(classes)
        shape[k] = len(g)
        total_fa = total_fa + fa[k].reshape(shape)
        gain = gain + weights.get(c, 1.0) * pd[k].reshape(shape)
        if c in floors:
            kept = kept & (pd[k] >= floors[c] - 1e-12).reshape(shape)
    # among feasible combinations: best gain, then fewest false alarms
    feasible = total_fa <= budget + 1e-12
    floors_held = bool((feasible & kept).any())
    if floors_held:
        feasible &= kept
    score = np.where(feasible, gain - 1e-3 * total_fa, -np.inf)
    if not np.isfinite(score).any():  # even the highest thresholds alarm too often: take those
        idx = (len(g) - 1,) * len(classes)
    else:
        idx = np.unravel_index(int(np.argmax(score)), score.shape)
    thresholds = {c: float(g[i]) for c, i in zip(classes, idx, strict=True)}
    facts = {"fa_per_clean_bag": {c: round(float(fa[k][idx[k]]), 4) for k, c in enumerate(classes)},
             "pd": {c: round(float(pd[k][idx[k]]), 4) for k, c in enumerate(classes)},
             "fa_total": round(float(total_fa[idx]), 4), "budget": budget, "weights": weights,
             "floors": floors, "floors_held": floors_held}
    return thresholds, facts


# A payload threshold (detectors/xray/detector.payload_keep) must leave the findings it admits
# right at least this often on the calibration draw: inside an empty false bottom a "narcotics"
# finding is a wrong claim even though no clean bag pays for it.
PAYLOAD_MIN_PRECISION = 0.5


def choose_payload_thresholds(per_bag: list[list], truths: list[list[tuple[str, tuple]]],
                              thresholds: dict[str, float], budget: float) -> tuple[dict[str, float], dict]:
    """Per class, the lowest grid threshold for findings inside a standing false bottom or double
    wall that adds detections while all false alarms per clean bag stay within `budget` and the
    findings it admits are right at least PAYLOAD_MIN_PRECISION of the time. Classes in the order
    of CALIBRATION_WEIGHTS (each sees the false alarms the earlier ones added); a class keeps no
    payload threshold where none adds a detection."""
    clean = {i for i, t in enumerate(truths) if not t}
    # only bags with a standing hiding place can change
    holders = [i for i, f in enumerate(per_bag)
               if any(x.cls == CONTAINER_CLASS and x.score >= thresholds[CONTAINER_CLASS] for x in f)]
    payload: dict[str, float] = {}
    facts: dict[str, dict] = {}

    def measure(c: str, pay: dict[str, float], base: dict[int, set[int]]) -> tuple[int, int, int, int]:
        """(bags with c found, standing false alarms on clean bags, findings admitted beyond `base`
        (each bag's standing findings without c's payload threshold), of them right)."""
        found = fa = admitted = right = 0
        for i in holders:
            kept = standing(per_bag[i], thresholds, pay)
            gt = [b for k, b in truths[i] if k == c]
            found += bool(gt) and best_overlap_score(kept, c, gt) > 0
            fa += len(kept) if i in clean else 0
            for f in kept:
                if id(f) not in base[i]:
                    admitted += 1
                    right += best_overlap_score([f], c, gt) > 0
        return found, fa, admitted, right

    fa_now = sum(len(standing(per_bag[i], thresholds)) for i in clean)
    with_c = {c: sum(1 for t in truths if any(k == c for k, _ in t)) for c in thresholds}
    for c in sorted(CALIBRATION_WEIGHTS, key=lambda k: -CALIBRATION_WEIGHTS[k]):
        if c == CONTAINER_CLASS or not with_c.get(c):
            continue
        base = {i: {id(f) for f in standing(per_bag[i], thresholds, payload)} for i in holders}
        base_found, base_fa, _, _ = measure(c, payload, base)
        best = None
        for t in THRESHOLD_GRID[THRESHOLD_GRID < thresholds[c]][::-1]:
            found, fa, admitted, right = measure(c, {**payload, c: float(t)}, base)
            if fa_now - base_fa + fa > budget * max(len(clean), 1) + 1e-9:
                continue
            if admitted and right / admitted < PAYLOAD_MIN_PRECISION:
                continue
            if found > (best[1] if best else base_found):
                best = (float(t), found, fa - base_fa, admitted, right)
        if best:
            payload[c] = best[0]
            fa_now += best[2]
            facts[c] = {"threshold": best[0], "pd_gain": round((best[1] - base_found) / with_c[c], 4),
                        "admitted": best[3], "right": best[4], "fa_added_per_clean_bag":
                        round(best[2] / max(len(clean), 1), 4)}
    return payload, {"by_class": facts, "fa_total": round(fa_now / max(len(clean), 1), 4),
                     "min_precision": PAYLOAD_MIN_PRECISION}
