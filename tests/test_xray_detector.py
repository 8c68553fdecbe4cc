"""The X-ray detector on simulator bags: preprocessing physics, bad input, the physics baseline and
the shipped model (a planted narcotics block is found; a clean bag stays quiet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from detectors.xray import CLASSES
from detectors.xray.detector import MIN_CANDIDATE_SCORE, Candidates, Postprocess, XrayFinding, load_detector
from detectors.xray.evaluate import iou, standing
from detectors.xray.preprocess import (
    INORGANIC,
    METAL,
    NONE,
    ORGANIC,
    WHITE,
    attenuation,
    materials,
    model_input,
    pseudocolor,
)
from hw_sim.xray import physics
from hw_sim.xray.scene import make_bag

MODEL = Path(__file__).resolve().parents[1] / "models" / "xray" / "zastava-xray.onnx"


def slabs(noise: bool = True):
    """Three 2 cm-ish slabs side by side on open beam: organic, aluminium, steel, rendered by the
    simulator's physics (Beer-Lambert at two energies, Poisson noise, blur)."""
    layers = np.zeros((len(physics.MATERIALS), 120, 300), np.float32)
    for k, (name, areal) in enumerate((("organic", 3.0), ("aluminium", 2.7), ("steel", 3.9))):
        layers[physics.MATERIAL_INDEX[name], 20:100, 20 + 90 * k:90 + 90 * k] = areal
    return physics.render(layers, np.random.default_rng(0) if noise else None)


def test_attenuation_is_minus_log_transmission():
    img = np.array([[WHITE, WHITE // 2, 1, 0]] * 16 * 4, np.uint16).reshape(16, 16)
    mu = attenuation(img)
    assert mu[0, 0] == 0.0
    assert mu[0, 1] == pytest.approx(np.log(2), rel=1e-4)
    assert np.isfinite(mu).all()
    # every uint16 value against the float64 formula: OpenCV's float32 log agrees to 1e-6
    every = np.arange(WHITE + 1, dtype=np.uint16).reshape(256, 256)
    exact = -np.log(np.maximum(every.astype(np.float64), 1.0) / WHITE)
    assert np.abs(attenuation(every) - exact).max() < 2e-6


def test_material_classes_and_zeff_from_dual_energy():
    high, low = slabs()
    m = materials(high, low)
    centre = lambda k: (slice(40, 80), slice(35 + 90 * k, 75 + 90 * k))  # noqa: E731
    for k, want, (zlo, zhi) in ((0, ORGANIC, (5, 9)), (1, INORGANIC, (10, 17)), (2, METAL, (20, 40))):
        mats = m.material[centre(k)]
        assert (mats == want).mean() > 0.95, (k, np.bincount(mats.ravel(), minlength=4))
        assert zlo <= float(np.median(m.zeff[centre(k)])) <= zhi
    assert (m.material[0:10] == NONE).all()  # open beam above the slabs


def test_pseudocolor_hues():
    high, low = slabs()
    bgr = pseudocolor(high, low).astype(int)
    assert bgr.shape == (*high.shape, 3) and pseudocolor(high, low).dtype == np.uint8
    b, g, r = (bgr[40:80, 35:75, i].mean() for i in range(3))
    assert r > g > b  # organic: orange
    b, g, r = (bgr[40:80, 125:165, i].mean() for i in range(3))
    assert g > r and g > b  # inorganic: green
    b, g, r = (bgr[40:80, 215:255, i].mean() for i in range(3))
    assert b > r and b > g  # metal: blue
    assert (bgr[:10] > 240).all()  # open beam is white
    # density as brightness: a thicker organic slab is darker
    layers = np.zeros((len(physics.MATERIALS), 40, 80), np.float32)
    layers[0, :, :40], layers[0, :, 40:] = 1.0, 4.0
    h, lo = physics.render(layers, None)
    img = pseudocolor(h, lo).astype(int).sum(axis=2)
    assert img[20, 10] > img[20, 60]


def test_model_input_shape_and_single_energy():
    high, low = slabs()
    x = model_input(high, low, (60, 150))
    assert x.shape == (1, 3, 60, 150) and x.dtype == np.float32 and np.isfinite(x).all()
    x1 = model_input(high, None, (60, 150))
    assert np.array_equal(x1[0, 0], x1[0, 1]) and not x1[0, 2].any()


BAD = [
    (np.zeros((448, 640), np.float32), None, "uint16"),
    (np.full((448, 640), np.nan), None, "NaN"),
    (np.zeros((448, 640, 3), np.uint16), None, "2-D"),
    (np.zeros((448, 640), np.uint16), np.zeros((448, 600), np.uint16), "differ in shape"),
    (np.zeros((0, 0), np.uint16), None, "too small"),
    (np.zeros((448, 640), np.uint16), np.zeros((448, 640), np.int32), "low: expected uint16"),
    ([[1, 2], [3, 4]], None, "numpy array"),
    (None, None, "missing"),
]


@pytest.mark.parametrize(("high", "low", "msg"), BAD)
def test_bad_input_is_a_clear_value_error(high, low, msg):
    det = load_detector("physics")
    with pytest.raises(ValueError, match=msg):
        det.detect(high, low)
    with pytest.raises(ValueError, match=msg):
        pseudocolor(high, low)


@pytest.mark.skipif(not MODEL.exists(), reason="the shipped model models/xray/zastava-xray.onnx is not built yet")
@pytest.mark.parametrize(("high", "low", "msg"), BAD)
def test_bad_input_shipped_model(high, low, msg):
    det = load_detector(MODEL, "zastava")
    with pytest.raises(ValueError, match=msg):
        det.detect(high, low)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    high=hnp.arrays(st.sampled_from([np.uint16, np.uint8, np.float32, np.int64]),
                    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40)),
    single=st.booleans(),
)
def test_fuzz_detect_never_crashes(high, single):
    """Random arrays of any dtype and shape: a list of findings or a ValueError, nothing else."""
    det = load_detector("physics")
    low = None if single else high
    try:
        out = det.detect(high, low)
    except ValueError:
        return
    assert isinstance(out, list)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(16, 64), st.integers(16, 64))
