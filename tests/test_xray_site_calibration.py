"""`zastava calibrate xray`: a site chooses the X-ray detector's operating point for its own
false-alarm budget, on labelled bags, for our model or its own YOLO export; `zastava eval xray
--config` then measures exactly that point. Real processes on a simulator dataset."""

from __future__ import annotations

import json

import pytest

from detectors.xray import CLASSES
from detectors.xray.evaluate import DEFAULT_MODEL
from hw_sim.xray.dataset import write_dataset
from tests.conftest import run_zastava
from tests.test_xray_detector_decoders import constant_model, yolo_tensor


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("xray-site")
    write_dataset(out, count=120, seed=777, progress=False)
    return out


def calibrate(*args: str) -> dict:
    r = run_zastava("calibrate", "xray", *args, "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def evaluate(dataset, config, out) -> dict:
    r = run_zastava("eval", "xray", "--data", str(dataset), "--config", str(config), "--out", str(out), "--json",
                    timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="no shipped model")
def test_the_chosen_point_is_what_eval_measures_with_the_printed_config(dataset, tmp_path):
    res = calibrate("--data", str(dataset), "--budget", "0.05")
    labels = [json.loads(line) for line in (dataset / "labels.jsonl").read_text().splitlines()]
    assert res["bags"] == 120 and res["clean_bags"] == sum(1 for r in labels if not r["objects"])
    assert res["classes"] == list(CLASSES)
    chosen, now = res["chosen"], res["now"]
    assert chosen["fa_per_clean_bag"] <= 0.05
    # the point in force is the model's own, from its metadata
    assert now["thresholds"]["narcotics"] == 0.7 and now["payload_thresholds"] == {"narcotics": 0.1}
    cfg = tmp_path / "site.toml"
    cfg.write_text(res["config"] + "\n")
    assert 'model = "' in res["config"] and "thresholds = {" in res["config"]
    ev = evaluate(dataset, cfg, tmp_path / "ev")
    assert ev["model"]["false_alarms_per_clean_bag"] == chosen["fa_per_clean_bag"]
    assert {c: ev["model"]["classes"][c]["pd"] for c in CLASSES} == {c: chosen["classes"][c]["pd"] for c in CLASSES}
    # a budget of none: no finding may stand on a clean bag, and the config says so
    strict = calibrate("--data", str(dataset), "--budget", "0")
    assert strict["chosen"]["fa_per_clean_bag"] == 0.0
    cfg.write_text(strict["config"] + "\n")
    assert evaluate(dataset, cfg, tmp_path / "ev0")["model"]["false_alarms_per_clean_bag"] == 0.0
    # the model's payload threshold, when the strict point drops it, is switched off explicitly
    if "narcotics" not in strict["chosen"]["payload_thresholds"]:
        assert "narcotics = 1" in strict["config"]


def test_a_users_yolo_export_is_calibrated_by_its_config(dataset, tmp_path):
    """A YOLO export with its own classes, one the data never labels: it alarms on every bag at a
    fixed score, so a budget of none puts each class's threshold above that score."""
    rows = [((100, 80, 220, 200), 0, 0.6), ((300, 200, 420, 330), 1, 0.3)]
    model = constant_model(tmp_path / "own.onnx", yolo_tensor(rows, nc=2))
    cfg = tmp_path / "own.toml"
    cfg.write_text(f'[xray_detector]\nmodel = "{model}"\nlayout = "yolo"\nclass_names = ["narcotics", "knife"]\n')
    res = calibrate("--data", str(dataset), "--config", str(cfg), "--budget", "0")
    assert res["classes"] == ["narcotics", "knife"] and res["not_in_data"] == ["knife"]
    # in force: the config's default 0.5 (a YOLO export carries no thresholds): narcotics alarms
    assert res["now"]["classes"]["narcotics"]["fa_per_clean_bag"] == 1.0
    assert res["chosen"]["thresholds"]["narcotics"] > 0.6 and res["chosen"]["thresholds"]["knife"] > 0.3
    assert res["chosen"]["fa_per_clean_bag"] == 0.0 and res["payload"] == {}
    assert 'layout = "yolo"' in res["config"] and 'class_names = ["narcotics", "knife"]' in res["config"]
    site = tmp_path / "site.toml"
    site.write_text(res["config"] + "\n")
    ev = evaluate(dataset, site, tmp_path / "ev")
    assert ev["model"]["false_alarms_per_clean_bag"] == 0.0
    assert sorted(ev["model"]["classes"]) == ["knife", "narcotics"] and ev["model"]["classes"]["knife"]["pd"] is None


@pytest.mark.parametrize("args, message", [
    (["--budget", "-1"], "--budget must be"),
    (["--weights", "narcotics"], "expected class=weight"),
    (["--model", "/nonexistent.onnx"], "model file not found"),
])
def test_bad_arguments_are_refused_with_the_reason(dataset, args, message):
    r = run_zastava("calibrate", "xray", "--data", str(dataset), *args, timeout=120)
    assert r.returncode == 2 and message in r.stderr


def test_data_without_clean_bags_is_refused(tmp_path):
    """The budget is per clean bag: a dataset of contraband only cannot set it."""
    write_dataset(tmp_path, count=6, seed=5, progress=False, contraband_share=1.0)
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert all(r["objects"] for r in labels)
    r = run_zastava("calibrate", "xray", "--data", str(tmp_path), timeout=120)
    assert r.returncode == 2 and "no clean bags" in r.stderr and "Traceback" not in r.stderr


def test_a_garbled_label_line_is_named(dataset, tmp_path):
    """A site's own labels, hand-written: the bad line is named, nothing is half-chosen."""
    lines = (dataset / "labels.jsonl").read_text().splitlines()
    (tmp_path / "images").symlink_to(dataset / "images")
    lines[3] = lines[3][: len(lines[3]) // 2]  # truncated mid-record
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n")
    r = run_zastava("calibrate", "xray", "--data", str(tmp_path), timeout=120)
    assert r.returncode == 2 and "labels.jsonl:4: bad label line" in r.stderr and "thresholds" not in r.stdout
