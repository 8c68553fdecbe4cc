"""A scenario file (TOML): a stretch of checkpoint life the simulator plays.

Top level: name, seed, speed, duration_s; one section per simulated device, each section's
schema owned by the device's module; `[[faults]]` scheduled on any device; `[central_link]`
a TCP relay in front of central command whose outages the scenario schedules.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.configfile import Strict, load_model
from hw_sim.linkproxy import LinkProxySection
from hw_sim.rf.device import ReceiverSection
from hw_sim.scanner_serial import SerialSection
from hw_sim.xray.device import ScannerSection


class Fault(Strict):
    at_s: float = Field(ge=0, description="scenario seconds from the start")
    device: str = Field(description="'scanner', 'serial', or 'receiver:<id>'")
    kind: str
    duration_s: float = Field(0.0, ge=0)
    params: dict = {}


class Scenario(Strict):
    name: str
    description: str = ""
    seed: int = 0
    speed: float = Field(1.0, ge=0, description="1 = real time, 10 = ten times faster, 0 = flat out")
    duration_s: float = Field(0.0, ge=0, description="0 = run until stopped")
    scanner: ScannerSection | None = None
    serial: SerialSection | None = None
    receivers: list[ReceiverSection] = []
    faults: list[Fault] = []
    central_link: LinkProxySection | None = None


def load(path: str | Path) -> Scenario:
    return load_model(Scenario, path)


SCENARIO_DIR = Path(__file__).parent / "scenarios"