def test_fuzz_random_uint16_images(seed, h, w):
    rng = np.random.default_rng(seed)
    high = rng.integers(0, WHITE + 1, (h, w), dtype=np.uint16)
    low = rng.integers(0, WHITE + 1, (h, w), dtype=np.uint16)
    for f in load_detector("physics", default_threshold=0.0).detect(high, low):
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and f.cls in CLASSES


def test_thresholds_validated():
    with pytest.raises(ValueError, match="unknown classes"):
        load_detector("physics", thresholds={"drugs": 0.5})


def _hits(findings, bag, cls):
    boxes = [o.box for o in bag.objects if o.cls == cls]
    mine = [f.box for f in findings if f.cls == cls]
    return bool(boxes and mine and (iou(np.array(mine), np.array(boxes)) >= 0.3).any())


def plain_bag(rng: np.random.Generator, block: bool) -> tuple[np.ndarray, np.ndarray]:
    """A soft bag of folded clothes, rendered by the simulator's physics, with or without a
    planted 4 cm brick of powder (~1.3 kg): the case the physics baseline is built for."""
    import cv2

    layers = np.zeros((len(physics.MATERIALS), 448, 640), np.float32)
    org = np.zeros((448, 640), np.float32)
    org[80:380, 100:560] += 0.4  # the bag's fabric
    for _ in range(8):  # folded clothes: soft ellipses
        c = (int(rng.integers(150, 500)), int(rng.integers(120, 340)))
        ax = (int(rng.integers(30, 90)), int(rng.integers(20, 60)))
        blob = np.zeros_like(org)
        cv2.ellipse(blob, c, ax, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        org += cv2.GaussianBlur(blob, (0, 0), 8) * float(rng.uniform(0.3, 1.0))
    if block:
        org[200:260, 300:380] += 5.0
    layers[physics.MATERIAL_INDEX["organic"]] = org
    return physics.render(layers, rng)


def test_baseline_finds_a_planted_block_and_stays_quiet_on_clean_bags():
    rng = np.random.default_rng(7)
    det = load_detector("physics")
    for _ in range(3):
        fs = det.detect(*plain_bag(rng, block=True))
        narc = [f for f in fs if f.cls == "narcotics"]
        assert len(narc) == 1 and narc[0].material == "organic"
        assert iou(np.array([narc[0].box]), np.array([(300, 200, 380, 260)]))[0, 0] > 0.8
        assert det.detect(*plain_bag(rng, block=False)) == []


def test_baseline_on_simulator_bags_runs_and_describes():
    """On full simulator bags the baseline is weak (that is what the evaluation shows); here only
    that every finding is well-formed."""
    rng = np.random.default_rng(5)
    det = load_detector("physics")
    for cls in (*CLASSES, None):
        bag = make_bag(rng, cls)
        for f in det.detect(bag.high, bag.low):
            assert f.cls in CLASSES and 0 <= f.score <= 1
            assert f.material in ("none", "organic", "inorganic", "metal")
            assert f.concealed == (f.concealment_reason is not None)


SHIPPED = pytest.mark.skipif(not MODEL.exists(), reason="models/xray/zastava-xray.onnx is not built yet")


@SHIPPED
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(16, 301), st.integers(16, 301), st.booleans())
def test_fuzz_shipped_model_on_any_size(seed, h, w, single):
    """Our model's path bins 2 x 2 and describes on that grid: odd sizes leave a ragged edge and
    boxes that reach the last pixel. At a zero threshold (every candidate described), findings
    stay inside the image with a valid description, whatever the size."""
    rng = np.random.default_rng(seed)
    bag = make_bag(rng, CLASSES[seed % len(CLASSES)])  # real objects, cut anywhere by the crop
    y0, x0 = int(rng.integers(0, 448 - h + 1)), int(rng.integers(0, 640 - w + 1))
    high = np.ascontiguousarray(bag.high[y0:y0 + h, x0:x0 + w])
    low = None if single else np.ascontiguousarray(bag.low[y0:y0 + h, x0:x0 + w])
    det = load_detector(MODEL, "zastava", thresholds={c: 0.0 for c in CLASSES})
    found = det.detect(high, low)
    for f in found:
        x1, y1, x2, y2 = f.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and f.cls in CLASSES
        assert f.material in ("none", "organic", "inorganic", "metal") and np.isfinite(f.zeff)
        assert f.concealed == (f.concealment_reason is not None)


