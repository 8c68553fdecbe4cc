"""The narcotics verifier (detectors/xray/verifier.py): its crops, how the detector applies its
scores, and that a detector never runs with a verifier other than the one it was calibrated with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.xray import CLASSES
from detectors.xray.detector import Candidates, Postprocess, XrayFinding, load_detector
from detectors.xray.evaluate import iou
from detectors.xray.verifier import (
    CHANNELS,
    CROP,
    MAX_VERIFIED,
    MIN_VERIFIED_SCORE,
    VerifierError,
    box_features,
    crop_input,
    crop_window,
    file_sha256,
    to_verify,
)
from hw_sim.xray import physics
from hw_sim.xray.scene import make_bag

MODELS = Path(__file__).resolve().parents[1] / "models" / "xray"
MODEL = MODELS / "zastava-xray.onnx"
VERIFIER = MODELS / "zastava-xray-verifier.onnx"
SHIPPED = pytest.mark.skipif(not VERIFIER.exists(), reason="no shipped verifier (make models)")


def _bag(kind=None, seed=0, **kw):
    return make_bag(np.random.default_rng(seed), kind, **kw)


def test_crop_is_the_box_with_context():
    bag = _bag("narcotics", seed=3, place="under_items")
    box = next(o.box for o in bag.objects if o.cls == "narcotics")
    x = crop_input(bag.high, bag.low, box)
    assert x.shape == (CHANNELS, CROP, CROP) and x.dtype == np.float32 and np.isfinite(x).all()
    # the brick is organic and dense: its centre attenuates more than the window's edge
    assert x[0, CROP // 2, CROP // 2] > x[0, 1, 1]
    assert 5 / 30 < x[2, CROP // 2, CROP // 2] < 9 / 30  # organic Zeff
    X1, Y1, X2, Y2 = crop_window(box, bag.high.shape)
    assert X1 <= box[0] and Y1 <= box[1] and X2 >= box[2] and Y2 >= box[3]


def _block(rim: bool):
    """A 10 x 7 cm organic block on clothes, with or without the 4 mm film of a wrapped brick."""
    layers = np.zeros((len(physics.MATERIALS), 448, 640), np.float32)
    org = physics.MATERIAL_INDEX["organic"]
    layers[org, 60:400, 80:580] = 1.0
    layers[org, 200:247, 300:367] += 6.0
    if rim:
        layers[org, 197:250, 297:370] += 0.25
        layers[org, 200:247, 300:367] -= 0.25
    high, low = physics.render(layers, None)
    return high, low, (300, 200, 367, 247)


def test_the_detail_channel_shows_a_wrapping_rim():
    """What the verifier looks for that the detector's half resolution blurs: a film 3 px wide
    around the block."""
    (h0, l0, box), (h1, l1, _) = _block(False), _block(True)
    plain = crop_input(h0, l0, box)
    wrapped = crop_input(h1, l1, box)
    change = np.abs(wrapped - plain).reshape(CHANNELS, -1).max(axis=1)
    # the film shows in the detail channel at least twice as strongly as in the attenuation
    assert change[3] > 2 * max(change[0], change[1]) and change[3] > 0.01, change


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=4, max_size=4), st.booleans())
def test_crop_of_any_box_is_finite(box, single):
    """Boxes off the image, inverted or empty (a decoder's garbage) still give a finite crop."""
    bag = _BAG
    x = crop_input(bag.high, None if single else bag.low, box)
    assert x.shape == (CHANNELS, CROP, CROP) and np.isfinite(x).all()
    assert np.isfinite(box_features(np.array([box]), np.array([0.5]))).all()


_BAG = _bag("weapon", seed=1)


def _candidates():
    # three narcotics candidates (class 0), one of them below MIN_VERIFIED_SCORE, and a weapon
    # one, already in image pixels
    return Candidates(np.array([[10, 10, 60, 60], [200, 200, 260, 250], [400, 300, 460, 350], [300, 100, 340, 200]],
                               np.float32),
                      np.array([0.9, 0.12, MIN_VERIFIED_SCORE - 0.03, 0.6], np.float32), np.array([0, 0, 0, 1]))


def test_rescored_class_enters_from_the_verified_score_and_stands_by_the_new_score():
    post = Postprocess(list(CLASSES), {"narcotics": 0.5, "weapon": 0.5})
    seen = []

    def flip(boxes, scores):  # the verifier's verdict: the weak candidate is the real one
        seen.append(scores.copy())
        return np.where(scores < 0.5, 0.95, 0.1).astype(np.float32)

    kept = post.select(_candidates(), 640, 448, (0, flip))
    # the candidate below MIN_VERIFIED_SCORE is never shown to the verifier
    assert len(seen) == 1 and sorted(seen[0].tolist()) == pytest.approx([0.12, 0.9])
    got = {(int(c), tuple(b)) for b, c in zip(kept.boxes.tolist(), kept.classes, strict=True)}
    assert got == {(0, (200.0, 200.0, 260.0, 250.0)), (1, (300.0, 100.0, 340.0, 200.0))}
    assert kept.scores.tolist() == sorted(kept.scores.tolist(), reverse=True)
    # without a verifier the weak candidates never reach NMS
    plain = post.select(_candidates(), 640, 448)
    assert plain.scores.tolist() == pytest.approx([0.9, 0.6]) and plain.classes.tolist() == [0, 1]


def test_to_verify_is_what_the_verifier_sees():
    """The candidates the runtime verifies (the benchmark's bare baseline crops these): the
    class, from MIN_VERIFIED_SCORE, the best MAX_VERIFIED."""
    f = [XrayFinding(cls, s, (0, 0, 10, 10), "organic", 7.0, False, None)
         for cls, s in [("narcotics", 0.9), ("weapon", 0.8)] + [("narcotics", 0.5)] * (MAX_VERIFIED + 3)
         + [("narcotics", MIN_VERIFIED_SCORE - 0.01)]]
    got = to_verify(f, "narcotics")
    assert len(got) == MAX_VERIFIED and got[0].score == 0.9 and all(x.cls == "narcotics" for x in got)
    assert to_verify(f[-1:], "narcotics") == []


def test_only_the_best_candidates_of_a_busy_frame_are_verified():
    n = MAX_VERIFIED + 5
    boxes = np.array([[20 * k, 0, 20 * k + 15, 15] for k in range(n)], np.float32)
    c = Candidates(boxes, np.linspace(0.9, 0.1, n).astype(np.float32), np.zeros(n, np.int64))
    asked = []
    kept = Postprocess(list(CLASSES), {"narcotics": 0.5}).select(
        c, 2000, 448, (0, lambda b, s: (asked.append(len(s)), np.ones(len(s), np.float32))[1]))
    assert asked == [MAX_VERIFIED] and len(kept.scores) == MAX_VERIFIED


@SHIPPED
def test_detect_hands_its_verifier_exactly_to_verify():
    """The runtime (Postprocess.select on arrays) and to_verify (on findings: what training
    and the benchmark's bare baseline crop) agree on which candidates the verifier sees."""
    det = load_detector(MODEL, "zastava")
    raw = load_detector(MODEL, "zastava", verifier=False, thresholds={c: 0.05 for c in CLASSES})
    seen = []
    score = det.verifier.score
    det.verifier.score = lambda h, lo, boxes, scores: (seen.append(boxes.copy()), score(h, lo, boxes, scores))[1]
    compared = 0
    for seed in range(8):
        bag = _bag(["narcotics", None, "currency", "concealment"][seed % 4], seed=200 + seed)
        seen.clear()
        det.detect(bag.high, bag.low)
        want = [tuple(f.box) for f in to_verify(raw.detect(bag.high, bag.low), "narcotics")]
        got = [tuple(int(v) for v in np.floor(b[:2])) + tuple(int(v) for v in np.ceil(b[2:]))
               for b in (seen[0] if seen else [])]
        assert got == want, (seed, got, want)
        compared += len(want)
    assert compared > 0


@SHIPPED
def test_shipped_detector_runs_its_verifier_and_it_judges_narcotics_candidates():
    det = load_detector(MODEL, "zastava")
    assert det.verifier is not None and det.verifier.cls == "narcotics"
    meta = json.loads(det.session.get_modelmeta().custom_metadata_map["verifier"])
    assert meta == {"file": VERIFIER.name, "sha256": file_sha256(VERIFIER)}
    raw = load_detector(MODEL, "zastava", verifier=False, thresholds={c: 0.05 for c in CLASSES})
    right, wrong = [], []
    for seed in range(12):
        bag = _bag("narcotics", seed=100 + seed)
        truth = np.array([o.box for o in bag.objects if o.cls == "narcotics"], np.float64)
        found = to_verify(raw.detect(bag.high, bag.low), "narcotics")
        if not found:
            continue
        boxes = np.array([f.box for f in found], np.float32)
        p = det.verifier.score(bag.high, bag.low, boxes, np.array([f.score for f in found], np.float32))
        hit = iou(boxes.astype(np.float64), truth).max(axis=1) >= 0.3
        right += p[hit].tolist()
        wrong += p[~hit].tolist()
    assert right and wrong
    assert np.median(right) > np.median(wrong) + 0.3, (np.median(right), np.median(wrong))


def _copy_pair(tmp_path: Path) -> Path:
    shutil.copy(MODEL, tmp_path / MODEL.name)
    shutil.copy(VERIFIER, tmp_path / VERIFIER.name)
    return tmp_path / MODEL.name


@SHIPPED
def test_a_missing_verifier_is_refused_at_load(tmp_path):
    shutil.copy(MODEL, tmp_path / MODEL.name)
    with pytest.raises(VerifierError, match="verifier file not found"):
        load_detector(tmp_path / MODEL.name, "zastava")
    # the detector alone still loads when asked to
    assert load_detector(tmp_path / MODEL.name, "zastava", verifier=False).verifier is None


@SHIPPED
def test_another_verifier_than_the_calibrated_one_is_refused(tmp_path):
    path = _copy_pair(tmp_path)
    m = onnx.load(str(tmp_path / VERIFIER.name))
    m.metadata_props.add(key="note", value="retrained elsewhere")
    onnx.save(m, str(tmp_path / VERIFIER.name))
    with pytest.raises(VerifierError, match="sha256 differs"):
        load_detector(path, "zastava")


@SHIPPED
def test_a_verifier_of_the_wrong_layout_is_refused(tmp_path):
    path = _copy_pair(tmp_path)
    # the detector itself where the verifier should be: one input, outputs heat and ltrb
    shutil.copy(MODEL, tmp_path / VERIFIER.name)
    m = onnx.load(str(path))
    for e in m.metadata_props:
        if e.key == "verifier":
            e.value = json.dumps({"file": VERIFIER.name, "sha256": file_sha256(tmp_path / VERIFIER.name)})
    onnx.save(m, str(path))
    with pytest.raises(VerifierError, match="inputs 'crop', 'box' and output 'p'"):
        load_detector(path, "zastava")
    for bad in ('{"file": "../x.onnx", "sha256": "0"}', "not json"):
        for e in m.metadata_props:
            if e.key == "verifier":
                e.value = bad
        onnx.save(m, str(path))
        with pytest.raises(VerifierError, match="metadata 'verifier'"):
            load_detector(path, "zastava")
