"""Judgement: the frequency plan and the watchlist turn emitters into verdicts with a severity.

Two operator files, both TOML validated with pydantic (a bad file is refused naming the key):

- the *frequency plan* lists the checkpoint's licensed allocations (band, and optionally which
  signal classes are licensed there) and how to rate what falls outside them;
- the *watchlist* lists what is of interest even where it is licensed (LoRa drone telemetry,
  PMR446 voice at night, GSM-like tracker uplinks), how jamming is recognised, and when a new
  persistent emitter is worth a note.

Formats: docs/radio.md. Defaults: detectors/rf/defaults/. Evidence helpers live here too:
`render_spectrogram` (colour-mapped uint8 image for a PNG) and `write_sigmf` (a SigMF recording
readable by SigMF tools).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from common.configfile import Strict, load_model
from detectors.rf.tracker import Emitter

CLASSES = ("noise", "wfm", "nfm", "am", "ook", "fsk2", "fsk4", "lora", "gmsk", "jammer")
SEVERITIES = ("info", "low", "medium", "high", "critical")
Severity = Literal["info", "low", "medium", "high", "critical"]
ClassName = Literal["noise", "wfm", "nfm", "am", "ook", "fsk2", "fsk4", "lora", "gmsk", "jammer"]
DEFAULTS = Path(__file__).resolve().parent / "defaults"


def severity_rank(s: str) -> int:
    return SEVERITIES.index(s)


class Band(Strict):
    low_hz: float = Field(gt=0)
    high_hz: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self):
        if self.high_hz <= self.low_hz:
            raise ValueError(f"high_hz ({self.high_hz:g}) must be above low_hz ({self.low_hz:g})")
        return self

    def contains(self, f_hz: float) -> bool:
        return self.low_hz <= f_hz <= self.high_hz


class Allocation(Band):
    name: str = Field(min_length=1)
    classes: list[ClassName] = []  # licensed signal classes here; empty = any class
    max_bandwidth_hz: float | None = Field(None, gt=0)


class UnlicensedPolicy(Strict):
    severity: Severity = "medium"
    min_snr_db: float = 6.0  # weaker emitters are not worth an alert
    min_duration_s: float = 0.0  # on-air time before an emitter is judged


class FrequencyPlan(Strict):
    name: str = "frequency plan"
    allocations: list[Allocation] = []
    unlicensed: UnlicensedPolicy = UnlicensedPolicy()

    def allocation_for(self, e: Emitter) -> Allocation | None:
        """The allocation whose band holds the emitter's centre (first listed wins)."""
        for a in self.allocations:
            if a.contains(e.center_hz):
                return a
        return None

    def is_licensed(self, e: Emitter) -> tuple[bool, Allocation | None, str]:
        a = self.allocation_for(e)
        if a is None:
            return False, None, f"{_mhz(e.center_hz)} is outside every licensed allocation"
        # without a class (no classifier) the class test cannot be made: the band decides
        if a.classes and e.cls is not None and e.cls not in a.classes:
            return False, a, f"{e.cls} is not licensed in {a.name} (licensed: {', '.join(a.classes)})"
        if a.max_bandwidth_hz is not None and e.bandwidth_hz > 1.5 * a.max_bandwidth_hz:
            return False, a, (f"{e.bandwidth_hz / 1e3:.0f} kHz wide, over {a.name}'s "
                              f"{a.max_bandwidth_hz / 1e3:.0f} kHz")
        return True, a, f"licensed in {a.name}"


def _hours(v):
    for h in v:
        if len(h) != 2 or not all(0 <= x <= 24 for x in h):
            raise ValueError("each hours entry is [start_hour, end_hour] with hours 0..24, e.g. [20, 6]")
    return v


class WatchEntry(Strict):
    name: str = Field(min_length=1)
    classes: list[ClassName] = Field(min_length=1)
    bands: list[Band] = []  # empty = anywhere
    hours: list[list[float]] = []  # [start, end) local hours, may wrap midnight; empty = always
    severity: Severity = "high"
    min_snr_db: float = 3.0

    _v_hours = field_validator("hours")(classmethod(lambda cls, v: _hours(v)))

    def active(self, local_hour: float) -> bool:
        if not self.hours:
            return True
        for a, b in self.hours:
            if (a <= local_hour < b) if a <= b else (local_hour >= a or local_hour < b):
                return True
        return False

    def matches(self, e: Emitter) -> bool:
        return (e.cls in self.classes and e.snr_db >= self.min_snr_db
                and (not self.bands or any(b.contains(e.center_hz) for b in self.bands)))


