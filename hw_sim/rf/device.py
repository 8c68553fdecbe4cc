"""A simulated RTL-SDR receiver as a scenario's `[[receivers]]` entry describes it.

    [[receivers]]
    id = "rx1"
    port = 0                       # 0 = ephemeral; the runner prints the URL it got
    center_hz = 446.1e6            # tuning until a client sets its own
    noise_dbfs_hz = -95.0
    flaws = { dc_dbfs = -45.0, iq_gain = 1.01, iq_phase_deg = 1.0, ppm = 12.0 }

    [[receivers.emitters]]
    id = "lookout-1"
    class = "nfm"                  # one of hw_sim.rf.emitters.CLASSES
    freq_hz = 446.05625e6          # PMR446 channel 5
    snr_db = 15.0                  # in its own bandwidth (docs/rtl_tcp.md)
    on = [[10.0, 40.0], [95.0, 130.0]]   # scenario seconds; absent = always
    params = { ctcss_hz = 88.5 }

`start()` binds the port at once (so the URL is known before the runner prints "ready") and
serves in a thread. `truth()` gives the emitters' on/off intervals: the ground truth an
end-to-end test checks the agent's radio alerts against; `truth_file` writes it as JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from common.configfile import Strict
from hw_sim.clock import SimClock
from hw_sim.rf.band import Band, Emitter, Flaws
from hw_sim.rf.emitters import CLASSES, make_waveform
from hw_sim.rf.rtltcp_server import FAULT_KINDS, RtlTcpServer

log = logging.getLogger("zastava.sim.receiver")


class FlawsSection(Strict):
    dc_dbfs: float | None = Field(-45.0, le=0)
    iq_gain: float = Field(1.0, gt=0.5, lt=2.0)
    iq_phase_deg: float = Field(0.0, ge=-20, le=20)
    ppm: float = Field(0.0, ge=-200, le=200)


class EmitterSection(Strict):
    id: str = ""
    cls: str = Field(alias="class")
    freq_hz: float = Field(gt=0)
    snr_db: float = Field(ge=-30, le=60)
    params: dict = {}
    on: list[tuple[float, float]] | None = None
    period_s: float | None = Field(None, gt=0)
    duty: float = Field(1.0, gt=0, le=1)
    drift_hz_per_s: float = 0.0

    model_config = {**Strict.model_config, "populate_by_name": True}

    @field_validator("cls")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CLASSES or v == "noise":
            raise ValueError(f"emitter class must be one of {', '.join(c for c in CLASSES if c != 'noise')}")
        return v

    @field_validator("on")
    @classmethod
    def _intervals(cls, v):
        if v is not None:
            for a, b in v:
                if b <= a:
                    raise ValueError(f"on-interval [{a}, {b}] ends before it starts")
        return v

    def emitter(self) -> Emitter:
        return Emitter(self.cls, self.freq_hz, self.snr_db, dict(self.params),
                       schedule=[tuple(x) for x in self.on] if self.on is not None else None,
                       period_s=self.period_s, duty=self.duty, drift_hz_per_s=self.drift_hz_per_s,
                       id=self.id or f"{self.cls}@{self.freq_hz / 1e6:.5f}MHz")


class ReceiverSection(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    center_hz: float = Field(433.92e6, ge=24e6, le=1.766e9)
    rate_hz: float = 2.4e6
    noise_dbfs_hz: float = Field(-95.0, le=-40)
    flaws: FlawsSection = FlawsSection()
    emitters: list[EmitterSection] = []
    truth_file: Path | None = None

    @field_validator("truth_file")
    @classmethod
    def _relative_to_scenario(cls, v: Path | None, info: ValidationInfo):
        base = (info.context or {}).get("base_dir")
        return Path(base) / v if v is not None and base is not None and not v.is_absolute() else v

    @field_validator("emitters")
    @classmethod
    def _params_valid(cls, v: list[EmitterSection]):
        for e in v:  # build each waveform once so a bad parameter is a config error, not a crash later
            try:
                make_waveform(e.cls, np.random.default_rng(0), 2.4e6, **e.params)
            except (TypeError, ValueError) as err:
                raise ValueError(f"emitter {e.id or e.cls}: bad params {e.params}: {err}") from None
        return v


class ReceiverDevice:
    """One simulated dongle on its own port; what hw_sim.runner drives."""

    def __init__(self, section: ReceiverSection, server: RtlTcpServer, emitters: list[Emitter]):
        self.section, self.server, self.emitters = section, server, emitters

    @property
    def urls(self) -> dict:
        return {"iq": f"rtltcp://{self.section.host}:{self.server.port}"}

    def inject(self, kind: str, duration_s: float = 0.0, params: dict | None = None) -> None:
        """Play a fault (FAULT_KINDS); an unknown kind in a scenario is logged, not fatal to the run."""
        if kind not in FAULT_KINDS:
            log.error("receiver %s: unknown fault %r ignored (known: %s)", self.section.id, kind,
                      ", ".join(FAULT_KINDS))
            return
        self.server.inject(kind, duration_s, params or {})

    def stats(self) -> dict:
        return {"id": self.section.id, **self.server.stats()}

    def truth(self, t0: float = 0.0, t1: float = 1e9) -> list[dict]:
        """Each emitter's scheduled on-intervals in [t0, t1) scenario seconds, with class,
        frequency and SNR; a periodically keyed emitter is one row with its period and duty
        (not one row per GSM burst)."""
        out = []
        for em in self.emitters:
            sched = em.schedule if em.schedule is not None else [(0.0, float("inf"))]
            for a, b in sched:
                a, b = max(a, t0), min(b, t1)
                if a >= b:
                    continue
                out.append({"receiver": self.section.id, "id": em.id, "cls": em.cls, "freq_hz": em.freq_hz,
                            "snr_db": em.snr_db, "start_s": a, "stop_s": b if b < 1e9 else None,
                            "period_s": em.period_s, "duty": em.duty, "drift_hz_per_s": em.drift_hz_per_s})
        return sorted(out, key=lambda r: (r["start_s"], r["freq_hz"]))

    def close(self) -> None:
        self.server.close()


def start(section: ReceiverSection, *, seed: int, clock: SimClock, stop: threading.Event) -> ReceiverDevice:
    emitters = [e.emitter() for e in section.emitters]
    f = section.flaws
    band = Band(emitters, center_hz=section.center_hz, rate_hz=section.rate_hz, rng=np.random.default_rng(seed),
                noise_dbfs_hz=section.noise_dbfs_hz,
                flaws=Flaws(dc_dbfs=f.dc_dbfs, iq_gain=f.iq_gain, iq_phase_deg=f.iq_phase_deg, ppm=f.ppm))
    server = RtlTcpServer(band, host=section.host, port=section.port, clock=clock, stop=stop,
                          name=f"receiver:{section.id}", seed=seed).start()
    dev = ReceiverDevice(section, server, emitters)
    if section.truth_file is not None:
        section.truth_file.parent.mkdir(parents=True, exist_ok=True)
        section.truth_file.write_text(json.dumps(dev.truth(), indent=1))
    return dev
