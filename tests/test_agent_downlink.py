"""What central sends down is validated, persisted atomically, swapped into running receivers,
and survives a restart; a bad document changes nothing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from detectors.rf.monitor import RadioMonitor
from edge_agent.downlink import Downlink
from edge_agent.radio_setup import make_monitor

WATCH = {"name": "night shift", "timezone": "UTC",
         "entries": [{"name": "any LoRa", "classes": ["lora"], "severity": "critical"}]}
PLAN = {"name": "tight plan", "allocations": [{"name": "SRD", "low_hz": 433.05e6, "high_hz": 434.79e6,
                                                "classes": ["ook"]}]}


def cfg():
    return SimpleNamespace(radio=SimpleNamespace(frequency_plan=None, watchlist=None, classifier=None))


def test_watchlist_and_plan_apply_to_running_receivers_and_survive_restart(tmp_path):
    rx = SimpleNamespace(monitor=RadioMonitor())
    dl = Downlink(cfg(), tmp_path, [rx])
    dl.apply("watchlist", WATCH)
    dl.apply("frequency_plan", PLAN)
    assert rx.monitor.watchlist.name == "night shift" and rx.monitor.plan.name == "tight plan"
    assert rx.monitor.judge.plan is rx.monitor.plan  # the judge was rebuilt with the new policy
    stored = json.loads((tmp_path / "downlink" / "watchlist.json").read_text())
    assert stored["doc"] == WATCH
    restarted = make_monitor(cfg(), tmp_path)  # a restarted agent starts from what central sent
    assert restarted.watchlist.name == "night shift" and restarted.plan.name == "tight plan"


@pytest.mark.parametrize("kind, doc", [
    ("watchlist", {"entries": [{"name": "x", "classes": ["not-a-class"]}]}),
    ("frequency_plan", {"allocations": [{"name": "bad", "low_hz": "low"}]}),
    ("watchlist", {"timezone": "Mars/Olympus"}),
])
def test_bad_documents_are_refused_and_change_nothing(tmp_path, kind, doc):
    rx = SimpleNamespace(monitor=RadioMonitor())
    before = (rx.monitor.plan, rx.monitor.watchlist, rx.monitor.judge)
    with pytest.raises(ValidationError):
        Downlink(cfg(), tmp_path, [rx]).apply(kind, doc)
    assert (rx.monitor.plan, rx.monitor.watchlist, rx.monitor.judge) == before
    assert not (tmp_path / "downlink" / f"{kind}.json").exists()


def test_model_announcement_is_recorded_and_unknown_kinds_refused(tmp_path):
    dl = Downlink(cfg(), tmp_path, [])
    dl.apply("model_announcement", {"name": "zastava-xray", "version": "2", "sha256": "ab" * 32})
    assert (tmp_path / "downlink" / "model_announcement.json").exists()
    with pytest.raises(ValueError):
        dl.apply("model_announcement", {"name": "x"})
    with pytest.raises(ValueError):
        dl.apply("firmware", {})