class JammingPolicy(Strict):
    severity: Severity = "critical"
    rise_db: float = Field(6.0, gt=0)  # instant noise floor over its quiet baseline by this much ...
    min_fraction: float = Field(0.25, gt=0, le=1)  # ... over this share of the tuned band
    clear_s: float = Field(5.0, ge=0)  # quiet this long: the jamming episode is over


class NewEmitterPolicy(Strict):
    enabled: bool = True
    severity: Severity = "info"
    learn_s: float = Field(300.0, ge=0)  # emitters heard in the first learn_s are the known environment
    min_age_s: float = Field(60.0, ge=0)  # heard over at least this long ...
    min_duty: float = Field(0.05, ge=0, le=1)  # ... and on air at least this share of the time


class Watchlist(Strict):
    name: str = "watchlist"
    timezone: str = "UTC"
    entries: list[WatchEntry] = []
    jamming: JammingPolicy = JammingPolicy()
    new_emitter: NewEmitterPolicy = NewEmitterPolicy()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Europe/Belgrade')") from None
        return v

    def local_hour(self, t: float) -> float:
        d = dt.datetime.fromtimestamp(t, ZoneInfo(self.timezone))
        return d.hour + d.minute / 60 + d.second / 3600


def load_plan(path: str | Path | None = None) -> FrequencyPlan:
    """Load and validate a frequency plan (the shipped default when path is None)."""
    return load_model(FrequencyPlan, path or DEFAULTS / "frequency_plan.toml")


def load_watchlist(path: str | Path | None = None) -> Watchlist:
    return load_model(Watchlist, path or DEFAULTS / "watchlist.toml")


def _mhz(f: float) -> str:
    return f"{f / 1e6:.4f} MHz"


@dataclass
class Verdict:
    kind: str  # rf.unlicensed | rf.watchlist | rf.jamming | rf.new_emitter
    severity: str
    reason: str
    score: float


class Judge:
    """Pure rules: an emitter (with its class) and a time in, verdicts out."""

    def __init__(self, plan: FrequencyPlan, watchlist: Watchlist):
        self.plan, self.watchlist = plan, watchlist

    def mark(self, e: Emitter) -> None:
        """Set the emitter's licensed flag and allocation name (shown on the console)."""
        ok, a, _ = self.plan.is_licensed(e)
        e.licensed, e.allocation = ok, (a.name if a else None)

    def emitter(self, e: Emitter, t: float, monitor_start: float) -> list[Verdict]:
        """At most one verdict per emitter, the most specific: jamming (a jammer-class emitter),
        then a watchlist entry, then unlicensed, then new persistent emitter. One transmitter is
        one alert for the officer; the reason says when it is also unlicensed.
        """
        if e.cls == "noise":
            return []  # the classifier says this detection is noise: nothing on air
        score = float(e.cls_score) if e.cls is not None else 0.5
        ok, _a, why = self.plan.is_licensed(e)
        pol = self.plan.unlicensed
        unlicensed = not ok and e.snr_db >= pol.min_snr_db and e.on_time_s >= pol.min_duration_s
        also = f"; unlicensed: {why}" if unlicensed else ""
        if e.cls == "jammer":
            return [Verdict("rf.jamming", self.watchlist.jamming.severity,
                            f"{self._what(e)}: classified as a jammer{also}", score)]
        hour = self.watchlist.local_hour(t)
        hits = [w for w in self.watchlist.entries if w.matches(e) and w.active(hour)]
        if hits:
            w = max(hits, key=lambda w: severity_rank(w.severity))
            sev = w.severity
            if unlicensed and severity_rank(pol.severity) > severity_rank(sev):
                sev = pol.severity
            when = f" ({self.watchlist.timezone} {int(hour):02d}:{int(hour % 1 * 60):02d})" if w.hours else ""
            return [Verdict("rf.watchlist", sev, f"{self._what(e)}: watchlist '{w.name}'{when}{also}", score)]
        if unlicensed:
            return [Verdict("rf.unlicensed", pol.severity, f"{self._what(e)}: {why}", score)]
        ne = self.watchlist.new_emitter
        if (ne.enabled and e.first_seen >= monitor_start + ne.learn_s and e.age_s >= ne.min_age_s
                and e.duty_cycle >= ne.min_duty):
            return [Verdict("rf.new_emitter", ne.severity,
                            f"{self._what(e)}: new since monitoring began, on air {e.duty_cycle:.0%} "
                            f"over {e.age_s:.0f} s", min(1.0, e.duty_cycle + 0.5))]
        return []

    def jamming(self, fraction: float, rise_db: float, lo_hz: float, hi_hz: float) -> Verdict | None:
        j = self.watchlist.jamming
        if fraction < j.min_fraction:
            return None
        return Verdict("rf.jamming", j.severity,
                       f"noise floor up {rise_db:.1f} dB over {fraction:.0%} of {_mhz(lo_hz)}..{_mhz(hi_hz)}",
                       min(1.0, 0.5 + rise_db / 40))

    @staticmethod
    def _what(e: Emitter) -> str:
        return f"{e.cls or 'unclassified'} at {_mhz(e.center_hz)}, {e.bandwidth_hz / 1e3:.1f} kHz, SNR {e.snr_db:.0f} dB"


