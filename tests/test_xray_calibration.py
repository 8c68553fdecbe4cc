"""Choosing the operating point (detectors/xray/calibration.py): the class thresholds share the
false-alarm budget, the payload thresholds buy detections inside hiding places. Plain numpy: these
run without torch."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.xray import calibration
from detectors.xray.detector import XrayFinding


def test_thresholds_spend_the_false_alarm_budget_where_it_buys_detections():
    # weapons: separable (no false alarms at any threshold); narcotics: confused with food, so its
    # detections cost false alarms. An even split would hold narcotics at 0.8; the joint choice
    # gives narcotics the budget weapons do not need.
    fa = {"narcotics": [0.3] * 2 + [0.5] * 2 + [0.9] * 1, "weapon": []}
    pd = {"narcotics": [0.35] * 6 + [0.55] * 2 + [0.95] * 2, "weapon": [0.9] * 10}
    thr, facts = calibration.choose_thresholds(fa, pd, clean=100, budget=0.03)
    assert thr["weapon"] == 0.1  # free: as low as the grid goes
    # 3 false alarms in 100 clean bags, exactly the budget: any grid value above the 0.3 alarm and
    # at most the 0.35 detections is the same choice on this data
    assert 0.3 < thr["narcotics"] <= 0.35
    assert facts["fa_total"] == 0.03 and facts["pd"]["narcotics"] == 1.0
    thr, facts = calibration.choose_thresholds(fa, pd, clean=100, budget=0.01)
    assert 0.5 < thr["narcotics"] <= 0.55 and facts["fa_total"] <= 0.01  # the 0.9 alarm only


def test_a_weapon_floor_is_kept_before_the_weighted_sum_is_maximised():
    # narcotics buy more weighted pd per false alarm than weapons do: the sum alone would let the
    # weapon rate fall to 0.98 for them; the floor keeps weapons at 1.0 and narcotics get the rest
    fa = {"narcotics": [0.3] * 2, "weapon": [0.2] * 2}
    pd = {"narcotics": [0.25] * 5 + [0.95] * 5, "weapon": [0.15] * 2 + [0.25] * 98}
    thr, facts = calibration.choose_thresholds(fa, pd, clean=100, budget=0.02, floors={})
    assert thr["narcotics"] <= 0.25 and facts["pd"]["weapon"] == 0.98
    thr, facts = calibration.choose_thresholds(fa, pd, clean=100, budget=0.02, floors={"weapon": 0.985})
    assert thr["weapon"] <= 0.15 and facts["pd"]["weapon"] == 1.0 and facts["floors_held"]
    assert thr["narcotics"] > 0.3 and facts["pd"]["narcotics"] == 0.5 and facts["fa_total"] <= 0.02
    # a floor no combination within the budget can keep is dropped, and the facts say so
    thr, facts = calibration.choose_thresholds(fa, pd, clean=100, budget=0.0, floors={"weapon": 0.985})
    assert not facts["floors_held"] and facts["fa_total"] == 0.0


def _f(cls, score, box):
    return XrayFinding(cls, score, box)


def test_payload_thresholds_buy_detections_inside_hiding_places_and_refuse_wrong_ones():
    """Narcotics films in false bottoms score 0.3 (under the 0.45 threshold): a payload threshold
    finds them, as long as the false bottom stands and what it admits is right."""
    thr = {"narcotics": 0.45, "weapon": 0.45, "currency": 0.45, "concealment": 0.4}
    fb = (10, 10, 300, 200)
    film = (30, 30, 280, 180)
    per_bag, truths = [], []
    for _ in range(8):  # false bottoms with a film: found by the model at 0.3 only
        per_bag.append([_f("concealment", 0.9, fb), _f("narcotics", 0.3, film)])
        truths.append([("concealment", fb), ("narcotics", film)])
    for _ in range(4):  # empty false bottoms where the model says narcotics at 0.2: wrong
        per_bag.append([_f("concealment", 0.9, fb), _f("narcotics", 0.2, film)])
        truths.append([("concealment", fb)])
    for _ in range(20):  # clean bags: a 0.3 narcotics shadow among clothes, no hiding place
        per_bag.append([_f("narcotics", 0.3, (50, 50, 90, 90))])
        truths.append([])
    pay, facts = calibration.choose_payload_thresholds(per_bag, truths, thr, budget=0.03)
    # 0.3 admits the eight films; 0.2 would also admit four wrong ones (8/12 right is still >= 0.5,
    # but it adds no detection, so the higher threshold is kept)
    assert 0.2 < pay["narcotics"] <= 0.3
    assert facts["by_class"]["narcotics"]["pd_gain"] == 1.0 and facts["by_class"]["narcotics"]["right"] == 8
    assert "weapon" not in pay and "concealment" not in pay
    # the clean bags' shadows are untouched: no hiding place around them
    assert facts["fa_total"] == 0.0
    # when the wrong ones would be most of what a threshold admits, it is refused
    for k in range(8, 12):
        per_bag[k] = [_f("concealment", 0.9, fb), _f("narcotics", 0.35, film)]
    for _ in range(8):
        per_bag.append([_f("concealment", 0.9, fb), _f("narcotics", 0.35, film)])
        truths.append([("concealment", fb)])
    pay, _ = calibration.choose_payload_thresholds(per_bag, truths, thr, budget=0.03)
    assert "narcotics" not in pay  # 8 right of 20 admitted at any threshold <= 0.35


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 4), st.integers(20, 200), st.floats(0.0, 0.2), st.integers(0, 2**31 - 1))
def test_the_search_for_many_classes_finds_the_same_optimum_as_trying_every_combination(n, clean, budget, seed):
    """Users' own models may have many classes, where 35^n combinations cannot all be tried: the
    knapsack over the false-alarm count must reach the same weighted detection rate within the
    same budget (and floors) as the exhaustive search where both can run."""
    rng = np.random.default_rng(seed)
    names = [f"c{k}" for k in range(n)]
    fa = {c: list(rng.random(int(rng.integers(0, 3 * clean // 10 + 1))) ** 2) for c in names}
    pd = {c: list(rng.random(int(rng.integers(0, 40)))) for c in names}
    weights = {c: float(rng.choice([0.5, 1.0, 2.0])) for c in names}
    floors = {names[0]: 0.5} if rng.random() < 0.5 else {}

    def objective(thr, facts):
        return sum(weights[c] * facts["pd"][c] for c in names) - 1e-3 * facts["fa_total"]

    exact = calibration.choose_thresholds(fa, pd, clean, budget, weights, floors)
    old = calibration.EXHAUSTIVE_MAX_CLASSES
    calibration.EXHAUSTIVE_MAX_CLASSES = 0
    try:
        knap = calibration.choose_thresholds(fa, pd, clean, budget, weights, floors)
    finally:
        calibration.EXHAUSTIVE_MAX_CLASSES = old
    assert knap[1]["floors_held"] == exact[1]["floors_held"]
    assert knap[1]["fa_total"] <= budget + 1e-9 or exact[1]["fa_total"] > budget
    assert abs(objective(*knap) - objective(*exact)) < 2e-4  # the facts are rounded to 4 places


def test_a_model_with_many_classes_and_no_container_class_is_calibrated():
    """Eight classes (a user's YOLO export): each gets a threshold, the budget holds, and there is
    no payload threshold without a false-bottom class to hold a payload."""
    names = [f"thing{k}" for k in range(8)]
    fa = {c: [0.2 + 0.05 * k] * 3 for k, c in enumerate(names)}
    pd = {c: [0.3] * 10 + [0.9] * 10 for c in names}
    thr, facts = calibration.choose_thresholds(fa, pd, clean=200, budget=0.05)
    assert set(thr) == set(names) and facts["fa_total"] <= 0.05
    # 10 false alarms allowed: the two classes whose alarms score under 0.3 find everything for
    # free, three more can pay their 3 alarms each for it, the rest keep their 0.9 detections only
    assert sorted(facts["pd"].values()) == [0.5] * 3 + [1.0] * 5
    assert facts["pd"]["thing0"] == facts["pd"]["thing1"] == 1.0
    assert sum(facts["fa_per_clean_bag"].values()) == facts["fa_total"]
    per_bag = [[XrayFinding(names[0], 0.9, (0, 0, 10, 10))]] + [[] for _ in range(5)]
    truths = [[(names[0], (0, 0, 10, 10))]] + [[] for _ in range(5)]
    pay, pfacts = calibration.choose_payload_thresholds(per_bag, truths, thr, 0.05)
    assert pay == {} and pfacts["by_class"] == {}
