"""Labelled IQ for the radio detector: short one-emitter captures and long detection captures.

`zastava sim dataset rf --count N --seed S --out DIR` writes
  DIR/labelled/NNNNNN.sigmf-{data,meta}   N short captures (2^16 samples at 2.4 MS/s, 27 ms), one
                                          emitter each (class cycles through CLASSES, 'noise' = none)
                                          at an SNR drawn from -4..20 dB and a random offset;
  DIR/detection/NNNN.sigmf-{data,meta}    max(2, N // 100) captures of 2 s with scheduled bursts
                                          (>= 10 ms) at SNRs 0, 3, 6, 10, 15, 20 dB; every fourth
                                          one has no emitter at all;
  DIR/index.csv                           one row per annotation, for a quick look with pandas.
Data are cu8 (what an RTL-SDR gives), one SigMF annotation per emitter/burst with
core:label = class name and zastava:snr_db (definition in docs/rtl_tcp.md). Each capture draws
from its own np.random.Generator seeded by (seed, kind, index): the same seed writes
byte-identical files, and no wall-clock time is written anywhere.

Training can skip files: `make_labelled_capture(rng, cls, snr_db, rate_hz, n)` returns a fresh
example as arrays.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw_sim.rf.band import Band, Emitter, Flaws, to_cu8
from hw_sim.rf.emitters import CLASSES, make_waveform, random_params

RATE_HZ = 2.4e6
SHORT_N = 1 << 16
DETECTION_S = 2.0
DETECTION_SNRS = (0.0, 3.0, 6.0, 10.0, 15.0, 20.0)
NOISE_DBFS_HZ = -95.0

# where each class lives, so captures carry a plausible core:frequency
_BANDS = {
    "wfm": (87.6e6, 107.9e6), "nfm": (446.00625e6, 446.19375e6), "am": (118e6, 137e6), "ook": (433.92e6, 433.92e6),
    "fsk2": (433.05e6, 434.79e6), "fsk4": (440e6, 470e6), "lora": (863e6, 870e6), "gmsk": (880e6, 915e6),
    "jammer": (400e6, 1000e6), "noise": (30e6, 1700e6),
}


@dataclass
class Capture:
    """A capture in memory: samples (complex64 before quantisation), tuning and its annotations."""

    samples: np.ndarray
    center_hz: float
    rate_hz: float
    annotations: list[dict]


def random_flaws(rng: np.random.Generator) -> Flaws:
    return Flaws(dc_dbfs=float(rng.uniform(-55, -38)), iq_gain=float(rng.uniform(0.98, 1.02)),
                 iq_phase_deg=float(rng.uniform(-2, 2)), ppm=0.0)


def _annotation(start: int, count: int, cls: str, lo: float, hi: float, snr_db: float | None,
                params: dict | None = None) -> dict:
    a = {"core:sample_start": int(start), "core:sample_count": int(count), "core:freq_lower_edge": float(lo),
         "core:freq_upper_edge": float(hi), "core:label": cls}
    if snr_db is not None:
        a["zastava:snr_db"] = round(float(snr_db), 3)
    if params:
        a["zastava:params"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in params.items()
                               if v is not None}
    return a


def make_labelled_capture(rng: np.random.Generator, cls: str, snr_db: float, rate_hz: float = RATE_HZ,
                          n: int = SHORT_N, *, offset_hz: float | None = None, params: dict | None = None,
                          flaws: Flaws | None = None, noise_dbfs_hz: float = NOISE_DBFS_HZ) -> Capture:
    """One emitter of class `cls` at `snr_db` (see docs/rtl_tcp.md) in noise, at a random offset.

    For cls == 'noise' there is no emitter: the annotation marks a random empty stretch of band
    (of a typical emitter's width) so a classifier gets negatives cut the same way as positives.
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r} (known: {', '.join(CLASSES)})")
    params = dict(random_params(cls, rng, rate_hz) if params is None else params)
    lo_f, hi_f = _BANDS[cls]
    flaws = random_flaws(rng) if flaws is None else flaws
    bw = make_waveform(cls, np.random.default_rng(0), rate_hz, **params).bandwidth_hz
    if cls == "noise":
        bw = float(rng.choice([12.5e3, 25e3, 125e3, 200e3]))
    room = max(0.0, rate_hz / 2 * 0.9 - bw / 2)
    if offset_hz is None:
        offset_hz = float(rng.uniform(-room, room))
    # keep the emitter off the DC spike: a real dongle's users tune beside what they watch
    if abs(offset_hz) < bw / 2 + 5e3 and room > bw / 2 + 5e3:
        offset_hz = float(np.copysign(bw / 2 + 5e3 + abs(offset_hz), offset_hz or 1.0))
    f_em = float(rng.uniform(lo_f, hi_f)) if hi_f > lo_f else lo_f
    center = round(f_em - offset_hz)
    f_em = center + offset_hz
    ems = [] if cls == "noise" else [Emitter(cls, f_em, snr_db, params)]
    band = Band(ems, center_hz=center, rate_hz=rate_hz, rng=rng, noise_dbfs_hz=noise_dbfs_hz, flaws=flaws)
    x = band.read(n)
    ann = _annotation(0, n, cls, f_em - bw / 2, f_em + bw / 2, None if cls == "noise" else snr_db, params)
    return Capture(x, float(center), float(rate_hz), [ann])