# -- evidence ---------------------------------------------------------------------------------------


def render_spectrogram(rows_db: np.ndarray, floor_db: np.ndarray | None = None, bins: tuple[int, int] | None = None,
                       label: str = "", min_width: int = 320) -> np.ndarray:
    """A colour-mapped waterfall (newest row at the bottom) as a BGR uint8 image for cv2.imencode.

    The scale runs from 3 dB under the floor to 30 dB over it, so a 6 dB signal is visible and a
    strong one does not wash out the rest.
    """
    r = np.asarray(rows_db, np.float32)
    if r.ndim != 2 or r.size == 0:
        raise ValueError("rows_db must be a non-empty 2-D array")
    ref = np.asarray(floor_db, np.float32) if floor_db is not None else np.median(r, axis=0)
    if bins is not None:
        b0, b1 = max(0, bins[0]), min(r.shape[1], bins[1])
        if b1 > b0:
            r, ref = r[:, b0:b1], ref[b0:b1]
    lo = ref - 3.0
    u8 = np.clip((r - lo) / 33.0 * 255.0, 0, 255).astype(np.uint8)
    img = cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO)
    sx = max(1, math.ceil(min_width / img.shape[1]))
    sy = max(1, math.ceil(min(160, sx * img.shape[0]) / img.shape[0]))
    img = cv2.resize(img, (img.shape[1] * sx, img.shape[0] * sy), interpolation=cv2.INTER_NEAREST)
    if label:
        cv2.putText(img, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def write_sigmf(path: str | Path, snippet: np.ndarray, rate_hz: float, center_hz: float, t: float, emitter: Emitter,
                kind: str, span: tuple[int, int] | None = None, reason: str = "") -> list[str]:
    """Write `snippet` (complex64 at the receiver's tuning) as PATH.sigmf-data + PATH.sigmf-meta.

    `path`'s own suffix is dropped. One capture (centre, rate, UTC time of the first sample) and
    one annotation: the emitter's band over `span` (start, count) or the whole recording, labelled
    with its class. Returns the two paths. The sigmf package writes and validates the metadata.
    """
    import sigmf
    from sigmf import SigMFFile
    from sigmf.utils import get_data_type_str

    base = Path(path)
    base = base.with_suffix("") if base.suffix else base
    base.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(snippet, dtype=np.complex64)
    data_path = base.with_suffix(".sigmf-data")
    meta_path = base.with_suffix(".sigmf-meta")
    data.tofile(data_path)
    iso = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    meta = SigMFFile(data_file=str(data_path), global_info={
        sigmf.DATATYPE_KEY: get_data_type_str(data),
        sigmf.SAMPLE_RATE_KEY: float(rate_hz),
        sigmf.DESCRIPTION_KEY: f"Zastava {kind}: {reason}"[:500],
        sigmf.RECORDER_KEY: "zastava detectors.rf",
    })
    meta.add_capture(0, metadata={sigmf.FREQUENCY_KEY: float(center_hz), sigmf.DATETIME_KEY: iso})
    s0, n = span if span is not None else (0, len(data))
    s0 = int(min(max(0, s0), max(0, len(data) - 1)))
    n = int(max(1, min(n, len(data) - s0)))
    meta.add_annotation(s0, n, metadata={
        sigmf.FREQ_LOWER_EDGE_KEY: float(emitter.f_lo_hz), sigmf.FREQ_UPPER_EDGE_KEY: float(emitter.f_hi_hz),
        sigmf.LABEL_KEY: emitter.cls or "unknown",
        sigmf.COMMENT_KEY: json.dumps({"kind": kind, "snr_db": round(float(emitter.snr_db), 1),
                                           "power_dbfs": round(float(emitter.power_db), 1),
                                           "emitter_id": emitter.id}),
    })
    meta.tofile(str(meta_path), overwrite=True)
    return [str(data_path), str(meta_path)]
