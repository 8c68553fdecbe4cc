"""RadioMonitor end to end on a simulated band (hw_sim.rf) with the shipped ONNX classifier.

The checkpoint's plan here: a licensed 2-FSK telemetry link at 434.5 MHz; in the rest of the
433 MHz SRD band only 2-FSK and NFM are licensed (so a key fob is not). LoRa anywhere is on the
watchlist. The band carries the licensed link all along, a LoRa burst, a key fob and a barrage
jammer, each at its own time: each must be found, classified and judged as the plan says, once.
"""

from __future__ import annotations

import numpy as np
import pytest
import sigmf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.rf.classifier import DEFAULT_MODEL
from detectors.rf.judge import FrequencyPlan, Watchlist, write_sigmf
from detectors.rf.monitor import RadioMonitor
from hw_sim.rf.band import Band, Emitter, to_cu8

RATE, CENTER, BLOCK = 2.4e6, 434.0e6, 1 << 18
T0 = 1_780_000_000.0  # 2026-05-28, UTC

PLAN = FrequencyPlan.model_validate({"allocations": [
    {"name": "telemetry link 434.5", "low_hz": 434.45e6, "high_hz": 434.55e6, "classes": ["fsk2"]},
    {"name": "SRD433", "low_hz": 433.05e6, "high_hz": 434.79e6, "classes": ["fsk2", "nfm"]},
]})
WATCH = Watchlist.model_validate({"timezone": "UTC", "entries": [
    {"name": "LoRa drone telemetry", "classes": ["lora"], "severity": "high"}]})

def run_band(monitor, emitters, seconds, seed=3):
    band = Band(emitters, center_hz=CENTER, rate_hz=RATE, rng=np.random.default_rng(seed))
    findings = []
    for i in range(int(seconds * RATE / BLOCK)):
        x = band.read(BLOCK)
        findings += monitor.process(to_cu8(x), T0 + i * BLOCK / RATE, CENTER, RATE)
    return findings


SCENE = [
    Emitter("fsk2", 434.5e6, 15.0, {"baud": 9600.0, "deviation_hz": 5e3, "bt": 0.5}, id="licensed"),
    Emitter("lora", 433.5e6, 12.0, {"sf": 7, "bw_hz": 125e3, "sync_word": 0x12}, schedule=[(1.0, 1.35)], id="lora"),
    Emitter("ook", 433.92e6, 15.0, {"unit_s": 400e-6}, schedule=[(2.0, 2.6)], id="fob"),
    Emitter("jammer", 434.0e6 + 100e3, 20.0, {"kind": "barrage", "bw_hz": 1.4e6}, schedule=[(3.2, 4.2)], id="jam"),
]


@pytest.fixture(scope="module")
def scene():
    m = RadioMonitor(PLAN, WATCH, DEFAULT_MODEL)
    findings = run_band(m, SCENE, 4.6)
    return m, findings


def near(f, hz, tol=40e3):
    return abs(f.emitter.center_hz - hz) < tol


def test_lora_burst_is_found_classified_and_watchlisted(scene):
    _, findings = scene
    lora = [f for f in findings if near(f, 433.5e6, 70e3)]
    assert [f.kind for f in lora] == ["rf.watchlist"], [(f.kind, f.reason) for f in lora]
    f = lora[0]
    assert f.emitter.cls == "lora" and f.severity == "high"
    assert T0 + 1.0 <= f.t <= T0 + 1.6
    assert "LoRa drone telemetry" in f.reason and "lora is not licensed in SRD433" in f.reason


def test_key_fob_is_found_classified_and_unlicensed(scene):
    _, findings = scene
    fob = [f for f in findings if near(f, 433.92e6, 20e3) and f.emitter.bandwidth_hz < 200e3]
    assert [f.kind for f in fob] == ["rf.unlicensed"], [(f.kind, f.reason, f.emitter.cls) for f in fob]
    assert fob[0].emitter.cls == "ook" and fob[0].severity == "medium"
    assert "ook is not licensed in SRD433" in fob[0].reason


def test_jammer_raises_one_critical_jamming_finding(scene):
    _, findings = scene
    jam = [f for f in findings if f.kind == "rf.jamming"]
    assert len(jam) == 1, [(f.reason, f.t - T0) for f in findings]
    assert jam[0].severity == "critical" and T0 + 3.2 <= jam[0].t <= T0 + 3.8
    assert jam[0].emitter.bandwidth_hz > 0.8e6


