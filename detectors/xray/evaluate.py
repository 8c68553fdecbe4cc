"""Measure our model and the physics baseline on a labelled dataset (`zastava sim dataset xray`).

    zastava eval xray --data DIR [--model PATH | --config FILE] [--out DIR] [--json]

Figures, per class, for each detector:
- pd: share of bags carrying the class in which a finding of that class, standing at the
  operating point, overlaps a true object of that class with IoU >= 0.3 (an officer is sent to
  the right place; 0.3 because long thin objects' boxes are ambiguous by a few pixels);
- ap50: average precision at IoU 0.5 over all bags (all-point interpolation, as in VOC/COCO),
  every finding ranked by its score;
- precision: of the findings of that class standing at the operating point, the share on a true
  object of the class (IoU >= 0.3);
and false_alarms_per_clean_bag: findings of any class standing at the operating point, per clean
bag. Each pd and the false-alarm rate come with a 95 % interval (`pd_ci95`,
`false_alarms_per_clean_bag_ci95`; Clopper-Pearson and Garwood, exact): how far the figure could
move on another draw of as many bags, which is what a comparison with a target needs.

The operating point is the model's own (thresholds and payload thresholds chosen on a validation
draw at training time and stored in the ONNX metadata; a finding stands at its class threshold,
or at its payload threshold inside a standing false bottom or double wall, see
detector.payload_keep) or 0.5 for every class where it carries none; the baseline uses 0.5.
With `--config`, the detector and operating point of a config's [xray_detector] table.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detectors.xray import CLASSES
from detectors.xray.detector import Postprocess, XrayFinding, load_detector
from detectors.xray.preprocess import pseudocolor

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "xray" / "zastava-xray.onnx"
PD_IOU = 0.3
AP_IOU = 0.5
BASELINE_THRESHOLD = 0.5


@dataclass
class Sample:
    name: str
    high: np.ndarray
    low: np.ndarray | None
    truth: list[tuple[str, tuple[int, int, int, int]]]
    places: list[str] | None = None  # hiding place of each truth object, when the labels say


def _read16(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(f"{path}: not a 16-bit grey PNG")
    return img


def load_dataset(data: Path) -> Iterator[Sample]:
    """Bags of a dataset folder: labels.jsonl, one line per bag, naming its image files."""
    labels = data / "labels.jsonl"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} not found: is {data} a dataset from `zastava sim dataset xray`?")
    with labels.open() as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                high = _read16(data / rec["high"])
                low = _read16(data / rec["low"]) if rec.get("low") else None
                truth = [(str(o["cls"]), tuple(int(v) for v in o["box"])) for o in rec.get("objects", [])]
                places = [str(o.get("place") or "unknown") for o in rec.get("objects", [])]
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise ValueError(f"{labels}:{n + 1}: bad label line ({type(e).__name__}: {e})") from e
            if len(truth) and any(len(b) != 4 for _, b in truth):
                raise ValueError(f"{labels}:{n + 1}: a box is not [x1, y1, x2, y2]")
            yield Sample(str(rec.get("bag_id", n)), high, low, truth, places)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in a (N,4) with each in b (M,4) -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def average_precision(scored: list[tuple[float, bool]], n_true: int) -> tuple[float, np.ndarray, np.ndarray]:
    """All-point interpolated AP from (score, is_true_positive) pairs; also the PR curve."""
    if n_true == 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    if not scored:
        return 0.0, np.zeros(1), np.zeros(1)
    order = sorted(scored, key=lambda s: -s[0])
    tp = np.cumsum([1.0 if t else 0.0 for _, t in order])
    fp = np.cumsum([0.0 if t else 1.0 for _, t in order])
    recall = tp / n_true
    precision = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate(([0.0], recall, [recall[-1]]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])), recall, precision


def best_overlap_score(findings: list[XrayFinding], cls: str, boxes) -> float:
    """The best score of a `cls` finding that overlaps one of `boxes` with IoU >= PD_IOU, or 0:
    the one test of "found" that pd, the per-place figures and the calibration all share."""
    mine = [f for f in findings if f.cls == cls]
    if not mine or not len(boxes):
        return 0.0
    ov = iou(np.array([f.box for f in mine], np.float64), np.asarray(boxes, np.float64))
    return max((f.score for f, row in zip(mine, ov, strict=True) if row.max() >= PD_IOU), default=0.0)


def standing(findings: list[XrayFinding], thresholds: dict[str, float],
             payload: dict[str, float] | None = None, class_names: list[str] | None = None) -> list[XrayFinding]:
    """The findings that stand at an operating point: the runtime's own rule (Postprocess.standing)
    on findings taken at the lowest candidate score. `class_names`: the model's (default ours);
    `thresholds` names each of them."""
    if not findings:
        return []
    names = list(class_names or CLASSES)
    post = Postprocess(names, thresholds, payload_thresholds=dict(payload or {}))
    keep = post.standing(np.array([f.box for f in findings], np.float32), np.array([f.score for f in findings], np.float32),
                         np.array([names.index(f.cls) for f in findings]))
    return [f for f, k in zip(findings, keep, strict=True) if k]


def score_detector(per_bag: list[list[XrayFinding]], truths: list[list[tuple[str, tuple]]],
                   thresholds: dict[str, float], places: list[list[str]] | None = None,
                   payload: dict[str, float] | None = None,
                   class_names: list[str] | None = None) -> tuple[dict, dict]:
    """Figures in the published layout, and the PR curves per class for the plots. pd and false
    alarms count the findings that stand at the operating point (`standing`); AP ranks every
    finding by its score. `class_names`: the detector's (default ours); a class the labels never
    name has pd and AP None, and its findings on clean bags still count as false alarms."""
    names = list(class_names or CLASSES)
    classes, curves = {}, {}
    clean = [i for i, t in enumerate(truths) if not t]
    stand = [standing(f, thresholds, payload, names) for f in per_bag]
    for c in names:
        scored: list[tuple[float, bool]] = []
        n_true, bags_with, bags_hit, n_stand, n_right = 0, 0, 0, 0, 0
        for finds, kept, truth in zip(per_bag, stand, truths, strict=True):
            gt = np.array([b for k, b in truth if k == c], np.float64).reshape(-1, 4)
            fs = sorted((f for f in finds if f.cls == c), key=lambda f: -f.score)
            n_true += len(gt)
            if len(gt):
                bags_with += 1
                bags_hit += best_overlap_score(kept, c, gt) > 0
            mine = [f for f in kept if f.cls == c]
            n_stand += len(mine)
            n_right += sum(best_overlap_score([f], c, gt) > 0 for f in mine)
            used = np.zeros(len(gt), bool)
            ious = iou(np.array([f.box for f in fs]), gt) if fs and len(gt) else None
            for k, f in enumerate(fs):
                hit = False
                if ious is not None:
                    cand = np.where(~used, ious[k], -1.0)
                    j = int(np.argmax(cand))
                    if cand[j] >= AP_IOU:
                        used[j], hit = True, True
                scored.append((f.score, hit))
        ap, rec, prec = average_precision(scored, n_true)
        classes[c] = {"pd": round(bags_hit / bags_with, 4) if bags_with else None,
                      "pd_ci95": proportion_ci(bags_hit, bags_with),
                      "ap50": round(ap, 4) if n_true else None,
                      "precision": round(n_right / n_stand, 4) if n_stand else None}
        curves[c] = (rec, prec)
    fa = sum(len(stand[i]) for i in clean)
    out = {"classes": classes, "false_alarms_per_clean_bag": round(fa / len(clean), 4) if clean else None,
           "false_alarms_per_clean_bag_ci95": rate_ci(fa, len(clean))}
    if places is not None:
        out["by_place"] = detection_by_place(stand, truths, places)
    return out, curves


def proportion_ci(hits: int, n: int, level: float = 0.95) -> list[float] | None:
    """Clopper-Pearson interval of a detection rate: exact, never narrower than the truth, as
    detection figures are reported against a requirement. A rate measured on 495 bags moves by
    a few points from one draw to the next (MODEL_CARD.md), and a reader comparing it with a
    target needs to see by how much."""
    if not n:
        return None
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if hits == 0 else float(beta.ppf(a, hits, n - hits + 1))
    hi = 1.0 if hits == n else float(beta.ppf(1 - a, hits + 1, n - hits))
    return [round(lo, 4), round(hi, 4)]


def rate_ci(count: int, n: int, level: float = 0.95) -> list[float] | None:
    """Exact (Garwood) interval of false alarms per clean bag, a Poisson count over n bags (a bag
    can raise more than one, so not a proportion)."""
    if not n:
        return None
    from scipy.stats import chi2

    a = (1 - level) / 2
    lo = 0.0 if count == 0 else float(chi2.ppf(a, 2 * count)) / 2
    hi = float(chi2.ppf(1 - a, 2 * count + 2)) / 2
    return [round(lo / n, 4), round(hi / n, 4)]


def detection_by_place(stand: list[list[XrayFinding]], truths: list[list[tuple[str, tuple]]],
                       places: list[list[str]]) -> dict:
    """Per class and hiding place: of the objects hidden there, the share found by the findings
    standing at the operating point (IoU >= PD_IOU). What an analyst needs to see where a model
    is blind; per object, not per bag, because one bag can hide the same class in two places."""
    tally: dict[str, dict[str, list[int]]] = {}
    for finds, truth, where in zip(stand, truths, places, strict=True):
        for (c, box), place in zip(truth, where, strict=True):
            hit = best_overlap_score(finds, c, [box]) > 0
            t = tally.setdefault(c, {}).setdefault(place, [0, 0])
            t[0] += hit
            t[1] += 1
    return {c: {p: {"pd": round(h / n, 4), "objects": n} for p, (h, n) in sorted(by.items())}
            for c, by in sorted(tally.items())}


def run_all(detector, samples: Iterable[Sample], progress: bool = False) -> tuple[list, list, list[str], float]:
    per_bag, truths, names, spent = [], [], [], 0.0
    for n, s in enumerate(samples):
        t0 = time.perf_counter()
        per_bag.append(detector.detect(s.high, s.low))
        spent += time.perf_counter() - t0
        truths.append(s.truth)
        names.append(s.name)
        if progress and (n + 1) % 500 == 0:
            print(f"  {n + 1} bags", file=sys.stderr)
    return per_bag, truths, names, spent


def plot_pr(curves: dict[str, dict], path: Path, result: dict | None = None) -> None:
    """PR curves, one panel per class, model in red, baseline in blue (OpenCV drawing: no
    plotting library is a runtime dependency)."""
    W, H, M = 300, 300, 40
    panels = []
    names = list(dict.fromkeys(c for who in curves.values() for c in who))
    for c in names:
        img = np.full((H + 2 * M, W + 2 * M, 3), 255, np.uint8)
        cv2.rectangle(img, (M, M), (M + W, M + H), (0, 0, 0), 1)
        for k in range(1, 10):
            cv2.line(img, (M + k * W // 10, M), (M + k * W // 10, M + H), (230, 230, 230), 1)
            cv2.line(img, (M, M + k * H // 10), (M + W, M + k * H // 10), (230, 230, 230), 1)
        for name, colour in (("model", (0, 0, 220)), ("baseline", (220, 90, 0))):
            if c not in curves.get(name, {}):
                continue
            rec, prec = curves[name][c]
            if len(rec) > 1:
                pts = np.stack([M + rec * W, M + (1 - prec) * H], 1).astype(np.int32)
                cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(img, f"{c}: recall ->, precision ^", (M, M - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        for k, (name, colour) in enumerate((("model", (0, 0, 220)), ("baseline", (220, 90, 0)))):
            ap = ((result or {}).get(name) or {}).get("classes", {}).get(c, {}).get("ap50")
            label = name + (f" AP50 {ap:.3f}" if ap is not None else "")
            cv2.putText(img, label, (M + 5 + 150 * k, M + H + 25), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1)
        panels.append(img)
    cv2.imwrite(str(path), np.hstack(panels))


def draw_examples(samples: list[Sample], finds: list[list[XrayFinding]], path: Path) -> None:
    """A grid of bags: truth in white, the findings standing at the operating point in red."""
    tiles = []
    for s, fs in zip(samples, finds, strict=True):
        img = pseudocolor(s.high, s.low)
        for _, (x1, y1, x2, y2) in s.truth:
            cv2.rectangle(img, (x1, y1), (x2, y2), (255, 255, 255), 3)
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 0), 1)
        for f in fs:
            x1, y1, x2, y2 = f.box
            cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 230), 2)
            cv2.putText(img, f"{f.cls} {f.score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 0, 230), 1, cv2.LINE_AA)
        tiles.append(cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    while len(tiles) % 4:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i:i + 4]) for i in range(0, len(tiles), 4)]
    cv2.imwrite(str(path), np.vstack(rows))


def take_candidates(detector) -> tuple[dict[str, float], dict[str, float]]:
    """Set a loaded detector to keep every candidate, and return the operating point it was loaded
    with (its model's thresholds and the configuration's over them, as the agent runs it): findings
    are taken once, and any operating point is applied to them afterwards (`standing`)."""
    op, payload = detector.post.operating_point()
    detector.post = detector.post.candidates_only()
    return op, payload


def evaluate(data: Path, model: Path | None = None, out_dir: Path | None = None, progress: bool = True,
             detector=None) -> dict:
    """Both detectors over the dataset; writes pr_curves.png, examples_*.png and details.json.

    `detector`: a loaded detector to measure at the operating point it was loaded with (`zastava
    eval xray --config`: a user's YOLO export, our model under a site's thresholds); otherwise our
    model file `model` (default the shipped one) at the operating point in its metadata."""
    data = Path(data)
    if model is not None and not Path(model).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    model = Path(model) if model else DEFAULT_MODEL
    out_dir = Path(out_dir) if out_dir else data / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    curves: dict = {}
    details: dict = {"pd_iou": PD_IOU, "ap_iou": AP_IOU}
    samples = list(load_dataset(data))
    truths = [s.truth for s in samples]
    places = [s.places for s in samples] if all(s.places is not None for s in samples) else None
    runs = {}
    if detector is None and model.is_file():
        detector = load_detector(model, "zastava", threads=1)
    if detector is not None:
        op, payload = take_candidates(detector)
        names = list(detector.class_names)
        per_bag, _, _, spent = run_all(detector, samples, progress)
        result["model"], curves["model"] = score_detector(per_bag, truths, op, places, payload, names)
        details["model"] = {"path": str(getattr(detector, "path", "physics")), "thresholds": op,
                            "payload_thresholds": payload, "ms_per_bag": round(1000 * spent / len(samples), 2)}
        runs["model"] = (per_bag, op, payload, names)
    else:
        print(f"no model at {model}: measuring the baseline only", file=sys.stderr)
    base = load_detector("physics", default_threshold=BASELINE_THRESHOLD)
    bop, _ = take_candidates(base)
    per_bag, _, _, spent = run_all(base, samples, progress)
    result["baseline"], curves["baseline"] = score_detector(per_bag, truths, bop, places)
    details["baseline"] = {"thresholds": bop, "ms_per_bag": round(1000 * spent / len(samples), 2)}
    runs["baseline"] = (per_bag, bop, None, list(CLASSES))
    result["bags"] = len(samples)
    result["clean_bags"] = sum(1 for t in truths if not t)
    plot_pr(curves, out_dir / "pr_curves.png", result)
    # examples: the first two bags of each class and two clean ones
    pick: list[int] = []
    for c in (*dict.fromkeys(k for t in truths for k, _ in t), None):
        idx = [i for i, t in enumerate(truths) if (c is None and not t) or (c and any(k == c for k, _ in t))]
        pick += [i for i in idx[:2] if i not in pick]
    for name, (per, thr, pay, names) in runs.items():
        draw_examples([samples[i] for i in pick], [standing(per[i], thr, pay, names) for i in pick],
                      out_dir / f"examples_{name}.png")
    (out_dir / "details.json").write_text(json.dumps({**details, **result}, indent=1, sort_keys=True) + "\n")
    return result


def format_table(result: dict) -> str:
    """The figures as a plain-text table, model beside baseline."""
    who = [k for k in ("model", "baseline") if k in result]
    head = f"{'class':<12}" + "".join(f"{w + ' pd':>14}{w + ' AP50':>16}" for w in who)
    lines = [f"X-ray detection on {result['bags']} bags ({result['clean_bags']} clean)", head, "-" * len(head)]

    def fmt(v):
        return "       -" if v is None else f"{v:8.3f}"

    names = list(dict.fromkeys(c for w in who for c in result[w]["classes"]))
    for c in names:
        row = f"{c:<12}"
        for w in who:
            r = result[w]["classes"].get(c, {})
            row += f"{fmt(r.get('pd')):>14}{fmt(r.get('ap50')):>16}"
        lines.append(row)
    lines.append("-" * len(head))
    lines.append(f"{'FA/clean bag':<12}" + "".join(f"{fmt(result[w]['false_alarms_per_clean_bag']):>14}{'':>16}"
                                                   for w in who))
    for w in who:  # how far each figure could move on another draw of the same size
        cis = [f"{c} {r['pd_ci95'][0]:.3f}-{r['pd_ci95'][1]:.3f}" for c, r in result[w]["classes"].items()
               if r.get("pd_ci95")]
        fa_ci = result[w].get("false_alarms_per_clean_bag_ci95")
        if cis or fa_ci:
            lines.append(f"{w} 95 % intervals: pd " + ", ".join(cis)
                         + (f"; FA/clean bag {fa_ci[0]:.4f}-{fa_ci[1]:.4f}" if fa_ci else ""))
    for w in who:  # of the findings an officer is shown, the share on a true object (IoU >= PD_IOU)
        lines.append(f"{w} precision at the operating point: " + ", ".join(
            f"{c} {fmt(r.get('precision')).strip()}" for c, r in result[w]["classes"].items()))
    if all("by_place" in result[w] for w in who):
        lines += ["", f"{'class':<12}{'hiding place':<16}{'objects':>8}" + "".join(f"{w + ' pd':>14}" for w in who)]
        for c, by in result[who[0]]["by_place"].items():
            for place, r in by.items():
                row = f"{c:<12}{place:<16}{r['objects']:>8}"
                for w in who:
                    row += f"{fmt(result[w]['by_place'].get(c, {}).get(place, {}).get('pd')):>14}"
                lines.append(row)
    return "\n".join(lines)
