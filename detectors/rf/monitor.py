"""RadioMonitor: the object the agent runs per receiver (IQ blocks in, findings out).

front end -> tracker -> classifier on the emitters' bursts (votes accumulate per emitter) ->
judge -> findings with evidence. Findings are rate-limited per episode: one per (emitter, kind)
while the emitter lives in the tracker, one rf.jamming per jamming episode, so a transmitter
heard in every block raises one alert, not one per block.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from detectors.rf.channel import channelise
from detectors.rf.classifier import RFClassifier
from detectors.rf.frontend import BadBlock, BlockResult, Burst, FrontEnd, FrontEndConfig
from detectors.rf.judge import (
    FrequencyPlan,
    Judge,
    Verdict,
    Watchlist,
    load_plan,
    load_watchlist,
    render_spectrogram,
)
from detectors.rf.tracker import Emitter, Tracker, TrackerConfig

log = logging.getLogger("zastava.rf")

KINDS = ("rf.unlicensed", "rf.watchlist", "rf.jamming", "rf.new_emitter")


@dataclass
class RFFinding:
    kind: str  # rf.unlicensed | rf.watchlist | rf.jamming | rf.new_emitter
    severity: str  # info | low | medium | high | critical
    emitter: Emitter  # a snapshot at the time of the finding
    reason: str
    score: float
    t: float
    snippet: np.ndarray | None = None  # complex64 at the receiver's tuning, for the SigMF evidence
    snippet_t: float = 0.0  # UTC time of snippet[0]
    snippet_span: tuple[int, int] = (0, 0)  # the burst inside the snippet: (start, count)
    center_hz: float = 0.0  # the tuning the snippet was recorded at
    rate_hz: float = 0.0
    spectrogram: np.ndarray | None = None  # BGR uint8 image (cv2.imencode it as PNG)


@dataclass
class MonitorStats:
    blocks: int = 0
    refused: int = 0
    classified: int = 0
    findings: int = 0
    suppressed: int = 0  # repeats of a finding already raised in the same episode
    by_kind: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


@dataclass
class _Votes:
    logp: np.ndarray
    n: int = 0


class RadioMonitor:
    """One receiver's radio picture and judgement.

    plan / watchlist: a loaded model, a path to a TOML file, or None for the shipped defaults.
    classifier_path: the ONNX model, or None to judge by band only (emitters stay unclassified).
    """

    max_votes = 5  # classifications per emitter; later bursts only update its track
    min_votes = 2  # votes before judging an emitter still on air (a finished burst is judged on one)
    max_classify_per_block = 16  # CPU budget: the rest wait for the emitter's next burst
    history_rows = 192  # spectrogram rows kept per tuning for the evidence image
    max_snippet_s = 0.1  # the SigMF evidence's length at most

    def __init__(self, plan: FrequencyPlan | str | Path | None = None, watchlist: Watchlist | str | Path | None = None,
                 classifier_path: str | Path | None = None, threads: int = 1,
                 frontend: FrontEndConfig | None = None, tracker: TrackerConfig | None = None):
        self.plan = plan if isinstance(plan, FrequencyPlan) else load_plan(plan)
        self.watchlist = watchlist if isinstance(watchlist, Watchlist) else load_watchlist(watchlist)
        fc = frontend or FrontEndConfig()
        fc.jam_rise_db = self.watchlist.jamming.rise_db
        fc.jam_min_fraction = self.watchlist.jamming.min_fraction
        self.frontend = FrontEnd(fc)
        self.tracker = Tracker(tracker)
        self.judge = Judge(self.plan, self.watchlist)
        self.classifier = RFClassifier(classifier_path, threads=threads) if classifier_path else None
        self.stats = MonitorStats()
        self._votes: dict[int, _Votes] = {}
        self._fired: set[tuple[int, str]] = set()
        self._jam_last: float | None = None  # last time jamming was seen; None = no episode
        self._jam_seq = 0
        self._start: float | None = None
        self._last_row: np.ndarray | None = None
        self._history: dict[tuple[int, int], deque] = {}

    # -- the agent's API ----------------------------------------------------------------------------

    def process(self, samples: np.ndarray, t: float, center_hz: float, rate_hz: float) -> list[RFFinding]:
        """One IQ block; raises ValueError (BadBlock) for a block no receiver should produce."""
        try:
            res = self.frontend.process(samples, t, center_hz, rate_hz)
        except BadBlock:
            self.stats.refused += 1
            raise
        self.stats.blocks += 1
        if res is None:
            return []
        if self._start is None:
            self._start = res.t
        self._last_row = res.rows_db.mean(axis=0).astype(np.float32)
        key = (int(round(center_hz)), int(round(rate_hz)))
        hist = self._history.setdefault(key, deque())
        hist.append(res.rows_db)
        while sum(r.shape[0] for r in hist) - hist[0].shape[0] >= self.history_rows:
            hist.popleft()
        assoc = self.tracker.update(res)
        for e in self.tracker.take_expired():
            self._forget(e.id)
        self._classify(res, assoc)
        findings = []
        t_now = res.t + res.duration_s
        judged: dict[int, tuple[Emitter, Burst]] = {}
        for e, b, _new in assoc:
            judged[e.id] = (e, b)
        for e, b in judged.values():
            self.judge.mark(e)
            votes = self._votes.get(e.id)
            if self.classifier is not None and (votes is None or (votes.n < self.min_votes and b.open_end)):
                # not classified yet (over this block's budget), or one vote on a burst that goes on:
                # wait for a second look rather than alert on a first guess
                continue
            for v in self.judge.emitter(e, t_now, self._start):
                if v.kind == "rf.jamming":
                    if self._jam_open(t_now):
                        continue
                f = self._fire(e.id, v, e, res, b, t_now)
                if f is not None:
                    findings.append(f)
                    if v.kind == "rf.jamming":
                        self._jam_last = t_now  # this emitter's finding opens the jamming episode
        findings += self._jamming(res, t_now)
        return findings

    def emitters(self) -> list[Emitter]:
        """Emitters being tracked now, with class and licensed flag (snapshots)."""
        out = []
        for e in self.tracker.current():
            self.judge.mark(e)
            out.append(replace(e))
        return out

    def waterfall_row(self) -> np.ndarray | None:
        """The latest block's mean PSD in dBFS per bin (lowest frequency first), for the console."""
        return None if self._last_row is None else self._last_row.copy()

    # -- internals -------------------------------------------------------------------------------

    def _classify(self, res: BlockResult, assoc: list[tuple[Emitter, Burst, bool]]) -> None:
        if self.classifier is None:
            return
        todo = []
        for e, b, _new in sorted(assoc, key=lambda a: not a[2]):
            v = self._votes.get(e.id)
            if v is not None and v.n >= self.max_votes:
                continue
            if len(todo) >= self.max_classify_per_block:
                break
            todo.append((e, b))
        if not todo:
            return
        snips = np.stack([channelise(res.samples, res.rate_hz, b.center_hz - res.center_hz, b.bandwidth_hz,
                                     b.sample0, b.sample1, n_out=self.classifier.snippet_len,
                                     oversample=self.classifier.oversample) for _, b in todo])
        probs = self.classifier.probabilities(snips)
        self.stats.classified += len(todo)
        for (e, _), p in zip(todo, probs, strict=True):
            v = self._votes.setdefault(e.id, _Votes(np.zeros(len(self.classifier.classes))))
            v.logp += np.log(np.maximum(p, 1e-9))
            v.n += 1
            i = int(np.argmax(v.logp))
            e.cls = self.classifier.classes[i]
            e.cls_score = float(np.exp(v.logp[i] / v.n))  # geometric mean of that class's probabilities

    def _fire(self, eid: int, v: Verdict, e: Emitter, res: BlockResult, b: Burst | None, t: float) -> RFFinding | None:
        key = (eid, v.kind)
        if key in self._fired:
            self.stats.suppressed += 1
            return None
        self._fired.add(key)
        self.stats.findings += 1
        self.stats.by_kind[v.kind] = self.stats.by_kind.get(v.kind, 0) + 1
        f = RFFinding(kind=v.kind, severity=v.severity, emitter=replace(e), reason=v.reason, score=v.score, t=t,
                      center_hz=res.center_hz, rate_hz=res.rate_hz)
        self._evidence(f, res, b, e)
        log.info("%s %s: %s", v.kind, v.severity, v.reason)
        return f

    def _evidence(self, f: RFFinding, res: BlockResult, b: Burst | None, e: Emitter) -> None:
        """The raw IQ around the burst (SigMF) and a spectrogram around the emitter (PNG)."""
        if b is not None:
            s0, s1 = b.sample0, b.sample1
        else:
            s0, s1 = 0, res.samples.size
        margin = res.row_len
        cap = int(self.max_snippet_s * res.rate_hz)
        a, z = max(0, s0 - margin), min(res.samples.size, s1 + margin)
        if z - a > cap:
            a, z = max(0, s0 - margin), min(res.samples.size, max(0, s0 - margin) + cap)
        f.snippet = res.samples[a:z].copy()
        f.snippet_t = res.t + a / res.rate_hz
        f.snippet_span = (s0 - a, max(1, min(s1, z) - s0))
        key = (int(round(res.center_hz)), int(round(res.rate_hz)))
        rows = np.concatenate(list(self._history.get(key, [res.rows_db])))[-self.history_rows:]
        n = rows.shape[1]
        lo = int((e.f_lo_hz - res.center_hz) / res.bin_hz + n / 2)
        hi = int(np.ceil((e.f_hi_hz - res.center_hz) / res.bin_hz + n / 2))
        pad = max(32, 2 * (hi - lo))
        label = f"{e.cls or '?'} {e.center_hz / 1e6:.4f} MHz"
        f.spectrogram = render_spectrogram(rows, res.floor_db, (lo - pad, hi + pad), label)

    def _jam_open(self, t: float) -> bool:
        return self._jam_last is not None and t - self._jam_last <= self.watchlist.jamming.clear_s

    def _jamming(self, res: BlockResult, t: float) -> list[RFFinding]:
        """The floor-rise test, and the episode bookkeeping for both ways of seeing a jammer.

        An episode opens with its first finding (from here, or from a jammer-class emitter's own
        verdict) and stays open while either sign of jamming keeps showing, plus `clear_s`.
        """
        jammers = [e for e in self.tracker.current() if e.cls == "jammer" and e.last_seen >= res.t]
        v = self.judge.jamming(res.jam_fraction, res.jam_rise_db, res.center_hz - res.rate_hz / 2,
                               res.center_hz + res.rate_hz / 2)
        if v is None and not jammers:
            return []
        if self._jam_open(t):
            self._jam_last = t  # the same episode goes on
            return []
        if v is None:
            return []  # a jammer-class emitter alone: its own verdict opens the episode
        self._jam_seq += 1
        if jammers:
            e = max(jammers, key=lambda e: e.bandwidth_hz)
        else:
            lo, hi = res.jam_band or (res.center_hz - res.rate_hz / 2, res.center_hz + res.rate_hz / 2)
            e = Emitter(id=-self._jam_seq, center_hz=(lo + hi) / 2, bandwidth_hz=hi - lo, power_db=res.jam_rise_db,
                        snr_db=res.jam_rise_db, first_seen=res.t, last_seen=t, cls="jammer", cls_score=v.score)
        f = self._fire(-10**9 - self._jam_seq, v, e, res, None, t)
        if f is None:
            return []
        self._jam_last = t
        return [f]

    def _forget(self, eid: int) -> None:
        self._votes.pop(eid, None)
        for k in KINDS:
            self._fired.discard((eid, k))
