"""Choosing the operating point (models/xray/calibration.py): the class thresholds share the
false-alarm budget, the payload thresholds buy detections inside hiding places. Plain numpy: these
run without torch."""

from __future__ import annotations

from detectors.xray.detector import XrayFinding
from models.xray import calibration


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
