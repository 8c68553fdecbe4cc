"""Central command's config (central.toml), validated in full before the hub starts.

    [hub]
    bind = "tcp://127.0.0.1:7100"        # where agents connect; loopback unless configured
    secret_key = "keys/hub.key_secret"    # the hub's CURVE secret key (zastava keys new --name hub)
    checkpoints_dir = "checkpoints"       # one public key file per checkpoint: <checkpoint-id>.key
    data_dir = "/var/lib/zastava-central" # evidence files, and the SQLite store by default
    store = "sqlite:///var/lib/zastava-central/central.sqlite"   # optional; or postgresql://...
    evidence_sync = "syncfs"              # or "fsync": per file (see HubConfig)

    [dashboard]                           # read by the command dashboard
    bind = "127.0.0.1:8090"

Relative paths are resolved against the config file's folder. A bad file is refused with the
key named (exit code 2), by `zastava central` and by `zastava check-config --central`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from common.configfile import ExistingDir, ExistingFile, Strict, WritableDir, load_model


class HubConfig(Strict):
    bind: str = "tcp://127.0.0.1:7100"
    secret_key: ExistingFile
    checkpoints_dir: ExistingDir
    data_dir: WritableDir
    store: str | None = None  # default: sqlite:///<data_dir>/central.sqlite
    max_msg_bytes: int = Field(64 << 20, ge=64 << 10, le=1 << 30)  # ZMQ_MAXMSGSIZE, per frame
    heartbeat_s: float = Field(2.0, gt=0, le=300)
    batch: int = Field(500, ge=1, le=10_000)  # messages per durable write
    reload_s: float = Field(2.0, gt=0, le=3600)  # how often the checkpoints folder is re-read
    # how a batch's evidence files become durable: one syncfs(2) of data_dir's filesystem per
    # batch (Linux; the default), or an fsync per file plus the folder's (for a data_dir on a
    # filesystem busy with other writers, whose dirty data syncfs would flush too)
    evidence_sync: Literal["syncfs", "fsync"] = "syncfs"

    @field_validator("bind")
    @classmethod
    def _zmq(cls, v: str) -> str:
        if not re.match(r"^(tcp|ipc)://\S+$", v):
            raise ValueError(f"not a ZeroMQ endpoint: {v!r}")
        return v

    @field_validator("store")
    @classmethod
    def _store(cls, v: str | None) -> str | None:
        if v is not None and urlparse(v).scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("expected sqlite:///path or postgresql://...")
        return v

    @model_validator(mode="after")
    def _default_store(self) -> HubConfig:
        if self.store is None:
            self.store = f"sqlite:///{Path(self.data_dir).resolve() / 'central.sqlite'}"
        return self


class DashboardConfig(Strict):
    bind: str = "127.0.0.1:8090"
    users_file: Path | None = None
    secure_cookies: bool = True


class CentralConfig(Strict):
    hub: HubConfig
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)


def load(path: str | Path) -> CentralConfig:
    return load_model(CentralConfig, path)