def make_detection_capture(rng: np.random.Generator, *, empty: bool = False, rate_hz: float = RATE_HZ,
                           duration_s: float = DETECTION_S, noise_dbfs_hz: float = NOISE_DBFS_HZ) -> Capture:
    """A long capture with bursts of known start, length, frequency and SNR (none if `empty`).

    Bursts do not overlap in frequency (so every annotation is one emitter); they may overlap in
    time, as transmitters do.
    """
    n = int(round(duration_s * rate_hz))
    center = float(round(rng.uniform(400e6, 900e6), -3))
    flaws = random_flaws(rng)
    emitters: list[Emitter] = []
    anns: list[dict] = []
    taken: list[tuple[float, float]] = [(-15e3, 15e3)]  # keep clear of the DC spike
    if not empty:
        for _ in range(int(rng.integers(3, 9))):
            cls = str(rng.choice([c for c in CLASSES if c != "noise"]))
            params = random_params(cls, rng, rate_hz)
            if cls == "jammer":
                params["bw_hz"] = float(rng.uniform(50e3, 400e3))
            bw = make_waveform(cls, np.random.default_rng(0), rate_hz, **params).bandwidth_hz
            for _try in range(20):
                off = float(rng.uniform(-0.45 * rate_hz + bw / 2, 0.45 * rate_hz - bw / 2))
                lo, hi = off - bw / 2, off + bw / 2
                if all(hi + 5e3 < a or lo - 5e3 > b for a, b in taken):
                    break
            else:
                continue
            taken.append((lo, hi))
            snr = float(rng.choice(DETECTION_SNRS))
            # a key fob must send at least one whole frame (~60 ms); LoRa at least its preamble
            min_s = {"ook": 0.08, "lora": 0.12}.get(cls, 0.01)
            dur = float(rng.uniform(min_s, min(0.6, duration_s / 2)))
            start = float(rng.uniform(0, duration_s - dur))
            s0, s1 = int(round(start * rate_hz)), int(round((start + dur) * rate_hz))
            emitters.append(Emitter(cls, center + off, snr, params, schedule=[(s0 / rate_hz, s1 / rate_hz)]))
            anns.append(_annotation(s0, s1 - s0, cls, center + lo, center + hi, snr, params))
    band = Band(emitters, center_hz=center, rate_hz=rate_hz, rng=rng, noise_dbfs_hz=noise_dbfs_hz, flaws=flaws)
    x = band.read(n)
    anns.sort(key=lambda a: (a["core:sample_start"], a["core:freq_lower_edge"]))
    return Capture(x, center, float(rate_hz), anns)


