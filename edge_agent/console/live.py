"""The console's live picture: agent events in, browser events out, with Threat Image Projection between.

Browsers never see the agent's EventBus directly. This pump is the only way a bag reaches a screen, so
a bag chosen for a projection is shown once, already with its projected threat, and nothing in what the
browser receives tells a projected bag from a real one (same fields, same image URL shape; the threat is
not among the findings). Whoever was watching when a projected bag appeared is scored on it: a flag is a
hit (with the response time), the next bag on that lane arriving first is a miss.
"""

from __future__ import annotations

import collections
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from common.webevents import Fanout
from edge_agent.alerts import Alert
from edge_agent.console.tip import THREATS, TipScores, draw_threat
from edge_agent.state import AgentState

log = logging.getLogger("zastava.console")

SCORED_ROLES = ("officer", "supervisor")
TIP_TIMEOUT_S = 300.0  # a projection nobody flagged within this long is a miss even if no new bag came


@dataclass
class Projection:
    uuid: str
    lane: str
    bag_id: str
    threat: str
    box: list[int]
    image_rel: str
    shown_t: float
    watchers: set[str]
    resolved: dict[str, str] = field(default_factory=dict)  # officer -> hit/miss
    open: bool = True


class ConsoleLive:
    def __init__(self, state: AgentState, stores, files_root: Path, tip_rate: float, scores: TipScores,
                 checkpoint_id: str, seed: int | None = None):
        self.state = state
        self.stores = stores  # thread-local Store/FileStore factory (edge_agent.console.server.Stores)
        self.files_root = Path(files_root)
        self.tip_rate = tip_rate
        self.scores = scores
        self.checkpoint_id = checkpoint_id
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.bus = Fanout()  # to browsers (SSE)
        self.projections: dict[tuple[str, str], Projection] = {}
        self._order: collections.deque[tuple[str, str]] = collections.deque()
        self.watchers: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.counters = collections.Counter()
        self._q = state.events.subscribe(1024)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- watchers (open event streams of scored roles) -----------------------------------------
    def watch(self, officer: str) -> None:
        with self.lock:
            self.watchers[officer] += 1

    def unwatch(self, officer: str) -> None:
        with self.lock:
            self.watchers[officer] -= 1
            if self.watchers[officer] <= 0:
                del self.watchers[officer]

    # --- the pump -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-live", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self.bus.close()  # ends every browser's stream
        if self._thread is not None:
            self._thread.join(timeout)
        self.state.events.unsubscribe(self._q)

    def _run(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            try:
                ev = self._q.get(timeout=0.5)
            except queue.Empty:
                ev = None
            if ev is not None:
                try:
                    self.handle(ev)
                except Exception as e:  # one bad event must not stop the console's live view
                    self.counters["event_errors"] += 1
                    log.warning("console: event %s not handled: %s", ev.get("type"), e)
            now = time.time()
            if now - last_status >= 2.0:
                last_status = now
                self.expire(now)
                self.bus.publish("status", self.status())

    def status(self) -> dict:
        s = self.state.snapshot()
        return {"devices": s["devices"], "link": s["link"], "pipelines": s["pipelines"], "storage": s["storage"],
                "clock": s["clock"],
                "uptime_s": s["uptime_s"]}

    def handle(self, ev: dict) -> None:
        kind = ev.get("type")
        self.counters[f"events_{kind}"] += 1
        if kind == "bag":
            lane = ev["lane"]
            bag = ev["bag"]
            self.resolve_lane(lane, before_bag=bag["bag_id"])
            if not bag.get("findings") and self.tip_rate > 0 and self.rng.random() < self.tip_rate:
                try:
                    self.project(bag)
                except (OSError, ValueError, cv2.error) as e:
                    self.counters["tip_errors"] += 1
                    log.warning("console: TIP projection into bag %s failed: %s", bag.get("bag_id"), e)
            self.bus.publish("bag", {"lane": lane, "bag": self.bag_json(bag)})
        elif kind == "alert":
            a = ev.get("alert") or {}
            if not a.get("tip"):
                self.bus.publish("alert", {"alert": a})
        elif kind in ("waterfall", "device"):
            self.bus.publish(kind, {k: v for k, v in ev.items() if k not in ("type", "t")})

    # --- bags as browsers see them ------------------------------------------------------------
    def bag_json(self, bag: dict) -> dict:
        """What a browser gets for a bag: a projected bag is indistinguishable from a clear one."""
        return {
            "lane": bag["lane"], "bag_id": bag["bag_id"], "t": bag["t"], "width": bag["width"],
            "height": bag["height"], "findings": bag.get("findings") or [], "alert_uuids": bag.get("alert_uuids") or [],
            "risk": bag.get("risk"), "image_url": f"/api/bags/{bag['lane']}/{bag['bag_id']}/image",
        }

    def image_rel(self, lane: str, bag_id: str) -> str | None:
        with self.lock:
            p = self.projections.get((lane, bag_id))
            if p is not None:
                return p.image_rel
        with self.state.lock:
            for b in self.state.bags.get(lane, ()):
                if b.bag_id == bag_id:
                    return b.image_path
        return None

    # --- projection ---------------------------------------------------------------------------
    def project(self, bag: dict) -> Projection:
        store, files = self.stores.get()
        src = files.abspath(bag["image_path"])
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read bag image {bag['image_path']}")
        threat = self.rng.choice(THREATS)
        out, box = draw_threat(img, threat, self.np_rng)
        ok, jpg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 88])
        if not ok:
            raise ValueError("JPEG encoding failed")
        day = datetime.fromtimestamp(bag["t"], UTC).strftime("%Y%m%d")
        rel = f"raw/{bag['lane']}/{day}/tip-{bag['bag_id']}.jpg"
        files.save(rel, jpg.tobytes(), "raw", "image/jpeg")
        alert = Alert(checkpoint=self.checkpoint_id, source=bag["lane"], kind=f"tip.{threat}", score=1.0,
                      severity="high", location={"box": box, "image": [bag["width"], bag["height"]]},
                      reason=f"Threat Image Projection: synthetic {threat}", t=time.time(), bag_id=bag["bag_id"],
                      tip=True, extra={"display_image": rel})
        store.add_alert(alert)
        with self.lock:
            watchers = set(self.watchers)
            p = Projection(alert.uuid, bag["lane"], bag["bag_id"], threat, box, rel, time.time(), watchers)
            self.projections[(p.lane, p.bag_id)] = p
            self._order.append((p.lane, p.bag_id))
            while len(self._order) > 500:
                self.projections.pop(self._order.popleft(), None)
        self.counters["tip_projected"] += 1
        if not watchers:
            self.counters["tip_unattended"] += 1
        log.info("console: TIP %s projected into bag %s on %s", threat, bag["bag_id"], bag["lane"])
        return p

    def resolve_lane(self, lane: str, before_bag: str | None = None) -> None:
        """A new bag replaced whatever was on this lane's screen: open projections there are misses."""
        with self.lock:
            pending = [p for p in self.projections.values() if p.open and p.lane == lane and p.bag_id != before_bag]
        for p in pending:
            self._close(p)

    def expire(self, now: float) -> None:
        with self.lock:
            pending = [p for p in self.projections.values() if p.open and now - p.shown_t > TIP_TIMEOUT_S]
        for p in pending:
            self._close(p)

    def _close(self, p: Projection) -> None:
        with self.lock:
            if not p.open:
                return
            p.open = False
            missed = [o for o in sorted(p.watchers) if o not in p.resolved]
            for o in missed:
                p.resolved[o] = "miss"
        store, _ = self.stores.get()
        for o in missed:
            self.scores.record(o, "miss", p.lane, p.bag_id, p.uuid, p.threat, p.shown_t, None)
            store.add_decision({"uuid": f"{p.uuid}:{o}", "alert_uuid": p.uuid, "officer": o, "decision": "tip_miss",
                                "contraband_kind": p.threat, "note": None, "t": time.time()})
            self.counters["tip_miss"] += 1

    def flag(self, officer: str, lane: str, bag_id: str) -> dict:
        """The officer says this bag holds a threat. Returns what the screen should reveal."""
        now = time.time()
        with self.lock:
            p = self.projections.get((lane, bag_id))
            if p is not None:
                prior = p.resolved.get(officer)
                if prior is None:
                    p.resolved[officer] = "hit"
                    p.watchers.add(officer)
        if p is None:
            known = self.image_rel(lane, bag_id) is not None
            if not known:
                return {"ok": False, "error": "no such bag on this lane"}
            already = any(t["bag_id"] == bag_id and t["lane"] == lane for t in self.scores.trials(officer))
            if not already:
                self.scores.record(officer, "false_alarm", lane, bag_id)
                self.counters["tip_false_alarm"] += 1
            return {"ok": True, "tip": False, "result": "false_alarm",
                    "message": "Not a projection. Treat the bag as suspect and follow the search procedure."}
        if prior is not None:
            return {"ok": True, "tip": True, "result": prior, "threat": p.threat, "box": p.box,
                    "message": f"Projection already scored for you: {prior}."}
        rt = round(now - p.shown_t, 2)
        self.scores.record(officer, "hit", lane, bag_id, p.uuid, p.threat, p.shown_t, rt)
        store, _ = self.stores.get()
        store.add_decision({"uuid": f"{p.uuid}:{officer}", "alert_uuid": p.uuid, "officer": officer,
                            "decision": "tip_hit", "contraband_kind": p.threat, "note": f"response {rt} s", "t": now})
        self.counters["tip_hit"] += 1
        return {"ok": True, "tip": True, "result": "hit", "threat": p.threat, "box": p.box, "response_s": rt,
                "message": f"Threat Image Projection ({p.threat}) found in {rt} s. This was a training image."}
