"""Frequency plan and watchlist files, the judgement rules, and the evidence files (PNG, SigMF)."""

from __future__ import annotations

import datetime as dt

import cv2
import numpy as np
import pytest
import sigmf

from common.configfile import ConfigError
from detectors.rf.judge import (
    FrequencyPlan,
    Judge,
    Watchlist,
    load_plan,
    load_watchlist,
    render_spectrogram,
    write_sigmf,
)
from detectors.rf.tracker import Emitter


def em(cls, f, bw=20e3, snr=15.0, **kw):
    return Emitter(id=1, center_hz=f, bandwidth_hz=bw, power_db=-40.0, snr_db=snr, first_seen=0.0, last_seen=1.0,
                   on_time_s=1.0, cls=cls, cls_score=0.9, **kw)


def utc(h, m=0):
    return dt.datetime(2026, 6, 1, h, m, tzinfo=dt.UTC).timestamp()


def test_shipped_defaults_load():
    plan, wl = load_plan(), load_watchlist()
    assert plan.allocations and wl.entries
    assert wl.timezone == "Europe/Belgrade"
    assert {"lora", "nfm", "gmsk"} <= {c for e in wl.entries for c in e.classes}


@pytest.mark.parametrize("text, key", [
    ('[[allocations]]\nname = "x"\nlow_hz = 2e6\nhigh_hz = 1e6\n', "allocations[0]"),
    ('[[allocations]]\nname = "x"\nlow_hz = 1e6\nhigh_hz = 2e6\nclasses = ["dmr"]\n', "allocations[0].classes[0]"),
    ('[[allocations]]\nname = "x"\nlow_hz = 1e6\nhigh_hz = 2e6\ncolour = "red"\n', "allocations[0].colour"),
    ('[unlicensed]\nseverity = "urgent"\n', "unlicensed.severity"),
])
def test_bad_plan_is_refused_naming_the_key(tmp_path, text, key):
    p = tmp_path / "plan.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_plan(p)
    assert key in str(ei.value)


@pytest.mark.parametrize("text, key", [
    ('timezone = "Mars/Olympus"\n', "timezone"),
    ('[[entries]]\nname = "x"\nclasses = []\n', "entries[0].classes"),
    ('[[entries]]\nname = "x"\nclasses = ["lora"]\nhours = [[25, 3]]\n', "entries[0].hours"),
    ('[jamming]\nmin_fraction = 1.5\n', "jamming.min_fraction"),
    ('[new_emitter]\nlearn = 3\n', "new_emitter.learn"),
])
def test_bad_watchlist_is_refused_naming_the_key(tmp_path, text, key):
    p = tmp_path / "wl.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_watchlist(p)
    assert key in str(ei.value)


