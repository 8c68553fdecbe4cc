"""Scenario time: runs `speed` times faster than the wall clock (speed=0 means as fast as possible).

Every simulated device paces itself through one SimClock so that a scenario at 10x keeps its
devices in step with each other.
"""

from __future__ import annotations

import threading
import time


class SimClock:
    def __init__(self, speed: float = 1.0, start: float | None = None):
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self.wall0 = time.monotonic()
        self.t0 = time.time() if start is None else start

    def elapsed(self) -> float:
        """Scenario seconds since the start."""
        if self.speed == 0:
            return float("inf")
        return (time.monotonic() - self.wall0) * self.speed

    def now(self) -> float:
        """Scenario time as a UTC timestamp (what the devices stamp their data with)."""
        return self.t0 + min(self.elapsed(), 1e12)

    def sleep(self, sim_seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep for scenario seconds; returns False if `stop` was set meanwhile."""
        if self.speed == 0 or sim_seconds <= 0:
            return not (stop and stop.is_set())
        wall = sim_seconds / self.speed
        if stop is None:
            time.sleep(wall)
            return True
        return not stop.wait(wall)

    def sleep_until(self, sim_elapsed: float, stop: threading.Event | None = None) -> bool:
        return self.sleep(sim_elapsed - self.elapsed(), stop)
