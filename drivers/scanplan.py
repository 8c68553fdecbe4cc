"""What a receiver listens to: one fixed tuning, or a list of hops visited in turn (like rtl_power).

A hop is (center_hz, rate_hz, dwell_s). Dwell is counted in samples received at the hop, not
wall time, so a scan behaves the same against a simulator running faster than real time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from drivers.rtltcp_protocol import valid_sample_rate


@dataclass(frozen=True)
class Hop:
    center_hz: float
    rate_hz: float
    dwell_s: float = math.inf  # inf = stay (a fixed tuning)

    def __post_init__(self):
        if not self.center_hz > 0:
            raise ValueError(f"hop centre must be > 0 Hz, got {self.center_hz}")
        if not valid_sample_rate(self.rate_hz):
            raise ValueError(f"sample rate {self.rate_hz:g} S/s is not one an RTL-SDR accepts "
                             "(225001-300000 or 900001-3200000)")
        if not self.dwell_s > 0:
            raise ValueError("dwell_s must be > 0")

    @property
    def dwell_samples(self) -> int | None:
        return None if math.isinf(self.dwell_s) else max(1, int(round(self.dwell_s * self.rate_hz)))


@dataclass(frozen=True)
class ScanPlan:
    hops: tuple[Hop, ...]

    def __post_init__(self):
        if not self.hops:
            raise ValueError("a scan plan needs at least one hop")

    @property
    def fixed(self) -> bool:
        return len(self.hops) == 1

    def cycle(self) -> Iterator[tuple[int, Hop]]:
        """(index, hop) forever, round-robin."""
        while True:
            yield from enumerate(self.hops)


def fixed(center_hz: float, rate_hz: float = 2.4e6) -> ScanPlan:
    return ScanPlan((Hop(float(center_hz), float(rate_hz)),))


def from_options(center_hz: float | None, rate_hz: float, scan: Iterable | None) -> ScanPlan:
    """The plan an IQ source's (center_hz, rate_hz, scan) arguments describe.

    `scan` items may be Hop, dicts with center_hz/rate_hz/dwell_s (the agent config's model_dump)
    or (center, rate, dwell) tuples; an empty or absent scan means fixed tuning at center_hz.
    """
    hops = []
    for h in scan or []:
        if isinstance(h, Hop):
            hops.append(h)
        elif isinstance(h, dict):
            hops.append(Hop(float(h["center_hz"]), float(h.get("rate_hz", rate_hz)), float(h.get("dwell_s", 1.0))))
        else:
            c, r, d = h
            hops.append(Hop(float(c), float(r), float(d)))
    if hops:
        return ScanPlan(tuple(hops))
    if center_hz is None:
        raise ValueError("give center_hz (fixed tuning) or scan (a list of hops)")
    return fixed(center_hz, rate_hz)


def span(lower_hz: float, upper_hz: float, rate_hz: float = 2.4e6, dwell_s: float = 1.0,
         usable: float = 0.8) -> ScanPlan:
    """Hops tiling [lower, upper] with the central `usable` share of each hop's band, as rtl_power
    does: the band edges of an RTL-SDR roll off, so neighbouring hops overlap."""
    if upper_hz <= lower_hz:
        raise ValueError("upper_hz must be above lower_hz")
    step = rate_hz * usable
    n = max(1, math.ceil((upper_hz - lower_hz) / step))
    first = lower_hz + step / 2 + ((upper_hz - lower_hz) - n * step) / 2
    return ScanPlan(tuple(Hop(first + i * step, rate_hz, dwell_s) for i in range(n)))