def test_not_toml_is_refused(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text("[[allocations]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_plan(p)


PLAN = FrequencyPlan.model_validate({"allocations": [
    {"name": "PMR446", "low_hz": 446.0e6, "high_hz": 446.2e6, "classes": ["nfm"], "max_bandwidth_hz": 12.5e3},
    {"name": "SRD433", "low_hz": 433.05e6, "high_hz": 434.79e6},
]})
WL = Watchlist.model_validate({"timezone": "Europe/Belgrade", "entries": [
    {"name": "PMR at night", "classes": ["nfm"], "bands": [{"low_hz": 446.0e6, "high_hz": 446.2e6}],
     "hours": [[20, 6]], "severity": "medium"},
    {"name": "LoRa", "classes": ["lora"], "severity": "high"},
], "new_emitter": {"learn_s": 100, "min_age_s": 30, "min_duty": 0.1}})


def kinds(vs):
    return sorted(v.kind for v in vs)


def test_licensed_emitter_raises_nothing():
    j = Judge(PLAN, WL)
    assert j.emitter(em("nfm", 446.05e6, 11e3), utc(12), 0.0) == []  # daytime PMR
    assert j.emitter(em("ook", 433.92e6), utc(12), 0.0) == []  # any class in SRD433


def test_outside_the_plan_wrong_class_or_too_wide_is_unlicensed():
    j = Judge(PLAN, WL)
    v = j.emitter(em("nfm", 450.0e6), utc(12), 0.0)
    assert kinds(v) == ["rf.unlicensed"] and "outside every licensed allocation" in v[0].reason
    v = j.emitter(em("am", 446.05e6, 8e3), utc(12), 0.0)
    assert kinds(v) == ["rf.unlicensed"] and "not licensed in PMR446" in v[0].reason
    v = j.emitter(em("nfm", 446.1e6, 60e3), utc(12), 0.0)
    assert kinds(v) == ["rf.unlicensed"] and "wide" in v[0].reason
    assert j.emitter(em("nfm", 450.0e6, snr=3.0), utc(12), 0.0) == []  # too weak to alert
    e = em("nfm", 450.0e6)
    j.mark(e)
    assert e.licensed is False and e.allocation is None


def test_watchlist_hours_are_local_and_wrap_midnight():
    j = Judge(PLAN, WL)
    # Belgrade is UTC+2 in June: 19:30 UTC = 21:30 local (night), 05:30 UTC = 07:30 local (day)
    v = j.emitter(em("nfm", 446.05e6, 11e3), utc(19, 30), 0.0)
    assert kinds(v) == ["rf.watchlist"] and v[0].severity == "medium" and "21:30" in v[0].reason
    assert j.emitter(em("nfm", 446.05e6, 11e3), utc(2), 0.0) != []  # 04:00 local
    assert j.emitter(em("nfm", 446.05e6, 11e3), utc(5, 30), 0.0) == []


def test_lora_watchlisted_anywhere_and_jammer_class_is_jamming():
    j = Judge(PLAN, WL)
    v = j.emitter(em("lora", 433.5e6, 125e3), utc(12), 0.0)
    assert kinds(v) == ["rf.watchlist"] and v[0].severity == "high"
    v = j.emitter(em("jammer", 433.9e6, 1e6), utc(12), 0.0)
    assert kinds(v) == ["rf.jamming"] and v[0].severity == "critical"
    # one verdict per emitter: watchlisted and unlicensed is a watchlist finding that says both
    v = j.emitter(em("lora", 440.0e6, 125e3), utc(12), 0.0)
    assert kinds(v) == ["rf.watchlist"] and v[0].severity == "high" and "unlicensed" in v[0].reason
    assert j.emitter(em("noise", 450e6), utc(12), 0.0) == []


def test_jamming_by_floor_rise_and_new_persistent_emitter():
    j = Judge(PLAN, WL)
    assert j.jamming(0.1, 12.0, 433e6, 435e6) is None
    v = j.jamming(0.6, 12.0, 433e6, 435e6)
    assert v.kind == "rf.jamming" and v.severity == "critical" and "60%" in v.reason
    e = em("ook", 433.92e6, duty_cycle=0.5)
    e.first_seen, e.last_seen = 200.0, 260.0
    assert kinds(j.emitter(e, utc(12), 0.0)) == ["rf.new_emitter"]
    e.first_seen = 50.0  # heard while learning: part of the known environment
    assert j.emitter(e, utc(12), 0.0) == []


def test_spectrogram_png_and_sigmf_recording(tmp_path):
    rows = np.random.default_rng(0).normal(-60, 1, (40, 1024)).astype(np.float32)
    rows[10:20, 500:520] += 25
    img = render_spectrogram(rows, np.full(1024, -60.0, np.float32), (480, 540), "lora 433.5000 MHz")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[1] >= 320
    ok, png = cv2.imencode(".png", img)
    assert ok and png.tobytes()[:4] == b"\x89PNG"
    e = em("lora", 433.5e6, 125e3)
    x = (np.random.default_rng(1).standard_normal(5000) * (1 + 1j)).astype(np.complex64)
    paths = write_sigmf(tmp_path / "ev" / "abc-123.x", x, 2.4e6, 433.92e6, utc(12), e, "rf.watchlist", (1000, 2000),
                        "LoRa watchlisted")
    assert [p.rsplit(".", 1)[1] for p in paths] == ["sigmf-data", "sigmf-meta"]
    h = sigmf.fromfile(paths[1])
    np.testing.assert_array_equal(h.read_samples(), x)
    assert h.get_global_info()["core:sample_rate"] == 2.4e6
    cap = h.get_captures()[0]
    assert cap["core:frequency"] == 433.92e6 and cap["core:datetime"].startswith("2026-06-01T12:00:00")
    (a,) = h.get_annotations()
    assert a["core:sample_start"] == 1000 and a["core:sample_count"] == 2000 and a["core:label"] == "lora"
    assert a["core:freq_lower_edge"] == pytest.approx(433.5e6 - 62.5e3)
    assert a["core:freq_upper_edge"] == pytest.approx(433.5e6 + 62.5e3)
