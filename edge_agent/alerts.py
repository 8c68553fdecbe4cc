"""The alert record: what an officer or command must look at, made and numbered at the edge."""

from __future__ import annotations

import time
import uuid as _uuid
from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_PRIORITY = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Evidence:
    name: str  # e.g. "frame.jpg", "spectrogram.png", "iq.sigmf-data"
    path: str  # relative to the agent's evidence directory
    mime: str
    size: int
    sha256: str


@dataclass
class Alert:
    checkpoint: str
    source: str  # lane or receiver id
    kind: str  # "xray.narcotics", "rf.unlicensed", ...
    score: float
    severity: str
    location: dict  # {"box": [x1, y1, x2, y2]} or {"center_hz": .., "bandwidth_hz": ..}
    reason: str
    t: float = field(default_factory=time.time)
    clock: str = "unsynced"  # the kernel's word on this box's clock: "ntp-synced" or "unsynced"
    clock_offset_s: float | None = None  # central's clock minus ours when made, if measured (common/clock.py)
    clock_offset_err_s: float | None = None  # how far that measurement may be off (half its round trip)
    clock_ref: dict | None = None  # our wall clock against the monotonic one when made: the offset, later
    uuid: str = field(default_factory=lambda: str(_uuid.uuid4()))
    bag_id: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    fusion: dict | None = None  # raised risk from another sensor, with its reason
    tip: bool = False  # a Threat Image Projection: scored locally, never synced as real
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def as_dict(self) -> dict:
        return asdict(self)

    def wire_body(self) -> dict:
        """What central receives: everything but local-only fields; evidence travels as files."""
        d = self.as_dict()
        d.pop("tip")
        d["evidence"] = [{k: e[k] for k in ("name", "mime", "size", "sha256")} for e in d["evidence"]]
        return d
