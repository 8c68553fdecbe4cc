"""Measure the radio detector on a simulator dataset (`zastava sim dataset rf`), for `zastava eval rf`.

- detection: every annotated burst of DIR/detection/*.sigmf-meta counts as detected when the
  front end (run block by block, 2^18 samples, as the rtl_tcp driver delivers them) finds a burst
  overlapping it in time and frequency; Pd is reported per annotated SNR;
- false alarms: emitters the tracker starts on the emitter-free detection captures, per hour of
  such noise;
- classification: each DIR/labelled capture goes through the front end; the burst on the
  annotated emitter (or, if the front end misses it, the annotated band itself, so that every
  capture counts) is channelised and classified; accuracy per SNR bin and the confusion matrix.

The JSON holds exactly the keys `zastava eval rf --json` documents; the counts behind them are in
`result.details` (shown by format_table, written to OUT/rf_eval_details.json).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from detectors.rf.channel import channelise
from detectors.rf.classifier import DEFAULT_MODEL, RFClassifier
from detectors.rf.frontend import FrontEnd, cu8_to_complex64
from detectors.rf.tracker import Tracker

BLOCK = 1 << 18
ACC_BINS = (-4.0, 0.0, 5.0, 10.0, 15.0)  # lower edges of the accuracy-by-SNR bins (dB)


class EvalResult(dict):
    """The JSON figures, plus `details` (counts, time) that the JSON does not carry."""

    details: dict


def read_capture(meta_path: Path) -> tuple[np.ndarray, float, float, list[dict]]:
    """(complex64 samples, centre, rate, annotations) of a SigMF recording (cu8 or cf32)."""
    meta = json.loads(meta_path.read_text())
    g = meta["global"]
    dtype = g["core:datatype"]
    raw = np.fromfile(meta_path.with_suffix(".sigmf-data"), dtype=np.uint8)
    if dtype == "cu8":
        x = cu8_to_complex64(raw)
    elif dtype == "cf32_le":
        x = raw.view(np.complex64)
    else:
        raise ValueError(f"{meta_path}: unsupported datatype {dtype}")
    cap = meta["captures"][0]
    return x, float(cap["core:frequency"]), float(g["core:sample_rate"]), meta.get("annotations", [])


def _overlaps(b, a: dict, rate: float, t_tol: float) -> bool:
    t0 = a["core:sample_start"] / rate
    t1 = t0 + a["core:sample_count"] / rate
    return (b.t_start < t1 + t_tol and b.t_end > t0 - t_tol
            and b.f_lo_hz < a["core:freq_upper_edge"] and b.f_hi_hz > a["core:freq_lower_edge"])


def evaluate_detection(files: list[Path]) -> dict:
    hits: dict[str, list[int]] = {}
    noise_s, fa_emitters, fa_bursts, unmatched = 0.0, 0, 0, 0
    for meta in files:
        x, center, rate, anns = read_capture(meta)
        fe, tr = FrontEnd(), Tracker()
        bursts = []
        for i in range(0, x.size, BLOCK):
            res = fe.process(x[i: i + BLOCK], i / rate, center, rate)
            if res is not None:
                bursts += res.bursts
                tr.update(res)
        tol = fe.row_len / rate
        if not anns:
            noise_s += x.size / rate
            fa_emitters += len(tr.emitters) + len(tr.expired)
            fa_bursts += len(bursts)
            continue
        for a in anns:
            key = f"{round(float(a.get('zastava:snr_db', math.nan))):d}" if "zastava:snr_db" in a else "?"
            h = hits.setdefault(key, [0, 0])
            h[1] += 1
            h[0] += any(_overlaps(b, a, rate, tol) for b in bursts)
        unmatched += sum(not any(_overlaps(b, a, rate, tol) for a in anns) for b in bursts)
    keys = sorted(hits, key=lambda k: float(k) if k != "?" else 1e9)
    return {"pd": {k: round(hits[k][0] / hits[k][1], 4) for k in keys},
            "counts": {k: hits[k] for k in keys}, "noise_s": noise_s, "fa_emitters": fa_emitters,
            "fa_bursts": fa_bursts, "unmatched_bursts_in_busy_captures": unmatched}


def _acc_bin(snr: float) -> str:
    edge = max([e for e in ACC_BINS if snr >= e], default=ACC_BINS[0])
    return f"{int(edge)}"


def evaluate_classifier(files: list[Path], clf: RFClassifier) -> dict:
    classes = clf.classes
    k = len(classes)
    conf = np.zeros((k, k), np.int64)
    per_bin: dict[str, list[int]] = {}
    ge10 = [0, 0]
    detected = 0
    snippets, truth, snrs = [], [], []
    for meta in files:
        x, center, rate, anns = read_capture(meta)
        if not anns or anns[0].get("core:label") not in classes:
            continue
        a = anns[0]
        lo, hi = a["core:freq_lower_edge"], a["core:freq_upper_edge"]
        band = None
        if a["core:label"] != "noise":
            res = FrontEnd().process(x, 0.0, center, rate)
            cand = [b for b in (res.bursts if res else []) if b.f_hi_hz > lo and b.f_lo_hz < hi]
            if cand:
                b = max(cand, key=lambda b: b.power_dbfs)
                band = (b.center_hz, b.bandwidth_hz, b.sample0, b.sample1)
                detected += 1
        if band is None:
            band = ((lo + hi) / 2, hi - lo, 0, x.size)
        snippets.append(channelise(x, rate, band[0] - center, band[1], band[2], band[3], n_out=clf.snippet_len,
                                   oversample=clf.oversample))
        truth.append(classes.index(a["core:label"]))
        snrs.append(float(a.get("zastava:snr_db", math.nan)))
    pred = []
    for i in range(0, len(snippets), 256):
        p = clf.probabilities(np.stack(snippets[i: i + 256]))
        pred += list(p.argmax(axis=1))
    for t, p, s in zip(truth, pred, snrs, strict=True):
        conf[t, p] += 1
        if not math.isnan(s):
            b = per_bin.setdefault(_acc_bin(s), [0, 0])
            b[0] += int(t == p)
            b[1] += 1
            if s >= 10:
                ge10[0] += int(t == p)
                ge10[1] += 1
    keys = sorted(per_bin, key=float)
    return {"acc": {k: round(per_bin[k][0] / per_bin[k][1], 4) for k in keys}, "acc_counts": {k: per_bin[k] for k in keys},
            "classes": classes, "confusion": conf.tolist(), "acc_ge_10": round(ge10[0] / ge10[1], 4) if ge10[1] else None,
            "n_ge_10": ge10[1], "n": len(truth), "front_end_found": detected}


def evaluate(data: Path, model: Path | None = None, out_dir: Path | None = None) -> EvalResult:
    data = Path(data)
    det_files = sorted((data / "detection").glob("*.sigmf-meta"))
    lab_files = sorted((data / "labelled").glob("*.sigmf-meta"))
    if not det_files and not lab_files:
        raise FileNotFoundError(f"{data}: no detection/ or labelled/ SigMF captures (make them with "
                                "`zastava sim dataset rf --out DIR`)")
    det = evaluate_detection(det_files)
    model_path = Path(model) if model else (DEFAULT_MODEL if DEFAULT_MODEL.exists() else None)
    cls = evaluate_classifier(lab_files, RFClassifier(model_path)) if (model_path and lab_files) else None
    fa_h = det["fa_emitters"] / (det["noise_s"] / 3600) if det["noise_s"] > 0 else None
    result = EvalResult(pd_by_snr_db=det["pd"], false_alarms_per_hour=None if fa_h is None else round(fa_h, 3),
                        accuracy_by_snr_db=cls["acc"] if cls else {}, classes=cls["classes"] if cls else [],
                        confusion=cls["confusion"] if cls else [])
    result.details = {"detection_counts": det["counts"], "noise_s": round(det["noise_s"], 3),
                      "false_alarm_emitters": det["fa_emitters"], "false_alarm_bursts": det["fa_bursts"],
                      "unmatched_bursts_in_busy_captures": det["unmatched_bursts_in_busy_captures"],
                      "model": str(model_path) if model_path else None}
    if cls:
        result.details.update({"accuracy_counts": cls["acc_counts"], "accuracy_snr_ge_10": cls["acc_ge_10"],
                               "labelled": cls["n"], "labelled_snr_ge_10": cls["n_ge_10"],
                               "front_end_found": cls["front_end_found"]})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rf_eval_details.json").write_text(json.dumps(result.details, indent=1))
        _plot_curve(out / "rf_pd_by_snr.png", result["pd_by_snr_db"], "Pd vs SNR (bursts >= 10 ms)")
        if cls:
            _plot_curve(out / "rf_accuracy_by_snr.png", result["accuracy_by_snr_db"], "classifier accuracy vs SNR")
            _plot_confusion(out / "rf_confusion.png", cls["confusion"], cls["classes"])
    return result


def _plot_curve(path: Path, series: dict[str, float], title: str) -> None:
    """A line plot with OpenCV (matplotlib is not a dependency of the edge box)."""
    w, h, m = 520, 320, 50
    img = np.full((h, w, 3), 255, np.uint8)
    keys = [k for k in series if k != "?"]
    cv2.putText(img, title, (m, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (m, m), (w - 20, h - m), (0, 0, 0), 1)
    for v in (0.0, 0.5, 0.9, 1.0):
        y = int(h - m - v * (h - 2 * m))
        cv2.line(img, (m, y), (w - 20, y), (220, 220, 220), 1)
        cv2.putText(img, f"{v:.1f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if not keys:
        cv2.imwrite(str(path), img)
        return
    xs = [float(k) for k in keys]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    pts = [(int(m + (x - x0) / (x1 - x0) * (w - 20 - m)), int(h - m - series[k] * (h - 2 * m))) for x, k in zip(xs, keys, strict=True)]
    for p, q in zip(pts, pts[1:], strict=False):
        cv2.line(img, p, q, (200, 80, 0), 2, cv2.LINE_AA)
    for (px, py), k in zip(pts, keys, strict=True):
        cv2.circle(img, (px, py), 4, (200, 80, 0), -1)
        cv2.putText(img, k, (px - 8, h - m + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "SNR dB", (w // 2, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def _plot_confusion(path: Path, conf: list[list[int]], classes: list[str]) -> None:
    c = np.asarray(conf, np.float64)
    k = len(classes)
    cell, m = 44, 70
    img = np.full((m + k * cell + 10, m + k * cell + 10, 3), 255, np.uint8)
    norm = c / np.maximum(c.sum(axis=1, keepdims=True), 1)
    for i in range(k):
        for j in range(k):
            v = int(255 - 200 * norm[i, j])
            cv2.rectangle(img, (m + j * cell, m + i * cell), (m + (j + 1) * cell, m + (i + 1) * cell), (v, v, 255), -1)
            cv2.putText(img, f"{int(c[i, j])}", (m + j * cell + 6, m + i * cell + 27), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, classes[i][:6], (4, m + i * cell + 27), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, classes[i][:5], (m + i * cell + 2, m - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def format_table(result: dict) -> str:
    lines = ["RF detection (bursts >= 10 ms)", "  SNR dB   Pd"]
    d = getattr(result, "details", {}) or {}
    counts = d.get("detection_counts", {})
    for k, v in result["pd_by_snr_db"].items():
        n = counts.get(k)
        lines.append(f"  {k:>6}   {v:.3f}" + (f"  ({n[0]}/{n[1]})" if n else ""))
    fa = result["false_alarms_per_hour"]
    lines.append(f"False alarms per hour on noise: {'n/a (no emitter-free captures)' if fa is None else f'{fa:.2f}'}"
                 + (f"  ({d['false_alarm_emitters']} in {d['noise_s']:.0f} s of noise)" if "noise_s" in d else ""))
    if result["classes"]:
        lines.append("Classifier accuracy by SNR (bin lower edge)")
        ac = d.get("accuracy_counts", {})
        for k, v in result["accuracy_by_snr_db"].items():
            n = ac.get(k)
            lines.append(f"  {k:>6}   {v:.3f}" + (f"  ({n[0]}/{n[1]})" if n else ""))
        if d.get("accuracy_snr_ge_10") is not None:
            lines.append(f"  SNR >= 10 dB: {d['accuracy_snr_ge_10']:.3f} over {d['labelled_snr_ge_10']} captures")
        cls = result["classes"]
        lines.append("Confusion (rows = truth, columns = predicted)")
        lines.append("  " + " ".join(f"{c[:6]:>6}" for c in ["", *cls]))
        for c, row in zip(cls, result["confusion"], strict=True):
            lines.append("  " + f"{c[:6]:>6} " + " ".join(f"{v:6d}" for v in row))
    else:
        lines.append("Classifier: no model (or no labelled captures): not measured")
    return "\n".join(lines)
