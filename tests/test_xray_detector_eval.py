"""`zastava eval xray` on a small dataset written by the simulator: the published JSON layout, the
table, the PNGs, and the metric arithmetic on hand-made cases."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.xray import CLASSES
from detectors.xray.detector import XrayFinding
from detectors.xray.evaluate import (
    DEFAULT_MODEL,
    average_precision,
    evaluate,
    format_table,
    proportion_ci,
    rate_ci,
    score_detector,
)
from hw_sim.xray.dataset import write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("xray-ds")
    write_dataset(out, count=16, seed=4242, progress=False)
    return out


def test_evaluate_layout_and_plots(dataset, tmp_path):
    res = evaluate(dataset, model=None, out_dir=tmp_path, progress=False)
    who = ["model", "baseline"] if DEFAULT_MODEL.exists() else ["baseline"]
    assert sorted(k for k in res if k not in ("bags", "clean_bags")) == sorted(who)
    labels = [json.loads(line) for line in (dataset / "labels.jsonl").read_text().splitlines()]
    assert res["bags"] == 16 and res["clean_bags"] == sum(1 for r in labels if not r["objects"])
    for w in who:
        assert sorted(res[w]["classes"]) == sorted(CLASSES)
        for c in CLASSES:
            assert set(res[w]["classes"][c]) == {"pd", "pd_ci95", "ap50", "precision"}
            carried = any(o["cls"] == c for r in labels for o in r["objects"])
            pd, ci = res[w]["classes"][c]["pd"], res[w]["classes"][c]["pd_ci95"]
            assert (pd is None) == (not carried) and (pd is None or 0 <= pd <= 1)
            assert (ci is None) == (pd is None) and (ci is None or ci[0] <= pd <= ci[1])
        assert res[w]["false_alarms_per_clean_bag"] >= 0
        lo, hi = res[w]["false_alarms_per_clean_bag_ci95"]
        assert lo <= res[w]["false_alarms_per_clean_bag"] <= hi
        # per hiding place: every labelled object counted once, under its class and place
        by = res[w]["by_place"]
        want: dict = {}
        for r in labels:
            for o in r["objects"]:
                want.setdefault(o["cls"], {}).setdefault(o["place"], 0)
                want[o["cls"]][o["place"]] += 1
        assert {c: {p: v["objects"] for p, v in ps.items()} for c, ps in by.items()} == want
        assert all(0 <= v["pd"] <= 1 for ps in by.values() for v in ps.values())
    for png in ("pr_curves.png", "examples_baseline.png"):
        img = cv2.imread(str(tmp_path / png))
        assert img is not None and img.shape[0] > 100
    table = format_table(res)
    assert "narcotics" in table and "FA/clean bag" in table and "hiding place" in table
    assert "95 % intervals" in table


def test_eval_cli_json(dataset, tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_agent", "eval", "xray", "--data", str(dataset), "--out",
                        str(tmp_path), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res) == {"baseline", "bags", "clean_bags"} | ({"model"} if DEFAULT_MODEL.exists() else set())
    assert res["bags"] == 16


def test_eval_cli_missing_model_is_a_clear_error(dataset, tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge_agent", "eval", "xray", "--data", str(dataset), "--out",
                        str(tmp_path), "--model", str(tmp_path / "none.onnx")],
                       capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert r.returncode != 0 and "model file not found" in r.stderr


def F(cls, score, box):
    return XrayFinding(cls, score, box)


def test_metric_arithmetic():
    truths = [[("narcotics", (10, 10, 50, 50))], [("weapon", (0, 0, 100, 20))], [], []]
    per_bag = [
        [F("narcotics", 0.9, (12, 12, 50, 52)), F("weapon", 0.8, (200, 200, 240, 260))],  # one hit, one false
        [F("weapon", 0.4, (0, 0, 100, 20))],  # below the 0.5 operating threshold: AP counts it, pd does not
        [F("currency", 0.7, (1, 1, 30, 30))],  # a false alarm on a clean bag
        [F("currency", 0.3, (1, 1, 30, 30))],  # below threshold: not an alarm
    ]
    res, _ = score_detector(per_bag, truths, {c: 0.5 for c in CLASSES})
    # one bag of one: found, but the interval says how little one bag shows
    assert res["classes"]["narcotics"] == {"pd": 1.0, "pd_ci95": [0.025, 1.0], "ap50": 1.0, "precision": 1.0}
    assert res["classes"]["weapon"]["pd"] == 0.0
    assert res["classes"]["weapon"]["ap50"] == pytest.approx(0.5)  # ranked after a false positive
    assert res["classes"]["weapon"]["precision"] == 0.0  # the one standing weapon finding is the false one
    assert res["classes"]["currency"] == {"pd": None, "pd_ci95": None, "ap50": None, "precision": 0.0}
    assert res["false_alarms_per_clean_bag"] == 0.5


def test_payload_findings_count_inside_a_standing_hiding_place_only():
    fb, film = (10, 10, 300, 200), (30, 30, 280, 180)
    truths = [[("concealment", fb), ("narcotics", film)], [("concealment", fb)], []]
    per_bag = [[F("concealment", 0.9, fb), F("narcotics", 0.3, film)],  # payload found at 0.3
               [F("concealment", 0.9, fb), F("narcotics", 0.3, film)],  # an empty false bottom: wrong
               [F("narcotics", 0.3, film)]]  # a clean bag: no hiding place, no alarm
    thr = {c: 0.5 for c in CLASSES}
    plain, _ = score_detector(per_bag, truths, thr)
    assert plain["classes"]["narcotics"]["pd"] == 0.0
    res, _ = score_detector(per_bag, truths, thr, payload={"narcotics": 0.25})
    assert res["classes"]["narcotics"]["pd"] == 1.0 and res["classes"]["narcotics"]["precision"] == 0.5
    assert res["false_alarms_per_clean_bag"] == 0.0
    assert res["classes"]["narcotics"]["ap50"] == plain["classes"]["narcotics"]["ap50"]  # ranking unchanged


def test_average_precision_edges():
    assert np.isnan(average_precision([], 0)[0])
    assert average_precision([], 3)[0] == 0.0
    assert average_precision([(0.9, True), (0.8, True)], 4)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("line", ['{"high": ', '[]', '{"low": "x.png"}', '{"high": "missing.png"}',
                                  '{"high": "images/000000_high.png", "objects": [{"cls": "weapon", "box": [1, 2]}]}',
                                  '{"high": "images/000000_high.png", "objects": [{"box": [1, 2, 3, 4]}]}'])
def test_bad_label_lines_are_clear_errors(dataset, tmp_path, line):
    from detectors.xray.evaluate import load_dataset

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "images").symlink_to(dataset / "images")
    (bad / "labels.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:1"):
        list(load_dataset(bad))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_intervals_hold_the_estimate_and_the_textbook_edges(n, data):
    """Clopper-Pearson for detection rates, Garwood for false alarms per clean bag: each holds
    its estimate, narrows as bags are added, and at the edges has the closed forms (all found:
    lower = (alpha/2)^(1/n); no alarm: upper = -ln(alpha/2)/n)."""
    k = data.draw(st.integers(0, n))
    lo, hi = proportion_ci(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    lo4, hi4 = proportion_ci(4 * k, 4 * n)
    assert hi4 - lo4 <= hi - lo + 1e-4
    assert proportion_ci(n, n)[0] == pytest.approx(0.025 ** (1 / n), abs=1e-4)
    assert rate_ci(0, n) == [0.0, pytest.approx(-math.log(0.025) / n, abs=1e-4)]
    lo, hi = rate_ci(k, n)
    assert lo <= k / n <= hi
    assert proportion_ci(0, 0) is None and rate_ci(0, 0) is None
