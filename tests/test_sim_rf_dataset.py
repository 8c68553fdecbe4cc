"""The RF dataset (SigMF, byte-identical per seed) and SigMF replay over rtl_tcp."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import sigmf
from scipy import signal
from sigmf import SigMFFile, sigmffile

from drivers.rtltcp import RtlTcpSource
from hw_sim.rf.dataset import DETECTION_SNRS, make_detection_capture, make_labelled_capture, write_dataset
from hw_sim.rf.emitters import CLASSES
from hw_sim.rf.replay import serve_sigmf
from tests.conftest import free_port, zastava_cmd


def small(out: Path, seed: int) -> None:
    write_dataset(out, count=12, seed=seed, progress=False, detection=2, detection_s=0.4)


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_other_seed_not(tmp_path):
    small(tmp_path / "a", 7)
    small(tmp_path / "b", 7)
    small(tmp_path / "c", 8)
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c
    assert len([k for k in a if k.endswith(".sigmf-meta")]) == 14


def test_sigmf_records_carry_what_training_needs(tmp_path):
    small(tmp_path, 3)
    labels = []
    for meta in sorted((tmp_path / "labelled").glob("*.sigmf-meta")):
        rec = sigmffile.fromfile(str(meta))  # validates schema and checks it reads
        assert rec.get_global_field(sigmf.DATATYPE_KEY) == "cu8"
        assert rec.get_global_field(sigmf.SAMPLE_RATE_KEY) == 2.4e6
        fc = rec.get_captures()[0][sigmf.FREQUENCY_KEY]
        (ann,) = rec.get_annotations()
        labels.append(ann["core:label"])
        assert ann["core:freq_lower_edge"] < ann["core:freq_upper_edge"]
        assert abs((ann["core:freq_lower_edge"] + ann["core:freq_upper_edge"]) / 2 - fc) < 1.2e6
        if ann["core:label"] != "noise":
            assert -4 <= ann["zastava:snr_db"] <= 20
        assert rec.read_samples().shape == (65536,)
        assert "datetime" not in meta.read_text()
    assert labels == [CLASSES[i % 10] for i in range(12)]
    dets = sorted((tmp_path / "detection").glob("*.sigmf-meta"))
    bursts = sigmffile.fromfile(str(dets[0])).get_annotations()
    assert bursts and all(a["zastava:snr_db"] in DETECTION_SNRS for a in bursts)
    assert all(a["core:sample_count"] >= 0.01 * 2.4e6 for a in bursts)
    assert sigmffile.fromfile(str(dets[1])).get_annotations() == []  # an emitter-free capture
    index = (tmp_path / "index.csv").read_text().splitlines()
    assert index[0].startswith("capture,kind,label,snr_db") and len(index) > 14


def test_labelled_capture_api_puts_the_emitter_where_it_says_at_its_snr():
    for cls, snr in [("nfm", 10.0), ("fsk2", 4.0), ("lora", 15.0)]:
        cap = make_labelled_capture(np.random.default_rng(1), cls, snr, 2.4e6, 1 << 18)
        (a,) = cap.annotations
        lo, hi = a["core:freq_lower_edge"] - cap.center_hz, a["core:freq_upper_edge"] - cap.center_hz
        f, p = signal.welch(cap.samples, cap.rate_hz, nperseg=4096, return_onesided=False)
        inside = (f >= lo) & (f <= hi)
        noise = ~((f >= lo - 20e3) & (f <= hi + 20e3)) & (np.abs(f) > 20e3) & (np.abs(f) < 1.1e6)
        n0 = p[noise].mean()
        got = 10 * np.log10((p[inside] - n0).sum() * (f[1] - f[0]) / (n0 * (hi - lo)))
        assert abs(got - snr) < 1.0, (cls, got)


def test_detection_capture_bursts_are_where_annotated():
    cap = make_detection_capture(np.random.default_rng(11), duration_s=0.5)
    x = cap.samples
    for a in cap.annotations:
        if a["zastava:snr_db"] < 10 or a["core:label"] == "ook":
            continue
        s0, n = a["core:sample_start"], a["core:sample_count"]
        mid = (a["core:freq_lower_edge"] + a["core:freq_upper_edge"]) / 2 - cap.center_hz
        k = np.arange(len(x))
        bb = x * np.exp(-2j * np.pi * mid * k / cap.rate_hz)
        bw = a["core:freq_upper_edge"] - a["core:freq_lower_edge"]
        y = np.abs(signal.lfilter(signal.firwin(129, bw / 2, fs=cap.rate_hz), 1, bb)) ** 2
        on = y[s0 + 200:s0 + n].mean()
        off = np.concatenate([y[max(0, s0 - 20000):max(0, s0 - 500)], y[s0 + n + 500:s0 + n + 20000]])
        if len(off) > 1000:
            assert on > 3 * off.mean(), a


def write_foreign_sigmf(base: Path, rate: float, fc: float, tone_off: float, n: int, datatype: str) -> Path:
    """A recording as another SigMF tool would write it (ci16_le or cf32_le, with a datetime and a hash)."""
    k = np.arange(n)
    z = 0.3 * np.exp(2j * np.pi * tone_off * k / rate)
    if datatype == "ci16_le":
        iq = np.empty(2 * n, "<i2")
        iq[0::2] = np.round(z.real * 32767)
        iq[1::2] = np.round(z.imag * 32767)
    else:
        iq = z.astype("<c8")
    data = base.with_suffix(".sigmf-data")
    iq.tofile(data)
    meta = SigMFFile(data_file=str(data), global_info={sigmf.DATATYPE_KEY: datatype, sigmf.SAMPLE_RATE_KEY: rate})
    meta.add_capture(0, metadata={sigmf.FREQUENCY_KEY: fc, sigmf.DATETIME_KEY: "2026-01-01T00:00:00Z"})
    meta.tofile(str(base.with_suffix(".sigmf-meta")))
    return base.with_suffix(".sigmf-meta")


def peak_offset(blocks) -> float:
    x = np.concatenate([b.samples for b in blocks])
    spec = np.abs(np.fft.fftshift(np.fft.fft(x))) ** 2
    f = np.fft.fftshift(np.fft.fftfreq(len(x), 1 / blocks[0].rate_hz))
    return float(f[np.argmax(spec)])


@pytest.mark.parametrize("datatype", ["ci16_le", "cf32_le"])
def test_replay_a_foreign_recording_over_rtl_tcp(tmp_path, datatype):
    rate, fc = 1.024e6, 868.0e6
    meta = write_foreign_sigmf(tmp_path / "rec", rate, fc, 100e3, 200_000, datatype)
    port = free_port()
    stop = threading.Event()
    t = threading.Thread(target=serve_sigmf, args=(meta, port, 1.0, stop), kwargs={"ready": False}, daemon=True)
    t.start()
    try:
        def blocks_at(center):
            src = RtlTcpSource(f"rtltcp://127.0.0.1:{port}", center_hz=center, rate_hz=rate,
                               block_samples=1 << 16, backoff_base_s=0.05)
            got = []
            for b in src.blocks(stop):
                got.append(b)
                if len(got) == 4:
                    break
            src.close()
            return got

        assert abs(peak_offset(blocks_at(fc)[1:]) - 100e3) < 200
        assert abs(peak_offset(blocks_at(fc + 50e3)[1:]) - 50e3) < 200  # retuned inside the recording
    finally:
        stop.set()
        t.join(5)


def test_cli_dataset_and_replay_processes(tmp_path):
    out = tmp_path / "ds"
    r = subprocess.run(zastava_cmd("sim", "dataset", "rf", "--count", "2", "--seed", "1", "--out", str(out),
                                   "--no-progress"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    meta = out / "labelled" / "000001.sigmf-meta"
    assert json.loads(meta.read_text())["annotations"][0]["core:label"] == "wfm"
    port = free_port()
    p = subprocess.Popen(zastava_cmd("sim", "replay", str(meta), "--port", str(port), "--speed", "1"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = json.loads(p.stdout.readline())
        assert line["ready"] and line["devices"]["replay"]["iq"] == f"rtltcp://127.0.0.1:{port}"
        src = RtlTcpSource(line["devices"]["replay"]["iq"], center_hz=line["recording"]["center_hz"],
                           rate_hz=2.4e6, block_samples=1 << 15)
        stop = threading.Event()
        got = []
        for b in src.blocks(stop):
            got.append(b)
            if len(got) == 3:
                break
        src.close()
        assert len(got) == 3 and src.greeting is not None and src.greeting.tuner_name == "R820T"
    finally:
        p.terminate()
        assert p.wait(10) == 0
        if p.returncode != 0:
            pytest.fail(p.stderr.read())
