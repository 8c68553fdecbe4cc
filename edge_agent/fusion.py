"""Fusion across sensors: radio activity of interest raises the risk of bags inspected near it.

Smugglers' lookouts talk on PMR446, their drones report over LoRa/ELRS, and jammers blind
tracking: a bag inspected while such signals are on the air deserves a second look, so its
alerts carry a raised severity and the reason. No single-sensor product can say this.
"""

from __future__ import annotations

import threading
from collections import deque

# Radio alert kinds and emitter classes that count as activity of interest.
INTEREST_KINDS = {"rf.watchlist", "rf.jamming"}


class Fusion:
    def __init__(self, window_s: float):
        self.window_s = window_s
        self.recent: deque[dict] = deque(maxlen=1000)
        self.lock = threading.Lock()

    def note_radio_alert(self, uuid: str, kind: str, t: float, what: str) -> None:
        if kind in INTEREST_KINDS:
            with self.lock:
                self.recent.append({"uuid": uuid, "kind": kind, "t": t, "what": what})

    def risk_for(self, t: float) -> dict | None:
        if self.window_s <= 0:
            return None
        with self.lock:
            hits = [r for r in self.recent if abs(r["t"] - t) <= self.window_s]
        if not hits:
            return None
        whats = sorted({h["what"] for h in hits})
        return {
            "raised": True,
            "radio_alerts": [h["uuid"] for h in hits][-10:],
            "reason": f"radio activity of interest within {int(self.window_s)} s: " + ", ".join(whats),
        }
