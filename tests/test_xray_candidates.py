"""models/xray/candidates.py: the narcotics pair's ceiling (a candidate on the block at all) and
its detection rate at a narcotics false-alarm rate, on the simulator with the shipped pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.xray.candidates import bag_figures, summarise
from models.xray.mix import MIX

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "xray" / "zastava-xray.onnx"


def _bag(place=None, best=0.0, scores=(), proposed=True, verified=True):
    b = {"clean": place is None, "scores": list(scores), "place": place}
    if place:
        b.update(proposed=proposed, proposed_verified=verified, best=best)
    return b


def test_pd_counts_blocks_scored_above_what_the_allowed_false_alarms_reach():
    # 100 clean bags, three candidates scored 0.9, 0.8, 0.7 among them: at 0.015 false alarms per
    # clean bag one may stand, so the threshold is the second highest, 0.8; at 0.03, the fourth, 0.1.
    bags = [_bag(scores=s) for s in ([0.9], [0.8, 0.1], [0.7])] + [_bag() for _ in range(97)]
    bags += [_bag("shoe", 0.85), _bag("shoe", 0.75), _bag("lining", 0.95),
             _bag("lining", 0.0, proposed=False, verified=False), _bag("lining", 0.0, verified=False)]
    s = summarise(bags, rates=(0.015, 0.03))
    assert s["clean_bags"] == 100 and s["narcotics_bags"] == 5
    assert s["pd"]["0.015"] == {"verifier_threshold": 0.8, "pd": 0.4}
    assert s["pd"]["0.03"] == {"verifier_threshold": 0.1, "pd": 0.6}
    assert s["ceiling"] == {"from_candidate_score": 0.8, "from_verified_score": 0.6}
    assert s["places"]["shoe"]["pd@0.015"] == 0.5 and s["places"]["lining"]["ceiling"] == pytest.approx(0.667, abs=1e-3)


def test_a_simulated_bag_gives_consistent_figures():
    """A real bag through the shipped detector and verifier: the verifier's scores are
    probabilities, and a block found by the verifier was proposed by the detector."""
    seen_block = False
    for i in range(1, 12, 2):  # odd bags carry contraband
        b = bag_figures((str(MODEL), 4001, i))
        assert all(0.0 <= p <= 1.0 for p in b["scores"])
        if b["place"]:
            seen_block = True
            assert b["best"] == 0.0 or (b["proposed_verified"] and b["proposed"])
            assert b["best"] in b["scores"] or b["best"] == 0.0
    assert seen_block
    assert bag_figures((str(MODEL), 4001, 0))["clean"]


def test_the_command_prints_json_and_the_draw_follows_the_training_mix():
    assert None in MIX and abs(sum(MIX.values()) - 1) < 1e-9
    r = subprocess.run([sys.executable, "-m", "models.xray.candidates", "--bags", "6", "--workers", "1", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["bags"] == 6 and s["clean_bags"] == 3
    assert set(s["pd"]) == {"0.015", "0.022", "0.03"}
    bad = subprocess.run([sys.executable, "-m", "models.xray.candidates", "--bags", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--bags must be at least 2" in bad.stderr
