"""Emitters tracked across blocks and scan hops, in absolute frequency.

A burst joins the emitter whose band it overlaps at a similar bandwidth; otherwise it starts a
new one. An emitter's duty cycle is its on-air time over the time its frequency was actually
watched (a scanning receiver watches each hop only part of the time, so wall-clock time would
understate it). An emitter not heard for `expire_s` of watched time is dropped: its episode is
over, and if it comes back it is a new emitter with a new id.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.rf.frontend import BlockResult, Burst


@dataclass
class Emitter:
    id: int
    center_hz: float
    bandwidth_hz: float
    power_db: float  # dBFS, signal power above the floor in its band
    snr_db: float
    first_seen: float
    last_seen: float
    on_time_s: float = 0.0
    observed_s: float = 0.0
    bursts: int = 0
    duty_cycle: float = 0.0
    cls: str | None = None
    cls_score: float = 0.0
    licensed: bool | None = None
    allocation: str | None = None  # the frequency plan's allocation it falls in, if any

    @property
    def f_lo_hz(self) -> float:
        return self.center_hz - self.bandwidth_hz / 2

    @property
    def f_hi_hz(self) -> float:
        return self.center_hz + self.bandwidth_hz / 2

    @property
    def age_s(self) -> float:
        return self.last_seen - self.first_seen


@dataclass
class TrackerConfig:
    expire_s: float = 60.0  # not heard for this long (while watched): the emitter's episode ends
    bw_ratio: float = 4.0  # a burst this much wider/narrower than the emitter is another emitter
    min_tol_hz: float = 3e3  # centre tolerance floor (about one front-end bin)
    alpha: float = 0.2  # weight of a new burst in the emitter's running estimates


class Tracker:
    def __init__(self, config: TrackerConfig | None = None):
        self.cfg = config or TrackerConfig()
        self.emitters: dict[int, Emitter] = {}
        self._next = 1
        self.expired: list[Emitter] = []
        self._open: set[int] = set()  # ids whose last burst ran to the end of a block

    def _match(self, b: Burst) -> Emitter | None:
        best, best_d = None, None
        for e in self.emitters.values():
            tol = max(self.cfg.min_tol_hz, 0.5 * max(e.bandwidth_hz, b.bandwidth_hz))
            d = abs(e.center_hz - b.center_hz)
            if d > tol:
                continue
            r = max(e.bandwidth_hz, b.bandwidth_hz, 1.0) / max(min(e.bandwidth_hz, b.bandwidth_hz), 1.0)
            if r > self.cfg.bw_ratio and max(e.bandwidth_hz, b.bandwidth_hz) > 4 * self.cfg.min_tol_hz:
                continue
            if best_d is None or d < best_d:
                best, best_d = e, d
        return best

    def update(self, res: BlockResult) -> list[tuple[Emitter, Burst, bool]]:
        """Fold one block's bursts in; returns (emitter, burst, is_new_emitter) per burst."""
        out = []
        a = self.cfg.alpha
        for b in res.bursts:
            e = self._match(b)
            if e is None:
                e = Emitter(id=self._next, center_hz=b.center_hz, bandwidth_hz=b.bandwidth_hz, power_db=b.power_dbfs,
                            snr_db=b.snr_db, first_seen=b.t_start, last_seen=b.t_end)
                self._next += 1
                self.emitters[e.id] = e
                new = True
            else:
                new = False
                e.center_hz += a * (b.center_hz - e.center_hz)
                e.bandwidth_hz += a * (b.bandwidth_hz - e.bandwidth_hz)
                e.power_db += a * (b.power_dbfs - e.power_db)
                e.snr_db += a * (b.snr_db - e.snr_db)
                e.last_seen = max(e.last_seen, b.t_end)
            continues = e.id in self._open and b.open_start and not new
            if not continues:
                e.bursts += 1
            e.on_time_s += b.duration_s
            if b.open_end:
                self._open.add(e.id)
            else:
                self._open.discard(e.id)
            out.append((e, b, new))
        self._observe(res, {id(e) for e, _, _ in out})
        return out

    def _observe(self, res: BlockResult, seen: set[int]) -> None:
        lo, hi = res.center_hz - res.rate_hz / 2, res.center_hz + res.rate_hz / 2
        t_end = res.t + res.duration_s
        for eid, e in list(self.emitters.items()):
            if not lo <= e.center_hz <= hi:
                continue  # not watched in this hop: no evidence either way
            e.observed_s += res.duration_s
            e.duty_cycle = min(1.0, e.on_time_s / max(e.observed_s, 1e-9))
            if id(e) not in seen:
                self._open.discard(eid)
                if t_end - e.last_seen > self.cfg.expire_s:
                    self.expired.append(self.emitters.pop(eid))

    def current(self) -> list[Emitter]:
        return sorted(self.emitters.values(), key=lambda e: e.center_hz)

    def take_expired(self) -> list[Emitter]:
        out, self.expired = self.expired, []
        return out
