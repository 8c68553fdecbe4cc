"""The truth study's data and its figures (models/xray/truth_study.py; training needs torch)."""

from __future__ import annotations

import numpy as np

from hw_sim.xray.scene import PLACES
from models.xray.truth_study import collect, evaluate


def test_crops_come_from_the_truth_and_the_test_bags_are_held_out():
    d = collect(8, 0.0, 8001, workers=2)
    y, places, test = d["labels"], d["places"], d["test"]
    assert len(y) == len(places) == len(test) == len(d["crops"]) and np.isfinite(d["crops"].astype(np.float32)).all()
    assert (y == 1).sum() >= 8  # every narcotics bag gives its block
    assert set(places[y == 1]) <= set(PLACES["narcotics"]) and set(places[y == 0]) == {"clean"}
    assert (y == 0).sum() > 0  # clean bags hold look-alikes
    assert 0 < test.sum() < len(test)
    assert (d["feats"][:, 0] == 0).all()  # no detector score is given
    again = collect(8, 0.0, 8001, workers=1)
    assert np.array_equal(again["crops"], d["crops"])  # deterministic for a seed
    loose = collect(8, 0.12, 8001, workers=2)
    assert not np.array_equal(loose["feats"], d["feats"])  # the boxes moved


def test_truth_crops_carry_where_the_block_is_and_can_leave_a_hiding_place_out():
    """The verifier's recipe trains on these crops with their mask targets and without the
    false-bottom blocks (verifier_train.with_truth)."""
    d = collect(12, 0.0, 8001, workers=2)
    m, y = d["masks"].astype(np.float32), d["labels"]
    assert m.shape == (len(y), 8, 8)
    assert (m[y == 0] == 0).all()  # a clean bag holds no narcotics
    # an exact box around a block: the block fills the middle of its crop, not the margin
    assert (m[y == 1][:, 3:5, 3:5].mean(axis=(1, 2)) > 0.5).all()
    assert (m[y == 1][:, 0, 0] < m[y == 1][:, 3:5, 3:5].mean(axis=(1, 2))).all()
    place = d["places"][y == 1][0]
    without = collect(12, 0.0, 8001, workers=2, skip_places=(place,))
    assert place not in set(without["places"])
    kept = d["places"] != place
    assert all(np.array_equal(without[k], d[k][kept]) for k in d)


def test_pd_at_a_share_of_lookalikes_flagged():
    labels = np.array([1, 1, 1, 1] + [0] * 100, np.float32)
    places = np.array(["shoe", "shoe", "bottle", "bottle"] + ["clean"] * 100)
    p = np.concatenate([[0.99, 0.5, 0.995, 0.2], np.linspace(0.0, 0.98, 100)])
    r = evaluate(p, labels, places, clean_bags=50)
    assert r["lookalikes_per_clean_bag"] == 2.0
    one = r["at"]["0.01"]  # 1 look-alike of 100 flagged: the threshold is the second highest's score
    assert one["pd"] == 0.5 and one["shoe"] == 0.5 and one["bottle"] == 0.5 and one["fa_per_clean_bag"] == 0.02
    assert r["at"]["0.05"]["pd"] == 0.5  # 0.5 and 0.2 stay under the fifth highest look-alike
