"""The agent's config: one TOML file (zastava.toml), validated in full before anything starts.

Refused at start, with exit code 2 and the key named: unknown keys, wrong types, device URLs
no driver accepts, key/model files that do not exist, a storage directory that cannot be made.
Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from common.configfile import ConfigError, ExistingFile, Strict, WritableDir, existing_file, load_model
from detectors.xray import THREAT_CATEGORIES, Layout

Severity = Literal["info", "low", "medium", "high", "critical"]


def _bind(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
    return v


BindAddr = Annotated[str, AfterValidator(_bind)]


def _device_url(kind: str):
    def check(v: str) -> str:
        from drivers.registry import UnknownScheme, validate_url

        if "://" not in v:
            raise ValueError(f"not a device URL (scheme://...): {v!r}")
        try:
            validate_url(kind, v)
        except (UnknownScheme, ValueError) as e:
            raise ValueError(str(e)) from None
        return v

    return AfterValidator(check)


class StorageConfig(Strict):
    dir: WritableDir
    quota_mb: int = Field(2048, gt=0)
    hard_limit_mb: int = Field(3072, gt=0)
    # keep this much free on storage.dir's file system: below it, raw data and then evidence
    # central has are deleted, oldest first, as past the quota (the disk is shared; 0: off)
    min_free_mb: int = Field(1024, ge=0)
    # how long a lane or receiver keeps trying to store what it found when the disk or the
    # database fails in a way that may pass (a database another process holds locked, a full or
    # failing disk) before it gives up: an X-ray lane then sets the bag aside for `zastava
    # requeue`, a receiver logs the alert as lost. 0: give up at once
    retry_s: float = Field(60.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _limits(self):
        if self.hard_limit_mb < self.quota_mb:
            raise ValueError("hard_limit_mb must be >= quota_mb")
        return self


class ConsoleConfig(Strict):
    bind: BindAddr = "127.0.0.1:8080"
    users_file: Path | None = None  # argon2 hashes; default <storage.dir>/users.toml (python -m common.webauth)
    secure_cookies: bool = True  # set false only for plain-http on loopback (the demo)
    tip_rate: float = Field(0.0, ge=0.0, le=0.5)  # share of clear bags given a projected threat


class CentralLinkConfig(Strict):
    endpoints: list[str] = Field(min_length=1)
    server_public_key: ExistingFile
    secret_key: ExistingFile  # this checkpoint's CURVE secret key file (zastava keys)
    heartbeat_s: float = Field(2.0, gt=0)
    batch: int = Field(200, gt=0, le=5000)

    @field_validator("endpoints")
    @classmethod
    def _zmq(cls, v: list[str]) -> list[str]:
        for e in v:
            if not re.match(r"^(tcp|ipc)://\S+$", e):
                raise ValueError(f"not a ZeroMQ endpoint: {e!r}")
        return v


class LaneConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    source: Annotated[str, _device_url("xray")]
    control: Annotated[str, _device_url("control")] | None = None
    stop_belt_on: Severity | None = None  # stop the belt on an alert at or above this severity
    queue: int = Field(4, ge=1, le=64)


class ScanHop(Strict):
    center_hz: float = Field(gt=24e6, lt=1.8e9)
    rate_hz: float = 2.4e6
    dwell_s: float = Field(1.0, gt=0)


class ReceiverConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    source: Annotated[str, _device_url("iq")]
    center_hz: float | None = Field(None, gt=24e6, lt=1.8e9)
    rate_hz: float = 2.4e6
    gain_db: float | None = None  # None = tuner AGC
    scan: list[ScanHop] = []
    queue: int = Field(16, ge=1, le=256)

    @model_validator(mode="after")
    def _tuning(self):
        if self.center_hz is None and not self.scan:
            raise ValueError("give center_hz (fixed tuning) or scan (a list of hops)")
        return self


class XrayDetectorConfig(Strict):
    model: Path | Literal["physics"] = "physics"
    layout: Layout = "zastava"
    class_names: list[str] | None = None  # for users' own models; ours carry theirs
    thresholds: dict[str, float] = {}
    # per class, the threshold for a finding inside a false bottom or double wall finding (its
    # payload); our model carries calibrated ones, this overrides them
    payload_thresholds: dict[str, float] = {}
    default_threshold: float = Field(0.5, ge=0, le=1)
    threads: int = Field(1, ge=1, le=16)
    # the DICOS threat category of each of a user's own classes in the reports the lanes write
    # (ours carry theirs; a class named nowhere is an ANOMALY)
    threat_categories: dict[str, Literal[THREAT_CATEGORIES]] = {}

    @field_validator("model", mode="after")
    @classmethod
    def _model(cls, v, info: ValidationInfo):
        return v if v == "physics" else existing_file(v, info)

    def load(self, where: str = "config"):
        """The detector this section describes, as the agent runs it (and as `zastava eval xray
        --config` and `zastava calibrate xray --config` measure it). A model that does not fit its
        layout, class names or thresholds is a config problem like a missing file: refused naming
        the key and the file `where`, not a traceback from deep in the agent's start."""
        from detectors.xray.detector import load_detector
        from detectors.xray.session import ModelLayoutError

        try:
            det = load_detector(self.model, self.layout, class_names=self.class_names, thresholds=self.thresholds,
                                default_threshold=self.default_threshold, threads=self.threads,
                                payload_thresholds=self.payload_thresholds)
        except ModelLayoutError as e:
            raise ConfigError(where, [f"key 'xray_detector.model': {e}"]) from None
        except ValueError as e:  # Postprocess: thresholds for classes the model does not have
            raise ConfigError(where, [f"key 'xray_detector.thresholds': {e}"]) from None
        stray = sorted(set(self.threat_categories) - set(det.class_names))
        if stray:
            raise ConfigError(where, [f"key 'xray_detector.threat_categories': classes {stray} are not the "
                                      f"model's {det.class_names}"])
        return det


