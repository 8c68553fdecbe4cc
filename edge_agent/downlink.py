"""Apply what central command sends down: a watchlist, a frequency plan, a model announcement.

Each document is validated first (a bad one is refused, and the sender tells central why), then
written atomically under <storage.dir>/downlink/<kind>.json, then swapped into every running
receiver in one assignment, so a receiver judges by the old policy or the new, never a mix.
A restarted agent starts from the latest applied version (edge_agent.radio_setup).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from common.durable import write_atomic

log = logging.getLogger("zastava.downlink")

KINDS = ("watchlist", "frequency_plan", "model_announcement")


class Downlink:
    def __init__(self, cfg, root: Path, receivers: list):
        self.cfg = cfg
        self.dir = Path(root) / "downlink"
        self.receivers = receivers

    def apply(self, kind: str, doc: dict) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown downlink kind {kind!r}")
        from detectors.rf.judge import FrequencyPlan, Judge, Watchlist

        if kind == "frequency_plan":
            plan = FrequencyPlan.model_validate(doc)
        elif kind == "watchlist":
            watch = Watchlist.model_validate(doc)
        else:
            for key in ("name", "version", "sha256"):
                if key not in doc:
                    raise ValueError(f"model announcement lacks '{key}'")
        self._persist(kind, doc)
        for rr in self.receivers:
            m = rr.monitor
            if kind == "frequency_plan":
                m.plan = plan
            elif kind == "watchlist":
                m.watchlist = watch
            else:
                continue
            m.judge = Judge(m.plan, m.watchlist)
        if kind == "model_announcement":
            log.warning("central announces model %s v%s (sha256 %s): install it and point the config at it",
                        doc["name"], doc["version"], doc["sha256"])
        else:
            log.info("downlink %s applied to %d receiver(s)", kind, len(self.receivers))

    def _persist(self, kind: str, doc: dict) -> None:
        write_atomic(self.dir / f"{kind}.json", json.dumps({"kind": kind, "applied": time.time(), "doc": doc}).encode())
