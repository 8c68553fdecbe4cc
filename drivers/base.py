"""The typed streams drivers produce, and the health every driver reports.

These dataclasses are the contract between drivers/ and the agent (and the simulator's
documented output): change them only together with every producer and consumer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from common import clock

# X-ray pixel convention: 16-bit transmission, 65535 = open beam (air), 0 = opaque.
XRAY_WHITE = 65535


@dataclass
class XrayFrame:
    """One scanned bag (or one image of a live stream).

    `high` and `low` are uint16 transmission images of the same shape (H, W), rows along the
    detector line and columns along the belt; `low` is None for single-energy sources. `bag_id`
    ties the image to the control link's bag-in/bag-out events when the source knows it.
    """

    high: np.ndarray
    low: np.ndarray | None
    source: str
    t: float
    bag_id: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    meta: dict = field(default_factory=dict)
    # the wall clock minus the monotonic one when the frame was made: an alert on it knows how far
    # the wall clock was stepped (by NTP) while the bag waited in the queue (common/clock.py)
    wall_minus_mono: float = field(default_factory=clock.wall_minus_mono)


@dataclass
class IQBlock:
    """Contiguous complex64 samples at one tuning; `t` is the UTC time of the first sample."""

    samples: np.ndarray
    t: float
    center_hz: float
    rate_hz: float
    gain_db: float | None
    seq: int
    source: str
    hop: int = 0
    # the wall clock minus the monotonic one when the block arrived (`t` is on that wall clock): an
    # alert on it knows how far the wall clock was stepped (by NTP) since (common/clock.py)
    wall_minus_mono: float = field(default_factory=clock.wall_minus_mono)


@dataclass
class ScannerEvent:
    """An event or status report from a scanner's control link (see drivers.scanner_protocol)."""

    kind: str  # "bag_in", "bag_out", "status", "fault", "interlock", "error", "ack"
    t: float
    bag_id: str | None = None
    data: dict = field(default_factory=dict)


@dataclass
class Health:
    """What a driver says of itself; shown on the console and synced to central."""

    url: str
    kind: str
    connected: bool = False
    state: str = "starting"
    last_data_t: float | None = None
    items: int = 0
    errors: int = 0
    drops: int = 0
    reconnects: int = 0
    stalls: int = 0
    last_error: str | None = None
    last_error_t: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class HealthMixin:
    """Thread-safe counters behind `health()`, shared by every driver."""

    def _init_health(self, url: str, kind: str) -> None:
        self._health = Health(url=url, kind=kind)
        self._health_lock = threading.Lock()

    def health(self) -> Health:
        with self._health_lock:
            return Health(**asdict(self._health))

    def _count(self, field_name: str, n: int = 1) -> None:
        with self._health_lock:
            setattr(self._health, field_name, getattr(self._health, field_name) + n)

    def _got_data(self, n: int = 1) -> None:
        with self._health_lock:
            self._health.items += n
            self._health.last_data_t = time.time()
            self._health.connected = True
            self._health.state = "ok"

    def _error(self, msg: str, *, state: str | None = None) -> None:
        with self._health_lock:
            self._health.errors += 1
            self._health.last_error = msg
            self._health.last_error_t = time.time()
            if state:
                self._health.state = state

    def _set_state(self, state: str, connected: bool | None = None) -> None:
        with self._health_lock:
            self._health.state = state
            if connected is not None:
                self._health.connected = connected


class FrameSource(Protocol):
    """Yields X-ray frames until closed; never raises on bad input (it counts and logs it)."""

    url: str

    def frames(self, stop: threading.Event): ...  # -> Iterator[XrayFrame]

    def health(self) -> Health: ...

    def close(self) -> None: ...


class IQSource(Protocol):
    url: str

    def blocks(self, stop: threading.Event): ...  # -> Iterator[IQBlock]

    def health(self) -> Health: ...

    def close(self) -> None: ...


class ControlLink(Protocol):
    url: str

    def events(self, stop: threading.Event): ...  # -> Iterator[ScannerEvent]

    def stop_belt(self, reason: str) -> None: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...


def backoff_delays(base: float = 0.2, cap: float = 10.0, seed: int | None = None):
    """Exponential backoff with full jitter, as every reconnecting driver uses."""
    import random

    rng = random.Random(seed)
    attempt = 0
    while True:
        yield rng.uniform(0, min(cap, base * (2**attempt)))
        attempt = min(attempt + 1, 30)