def test_licensed_link_raises_nothing_and_is_shown_licensed(scene):
    m, findings = scene
    assert not [f for f in findings if near(f, 434.5e6, 30e3) and f.emitter.bandwidth_hz < 200e3]
    link = [e for e in m.emitters() if abs(e.center_hz - 434.5e6) < 20e3]
    assert len(link) == 1
    assert link[0].cls == "fsk2" and link[0].licensed is True and link[0].allocation == "telemetry link 434.5"
    assert link[0].duty_cycle > 0.65  # on air throughout, but hidden inside the jammer for 1 s of 4.6


def test_findings_are_once_per_episode_and_carry_evidence(scene, tmp_path):
    m, findings = scene
    keys = [(f.emitter.id, f.kind) for f in findings]
    assert len(keys) == len(set(keys))
    assert m.stats.suppressed > 0  # the same emitters were judged again in later blocks
    for f in findings:
        assert f.spectrogram is not None and f.spectrogram.dtype == np.uint8 and f.spectrogram.ndim == 3
        assert f.snippet is not None and f.snippet.dtype == np.complex64 and 0 < f.snippet.size <= 0.1 * RATE + 1
        start, count = f.snippet_span
        assert 0 <= start < f.snippet.size and count > 0
        paths = write_sigmf(tmp_path / f"{f.emitter.id}.x", f.snippet, f.rate_hz, f.center_hz, f.snippet_t,
                            f.emitter, f.kind, f.snippet_span, f.reason)
        h = sigmf.fromfile(paths[1])
        assert h.read_samples().shape == f.snippet.shape
        assert h.get_annotations()[0]["core:label"] == f.emitter.cls


def test_without_a_classifier_the_band_decides():
    m = RadioMonitor(PLAN, WATCH, None)
    findings = run_band(m, [SCENE[0], Emitter("nfm", 435.0e6, 15.0, schedule=[(0.3, 0.9)], id="out-of-plan")], 1.2)
    assert [(f.kind, f.emitter.cls) for f in findings] == [("rf.unlicensed", None)]
    assert abs(findings[0].emitter.center_hz - 435.0e6) < 10e3
    assert "outside every licensed allocation" in findings[0].reason
    row = m.waterfall_row()
    assert row.shape == (1024,) and np.isfinite(row).all()


def test_bad_blocks_raise_value_error_and_are_counted():
    m = RadioMonitor(PLAN, WATCH, None)
    with pytest.raises(ValueError, match="empty"):
        m.process(np.zeros(0, np.complex64), T0, CENTER, RATE)
    with pytest.raises(ValueError, match="center_hz"):
        m.process(np.zeros(BLOCK, np.complex64), T0, -1.0, RATE)
    with pytest.raises(ValueError, match="NaN"):
        m.process(np.full(BLOCK, np.nan, np.complex64), T0, CENTER, RATE)
    assert m.stats.refused == 3
    assert m.process(np.zeros(BLOCK, np.complex64), T0, CENTER, RATE) == []
    assert m.waterfall_row() is not None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["noise", "tone", "nan", "inf", "empty", "short", "zeros", "huge"]),
                          st.sampled_from([CENTER, CENTER + 1e6, float("nan"), -5.0, 1e13]),
                          st.sampled_from([RATE, 1.024e6, 0.0, float("inf")]),
                          st.floats(-1e3, 1e3)), min_size=1, max_size=6))
def test_fuzz_monitor_never_crashes(blocks):
    m = RadioMonitor(PLAN, WATCH, DEFAULT_MODEL)
    rng = np.random.default_rng(0)
    n = 1 << 15
    for i, (kind, c, r, dt) in enumerate(blocks):
        x = {"noise": lambda: (rng.standard_normal(n) * 0.01 * (1 + 1j)).astype(np.complex64),
             "tone": lambda: (0.1 * np.exp(2j * np.pi * 0.1 * np.arange(n))).astype(np.complex64),
             "nan": lambda: np.full(n, np.nan + 0j, np.complex64),
             "inf": lambda: np.where(np.arange(n) % 7 == 0, np.inf, 0.01).astype(np.complex64),
             "empty": lambda: np.zeros(0, np.complex64),
             "short": lambda: np.ones(100, np.complex64),
             "zeros": lambda: np.zeros(n, np.complex64),
             "huge": lambda: np.full(n, 3e38 + 3e38j, np.complex64)}[kind]()
        try:
            out = m.process(x, T0 + i * 0.05 + dt, c, r)
        except ValueError as e:
            assert str(e)
            continue
        assert isinstance(out, list)
    m.emitters()
    row = m.waterfall_row()
    assert row is None or row.shape[0] == 1024
    assert m.stats.blocks + m.stats.refused == len(blocks)