@SHIPPED
def test_shipped_model_stays_quiet_on_clean_bags():
    """Clean bags drawn with a seed never used in training (1) or calibration (1001)."""
    det = load_detector(MODEL, "zastava", threads=1)
    assert det.class_names == list(CLASSES)
    rng = np.random.default_rng(424242)
    alarms = sum(len(det.detect(b.high, b.low)) for b in (make_bag(rng, None) for _ in range(12)))
    assert alarms <= 1


@SHIPPED
@pytest.mark.parametrize("weapon", [False, True])
def test_shipped_model_finds_contraband_where_its_card_says_it_does(weapon):
    """The hiding places where the model card reports its best detection (narcotics in bottles and
    double walls, 0.77 and 0.85; weapons in the lining, electronics and under items, 0.97-1.0):
    a regression here means a worse model shipped."""
    det = load_detector(MODEL, "zastava", threads=1)
    rng = np.random.default_rng(424244)
    cls, places = ("weapon", ("lining", "electronics", "under_items")) if weapon else ("narcotics", ("bottle", "double_wall"))
    found = 0
    for i in range(12):
        bag = make_bag(rng, cls, place=places[i % len(places)])
        found += _hits(det.detect(bag.high, bag.low), bag, cls)
    assert found >= 10


@SHIPPED
def test_shipped_model_finds_planted_narcotics():
    """11 of 12 bags of a fixed random draw, every hiding place possible (run 6 alone found fewer;
    with its verifier it finds these). The detection rate itself is `zastava eval xray`'s to
    measure: 0.84 on the held-out set, under the 0.95 target (MODEL_CARD.md)."""
    det = load_detector(MODEL, "zastava", threads=1)
    rng = np.random.default_rng(424243)
    found = 0
    for _ in range(12):
        bag = make_bag(rng, "narcotics")
        found += _hits(det.detect(bag.high, bag.low), bag, "narcotics")
    assert found >= 11


def _scene(extra) -> tuple[np.ndarray, np.ndarray]:
    """A parcel of clothes (organic 1 g/cm^2) with a 60 x 80 px powder brick at rows 200-260,
    columns 300-380, and whatever `extra` adds around it."""
    layers = np.zeros((len(physics.MATERIALS), 448, 640), np.float32)
    org = physics.MATERIAL_INDEX["organic"]
    layers[org, 60:400, 80:580] = 1.0
    layers[org, 200:260, 300:380] += 5.0
    extra(layers)
    return physics.render(layers, np.random.default_rng(1))


def _describe(high, low):
    from detectors.xray.detector import Candidates, describe

    c = Candidates(np.array([[300, 200, 380, 260]], np.float32), np.array([0.9], np.float32), np.array([0]))
    return describe(c, list(CLASSES), materials(high, low))[0]


