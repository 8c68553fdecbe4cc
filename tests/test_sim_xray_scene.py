"""The simulated scanner's physics, scenes and datasets: ground truth matches pixels, seeds repeat."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_sim.xray.dataset import bag_rng, write_dataset
from hw_sim.xray.physics import (
    MATERIAL_INDEX,
    MATERIALS,
    XRAY_WHITE,
    classify_ratio,
    dual_energy_ratio,
    render,
    transmission,
)
from hw_sim.xray.scene import CLASSES, PLACES, choose_contraband, make_bag

H, W = 448, 640


def _plate(material: str, areal: float) -> np.ndarray:
    layers = np.zeros((len(MATERIALS), 64, 64), np.float32)
    layers[MATERIAL_INDEX[material], 16:48, 16:48] = areal
    return layers


@pytest.mark.parametrize(("material", "areal", "expect"), [
    ("organic", 5.0, "organic"), ("water", 8.0, "organic"), ("aluminium", 2.7, "inorganic"),
    ("steel", 3.9, "metal"), ("lead", 0.6, "metal"),
])
def test_dual_energy_ratio_separates_materials(material, areal, expect):
    high, low = render(_plate(material, areal), np.random.default_rng(0))
    r = np.nanmean(dual_energy_ratio(high, low)[20:44, 20:44])
    assert classify_ratio(float(r)) == expect, r
    # outside the plate is open beam, inside follows Beer-Lambert at each energy
    assert high[2, 2] > 0.97 * XRAY_WHITE
    m = MATERIALS[MATERIAL_INDEX[material]]
    t_high = transmission(high[24:40, 24:40]).mean()
    assert abs(t_high - np.exp(-m.mu_high * areal)) < 0.02 + 0.05 * np.exp(-m.mu_high * areal)


def test_noise_free_render_is_beer_lambert():
    high, low = render(_plate("organic", 4.0), None)
    assert abs(transmission(low[32:33, 32:33])[0, 0] - np.exp(-0.195 * 4)) < 1e-3
    assert abs(transmission(high[32:33, 32:33])[0, 0] - np.exp(-0.160 * 4)) < 1e-3
    assert high.dtype == np.uint16 and high[0, 0] == XRAY_WHITE


def _without(bag, cls: str):
    """Noise-free renders of the bag as it is and with the `cls` contraband taken out."""
    assert bag.layers is not None and bag.contraband_layers is not None
    return render(bag.layers, None), render(bag.layers - bag.contraband_layers[cls], None)


@pytest.mark.parametrize("place", PLACES["narcotics"])
def test_hidden_narcotics_raise_attenuation_and_read_organic(place):
    for seed in range(3):
        bag = make_bag(np.random.default_rng(seed), "narcotics", place=place, keep_layers=True)
        gt = next(o for o in bag.objects if o.cls == "narcotics")
        assert gt.place == place and 0.02 < gt.attrs["mass_kg"] < 3.5
        core = cv2.erode(gt.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert core.sum() > 50
        (h1, l1), (h0, l0) = _without(bag, "narcotics")
        # the emitted (noisy) image is darker inside the mask than the same bag without the block
        for img, clean in ((bag.low, l0), (bag.high, h0)):
            rise = -np.log(transmission(img[core])).mean() + np.log(transmission(clean[core])).mean()
            assert rise > 0.03, (place, seed, rise)
        # and what the block adds has the dual-energy ratio of an organic material
        dl = np.log(transmission(l0[core])) - np.log(transmission(l1[core]))
        dh = np.log(transmission(h0[core])) - np.log(transmission(h1[core]))
        assert classify_ratio(float(dl.sum() / dh.sum())) == "organic"
        # away from its mask (anti-aliased rim + detector blur) the block changed nothing
        outside = ~cv2.dilate(gt.mask.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
        assert np.abs(l1[outside].astype(int) - l0[outside]).max() <= 1


def test_weapon_reads_metal_and_currency_organic():
    for seed in range(3):
        bag = make_bag(np.random.default_rng(seed), "weapon", keep_layers=True)
        gt = bag.objects[0]
        (h1, l1), (h0, l0) = _without(bag, "weapon")
        ok = gt.mask & (l1 > 200) & (h1 > 200)  # not saturated, so the ratio means something
        dl = np.log(transmission(l0[ok])) - np.log(transmission(l1[ok]))
        dh = np.log(transmission(h0[ok])) - np.log(transmission(h1[ok]))
        assert classify_ratio(float(dl.sum() / dh.sum())) == "metal", gt.subtype
        bag = make_bag(np.random.default_rng(seed), "currency", place="loose", keep_layers=True)
        (h1, l1), (h0, l0) = _without(bag, "currency")
        m = bag.objects[0].mask
        dl = np.log(transmission(l0[m])) - np.log(transmission(l1[m]))
        dh = np.log(transmission(h0[m])) - np.log(transmission(h1[m]))
        assert classify_ratio(float(dl.sum() / dh.sum())) == "organic"


@pytest.mark.parametrize("cls", CLASSES)
def test_ground_truth_boxes_are_their_masks(cls):
    for place in PLACES[cls]:
        bag = make_bag(np.random.default_rng(11), cls, place=place)
        assert bag.high.shape == bag.low.shape == (H, W) and bag.high.dtype == np.uint16
        assert cls in bag.classes
        for gt in bag.objects:
            ys, xs = np.nonzero(gt.mask)
            assert gt.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert gt.cls in CLASSES and gt.place
            assert json.loads(json.dumps(gt.as_json()))["box"] == list(gt.box)


def test_clean_bags_have_no_objects_and_contents():
    for seed in range(5):
        bag = make_bag(np.random.default_rng(seed))
        assert bag.objects == [] and bag.contents
        assert (bag.high < XRAY_WHITE * 0.9).mean() > 0.05  # there is a bag in the picture


def test_same_seed_same_bag_other_seed_other_bag():
    a = make_bag(np.random.default_rng(42), "narcotics")
    b = make_bag(np.random.default_rng(42), "narcotics")
    c = make_bag(np.random.default_rng(43), "narcotics")
    assert a.bag_id == b.bag_id and np.array_equal(a.high, b.high) and np.array_equal(a.low, b.low)
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    assert not np.array_equal(a.high, c.high)


def test_bad_requests_are_refused_clearly():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown contraband"):
        make_bag(rng, "explosives")
    with pytest.raises(ValueError, match="place"):
        make_bag(rng, "weapon", place="bottle")
    with pytest.raises(ValueError, match="kind"):
        make_bag(rng, kind="crate")
    with pytest.raises(ValueError, match="unknown class"):
        choose_contraband(rng, 0.5, {"gold": 1.0})
    with pytest.raises(ValueError):
        choose_contraband(rng, 0.5, {"weapon": 0.0})


def test_contraband_share_and_mix():
    rng = np.random.default_rng(5)
    picks = [choose_contraband(rng, 0.3, {"weapon": 1, "currency": 3}) for _ in range(4000)]
    share = sum(p is not None for p in picks) / len(picks)
    assert 0.27 < share < 0.33
    cur = picks.count("currency") / max(1, picks.count("weapon"))
    assert 2.4 < cur < 3.7 and "narcotics" not in picks


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), cls=st.sampled_from((None, *CLASSES)),
       rows=st.sampled_from((64, 96, 224, 448, 1024)), cols=st.sampled_from((64, 137, 320, 640, 2000)),
       kind=st.sampled_from((None, "suitcase", "backpack", "parcel")))
def test_any_seed_and_size_makes_a_valid_bag(seed, cls, rows, cols, kind):
    shape = (rows, cols)
    bag = make_bag(np.random.default_rng(seed), cls, kind=kind, shape=shape)
    assert bag.high.shape == shape and bag.low.shape == shape
    # the field of view stays 67 x 96 cm; pixels get oblong when the aspect differs
    assert bag.pixel_spacing_mm == pytest.approx((1.5 * 448 / rows, 1.5 * 640 / cols))
    for gt in bag.objects:
        x1, y1, x2, y2 = gt.box
        assert 0 <= x1 < x2 <= shape[1] and 0 <= y1 < y2 <= shape[0] and gt.mask.any()


def test_dataset_is_byte_identical_and_matches_its_labels(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(a, count=8, seed=3, progress=False, contraband_share=0.75)
    write_dataset(b, count=8, seed=3, progress=True, contraband_share=0.75, workers=2)  # same bytes
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    lines = [json.loads(x) for x in (a / "labels.jsonl").read_text().splitlines()]
    assert [r["index"] for r in lines] == list(range(8))
    meta = json.loads((a / "dataset.json").read_text())
    assert meta["seed"] == 3 and meta["count"] == 8 and meta["version"]
    assert meta["tally"]["bags"]["clean"] == sum(1 for r in lines if not r["objects"])
    for r in lines:
        high = cv2.imread(str(a / r["high"]), cv2.IMREAD_UNCHANGED)
        assert high.dtype == np.uint16 and high.shape == (H, W)
        # a bag regenerated alone from (seed, index) is the one on disk
        for o in r["objects"]:
            mask = cv2.imread(str(a / o["mask"]), cv2.IMREAD_UNCHANGED) > 0
            ys, xs = np.nonzero(mask)
            assert o["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert o["cls"] in CLASSES
    # a different seed gives different images
    write_dataset(tmp_path / "c", count=2, seed=4, progress=False)
    assert (tmp_path / "c/images/000000_high.png").read_bytes() != (a / "images/000000_high.png").read_bytes()


def test_dataset_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_dataset(tmp_path, count=-1, seed=0, progress=False)
    with pytest.raises(ValueError):
        write_dataset(tmp_path, count=1, seed=0, progress=False, contraband_share=1.5)
    with pytest.raises(ValueError):
        write_dataset(tmp_path, count=1, seed=0, progress=False, workers=0)
    with pytest.raises(ValueError):
        bag_rng(-1, 0)


def test_noise_is_photon_noise_and_streaks_follow_detector_elements():
    """Under a uniform plate: pixel noise is Poisson at the open-beam count (plus the small gain and
    flicker terms), and row means (one detector element each) vary by the gain residual."""
    from hw_sim.xray.physics import Detector

    det = Detector()
    layers = np.zeros((len(MATERIALS), 300, 640), np.float32)
    layers[MATERIAL_INDEX["water"]] = 8.0
    high, low = render(layers, np.random.default_rng(3), det)
    for img, i0, mu in ((low, det.open_beam_low, 0.206), (high, det.open_beam_high, 0.162)):
        t = img.astype(np.float64) / XRAY_WHITE
        expect_t = np.exp(-mu * 8.0)
        assert abs(t.mean() - expect_t) < 0.01
        # per-pixel noise after removing row and column means (gain streaks and flicker lines)
        resid = t - t.mean(axis=1, keepdims=True) - t.mean(axis=0, keepdims=True) + t.mean()
        poisson_rel = 1 / np.sqrt(expect_t * i0)
        assert 0.85 < resid.std() / expect_t / poisson_rel < 1.15
        rows = t.mean(axis=1) / expect_t
        assert 0.5 * det.gain_residual < rows.std() < 2.5 * det.gain_residual


def test_every_item_is_recorded_with_its_box():
    """The clutter's truth (what a detector confuses with contraband): every ordinary item drawn,
    hosts of contraband included, with a box that holds something dense."""
    from hw_sim.xray.contents import ITEMS

    for seed, kind in enumerate((None, "narcotics", None, "weapon")):
        bag = make_bag(np.random.default_rng(100 + seed), kind)
        assert len(bag.items) >= len(bag.contents) > 0
        for name, (x1, y1, x2, y2) in bag.items:
            assert name in ITEMS
            assert 0 <= x1 < x2 <= bag.high.shape[1] and 0 <= y1 < y2 <= bag.high.shape[0], (name, x1, y1, x2, y2)
            assert bag.high[y1:y2, x1:x2].min() < XRAY_WHITE * 0.9, f"{name}: nothing in its box"