def write_sigmf(base: Path, cap: Capture, description: str) -> Path:
    """Write cu8 data + .sigmf-meta (through the sigmf package, so its schema checks the record).

    The metadata is serialised by us from the validated record with sorted keys: sigmf's own
    dump is correct too, but key order is part of "byte-identical", so we pin it.
    """
    import sigmf
    from sigmf import SigMFFile

    data_path = base.with_suffix(".sigmf-data")
    data_path.write_bytes(to_cu8(cap.samples).tobytes())
    meta = SigMFFile(data_file=str(data_path), skip_checksum=True, global_info={
        sigmf.DATATYPE_KEY: "cu8", sigmf.SAMPLE_RATE_KEY: cap.rate_hz,
        sigmf.DESCRIPTION_KEY: description, sigmf.RECORDER_KEY: "zastava hw_sim.rf",
        sigmf.LICENSE_KEY: "https://creativecommons.org/publicdomain/zero/1.0/",
        sigmf.HW_KEY: "simulated RTL-SDR (R820T), 8-bit",
        sigmf.EXTENSIONS_KEY: [{"name": "zastava", "version": "0.1.0", "optional": True}],
    })
    meta.add_capture(0, metadata={sigmf.FREQUENCY_KEY: cap.center_hz})
    for a in cap.annotations:
        rest = {k: v for k, v in a.items() if k not in ("core:sample_start", "core:sample_count")}
        meta.add_annotation(a["core:sample_start"], a["core:sample_count"], metadata=rest)
    meta.validate()
    meta_path = base.with_suffix(".sigmf-meta")
    meta_path.write_text(json.dumps(meta._metadata, indent=2, sort_keys=True) + "\n")
    return meta_path


def write_dataset(out: Path, count: int, seed: int, progress: bool = True, *, detection: int | None = None,
                  rate_hz: float = RATE_HZ, short_n: int = SHORT_N, detection_s: float = DETECTION_S) -> None:
    """Write `count` labelled captures and `detection` (default max(2, count // 100)) long ones."""
    from tqdm import tqdm

    if count < 0:
        raise ValueError("count must be >= 0")
    out = Path(out)
    (out / "labelled").mkdir(parents=True, exist_ok=True)
    (out / "detection").mkdir(parents=True, exist_ok=True)
    n_det = max(2, count // 100) if detection is None else detection
    rows: list[list] = []
    bar = tqdm(total=count + n_det, desc="rf dataset", unit="capture", disable=not progress, file=sys.stderr)
    snr_rng = np.random.default_rng([seed, 0])
    for i in range(count):
        cls = CLASSES[i % len(CLASSES)]
        snr = float(np.round(snr_rng.uniform(-4.0, 20.0), 2))
        cap = make_labelled_capture(np.random.default_rng([seed, 1, i]), cls, snr, rate_hz, short_n)
        name = f"labelled/{i:06d}"
        write_sigmf(out / name, cap, f"zastava rf labelled capture {i}: one {cls} emitter")
        rows += [[name, "labelled", a["core:label"], a.get("zastava:snr_db", ""), a["core:sample_start"],
                  a["core:sample_count"], a["core:freq_lower_edge"], a["core:freq_upper_edge"]] for a in cap.annotations]
        bar.update()
    for j in range(n_det):
        empty = j % 4 == 3 or (n_det >= 2 and j == n_det - 1 and n_det < 4)
        cap = make_detection_capture(np.random.default_rng([seed, 2, j]), empty=empty, rate_hz=rate_hz,
                                     duration_s=detection_s)
        name = f"detection/{j:04d}"
        write_sigmf(out / name, cap, f"zastava rf detection capture {j}: {len(cap.annotations)} bursts")
        rows += [[name, "detection", a["core:label"], a.get("zastava:snr_db", ""), a["core:sample_start"],
                  a["core:sample_count"], a["core:freq_lower_edge"], a["core:freq_upper_edge"]] for a in cap.annotations]
        if not cap.annotations:
            rows.append([name, "detection", "", "", 0, len(cap.samples), "", ""])
        bar.update()
    bar.close()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["capture", "kind", "label", "snr_db", "sample_start", "sample_count", "freq_lower_edge",
                "freq_upper_edge"])
    w.writerows(rows)
    (out / "index.csv").write_text(buf.getvalue())