def test_concealment_from_the_image():
    loose = _describe(*_scene(lambda layers: None))
    assert not loose.concealed and loose.concealment_reason is None and loose.material == "organic"

    def in_a_tin(layers):  # an aluminium case (electronics housing) around the brick
        layers[physics.MATERIAL_INDEX["aluminium"], 185:275, 285:395] += 1.5

    boxed = _describe(*_scene(in_a_tin))
    assert boxed.concealed and "electronics" in boxed.concealment_reason

    def under_books(layers):  # a thick layer of paper over and around it
        layers[physics.MATERIAL_INDEX["organic"], 170:290, 270:410] += 8.0

    buried = _describe(*_scene(under_books))
    assert buried.concealed and "clutter" in buried.concealment_reason

    def at_the_wall(layers):  # the bag ends right at the brick's edge: it sits in the lining
        layers[:, :, 385:] = 0
        layers[:, :, 372:385] += 0.5

    lining = _describe(*_scene(at_the_wall))
    assert lining.concealed and "lining" in lining.concealment_reason


def test_a_finding_inside_a_compartment_finding_says_so():
    """The officer's console shows why a narcotics finding is concealed: it lies in the false
    bottom the model also found (the same containment rule as the payload thresholds)."""
    from detectors.xray.detector import describe

    high, low = _scene(lambda layers: None)
    c = Candidates(np.array([[300, 200, 380, 260], [90, 70, 570, 390]], np.float32), np.array([0.3, 0.9], np.float32),
                   np.array([CLASSES.index("narcotics"), CLASSES.index("concealment")]))
    brick, panel = describe(c, list(CLASSES), materials(high, low))
    assert brick.concealed and "false bottom" in brick.concealment_reason
    assert panel.concealed and panel.concealment_reason.startswith("structural")


_boxes = st.tuples(st.integers(0, 150), st.integers(0, 150), st.integers(5, 120), st.integers(5, 120)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_boxes, st.integers(5, 100).map(lambda v: v / 100), st.integers(0, len(CLASSES) - 1)),
                min_size=0, max_size=25),
       st.dictionaries(st.sampled_from([c for c in CLASSES if c != "concealment"]), st.floats(0.1, 0.6), max_size=3))
def test_what_runs_is_what_is_measured(cands, payload):
    """The agent's post-processing (thresholds and payload thresholds, then NMS) keeps exactly the
    findings that evaluation and calibration count as standing among all candidates: the figures
    in the model card are the behaviour in the field."""
    thr = {"narcotics": 0.45, "weapon": 0.375, "currency": 0.3, "concealment": 0.5}
    c = Candidates(np.array([b for b, _, _ in cands], np.float32).reshape(-1, 4),
                   np.array([s for _, s, _ in cands], np.float32), np.array([k for _, _, k in cands], np.int64))
    live = Postprocess(list(CLASSES), thr, payload_thresholds=payload).select(c, 400, 400)
    every = Postprocess(list(CLASSES), {k: MIN_CANDIDATE_SCORE for k in CLASSES}).select(c, 400, 400)
    as_findings = [XrayFinding(CLASSES[int(k)], float(s), tuple(int(v) for v in b))
                   for b, s, k in zip(every.boxes, every.scores, every.classes, strict=True)]
    measured = {(f.cls, f.score, f.box) for f in standing(as_findings, thr, payload)}
    ran = {(CLASSES[int(k)], float(s), tuple(int(v) for v in b))
           for b, s, k in zip(live.boxes, live.scores, live.classes, strict=True)}
    assert ran == measured


def test_payload_threshold_admits_a_weak_finding_only_inside_a_standing_hiding_place():
    thr = {"narcotics": 0.45, "weapon": 0.45, "currency": 0.45, "concealment": 0.5}
    post = Postprocess(list(CLASSES), thr, payload_thresholds={"narcotics": 0.25})
    N, C = CLASSES.index("narcotics"), CLASSES.index("concealment")

    def kept(fb_score, film_box):
        c = Candidates(np.array([(10, 10, 300, 200), film_box], np.float32), np.array([fb_score, 0.3], np.float32),
                       np.array([C, N]))
        return [CLASSES[int(k)] for k in post.select(c, 400, 400).classes]

    assert kept(0.9, (30, 30, 280, 180)) == ["concealment", "narcotics"]  # inside a standing false bottom
    assert kept(0.4, (30, 30, 280, 180)) == []  # the false bottom itself is under its threshold
    assert kept(0.9, (200, 100, 390, 300)) == ["concealment"]  # mostly outside it
    bare = Postprocess(list(CLASSES), thr)
    c = Candidates(np.array([(10, 10, 300, 200), (30, 30, 280, 180)], np.float32), np.array([0.9, 0.3], np.float32),
                   np.array([C, N]))
    assert [CLASSES[int(k)] for k in bare.select(c, 400, 400).classes] == ["concealment"]  # no payload rule: 0.45