class RadioConfig(Strict):
    frequency_plan: ExistingFile | None = None
    watchlist: ExistingFile | None = None
    classifier: ExistingFile | None = None


class MetricsConfig(Strict):
    bind: BindAddr | None = "127.0.0.1:9108"


class AgentConfig(Strict):
    checkpoint_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    storage: StorageConfig
    console: ConsoleConfig = ConsoleConfig()
    central: CentralLinkConfig | None = None
    lanes: list[LaneConfig] = []
    receivers: list[ReceiverConfig] = []
    xray_detector: XrayDetectorConfig = XrayDetectorConfig()
    radio: RadioConfig = RadioConfig()
    metrics: MetricsConfig = MetricsConfig()
    fusion_window_s: float = Field(600.0, ge=0)
    hung_after_s: float = Field(30.0, gt=0, le=3600)  # a pipeline worker silent this long is hung

    @model_validator(mode="after")
    def _unique_ids(self):
        ids = [x.id for x in self.lanes] + [x.id for x in self.receivers]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"lane/receiver ids must be unique: {sorted(dup)}")
        return self

    @property
    def pipeline_busy_s(self) -> float:
        """How long a lane's or receiver's write waits for a database another process holds
        locked: a third of hung_after_s (10 s by default), so that the wait, with the work around
        it, never makes the worker look hung; a write that waits longer fails and is retried
        (storage.retry_s)."""
        return min(10.0, self.hung_after_s / 3)


def load(path: str | Path) -> AgentConfig:
    return load_model(AgentConfig, path)


class _XrayDetectorOnly(BaseModel):
    """A config file read for its [xray_detector] table alone: the agent's own file, or a file
    holding only that table (the other tables are the agent's business, not the measurement's)."""

    model_config = ConfigDict(extra="ignore")
    xray_detector: XrayDetectorConfig


def xray_detector_from(path: str | Path):
    """The detector a config file's [xray_detector] table describes, loaded as the agent would."""
    return load_model(_XrayDetectorOnly, path).xray_detector.load(str(path))
