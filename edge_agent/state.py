"""What the running agent knows right now, for the console, the metrics and the watchdog.

Pipelines write here; readers (console, metrics, sd_notify STATUS) only read. The console
subscribes to `events` for live updates (new bag, new alert, waterfall row, health change);
a slow subscriber loses old events rather than slowing a pipeline down.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field


@dataclass
class BagView:
    """One inspected bag as the console shows it: the display image and what was found."""

    lane: str
    bag_id: str
    t: float
    image_path: str  # pseudo-colour JPEG, relative to the files directory
    findings: list[dict]
    alert_uuids: list[str]
    width: int
    height: int
    risk: dict | None = None  # fusion: raised risk and its reason


@dataclass
class ReceiverView:
    receiver: str
    center_hz: float = 0.0
    rate_hz: float = 0.0
    waterfall: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    emitters: list[dict] = field(default_factory=list)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[queue.Queue] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def subscribe(self, maxsize: int = 256) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize)
        with self._lock:
            self._subs.append(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def publish(self, kind: str, data: dict) -> None:
        ev = {"type": kind, "t": time.time(), **data}
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(ev)
            except queue.Full:
                try:
                    q.get_nowait()
                    q.put_nowait(ev)
                except (queue.Empty, queue.Full):
                    pass
                self.dropped += 1


class AgentState:
    def __init__(self, checkpoint_id: str, bags_kept: int = 50):
        self.checkpoint_id = checkpoint_id
        self.started = time.time()
        self.events = EventBus()
        self.bags: dict[str, collections.deque[BagView]] = collections.defaultdict(
            lambda: collections.deque(maxlen=bags_kept)
        )
        self.receivers: dict[str, ReceiverView] = {}
        self.devices: dict[str, dict] = {}  # device id -> Health as dict (+ "role")
        self.pipelines: dict[str, dict] = {}  # pipeline id -> counters, state, last error
        self.link: dict = {"configured": False, "connected": False}
        self.storage: dict = {}  # storage.dir's file system: free_bytes, min_free_bytes, low
        self.clock: dict = {}  # this box's clock: synced (the kernel's word), max_error_s, offset_s (central minus ours)
        self.lock = threading.Lock()

    def add_bag(self, bag: BagView) -> None:
        with self.lock:
            self.bags[bag.lane].appendleft(bag)
        self.events.publish("bag", {"lane": bag.lane, "bag": bag.__dict__})

    def receiver(self, rid: str) -> ReceiverView:
        with self.lock:
            if rid not in self.receivers:
                self.receivers[rid] = ReceiverView(rid)
            return self.receivers[rid]

    def set_device(self, dev_id: str, role: str, health: dict) -> None:
        with self.lock:
            prev = self.devices.get(dev_id, {})
            self.devices[dev_id] = {**health, "role": role}
        if prev.get("state") != health.get("state") or prev.get("last_error") != health.get("last_error"):
            self.events.publish("device", {"device": dev_id, "health": self.devices[dev_id]})

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "checkpoint": self.checkpoint_id,
                "uptime_s": time.time() - self.started,
                "devices": dict(self.devices),
                "pipelines": {k: dict(v) for k, v in self.pipelines.items()},
                "link": dict(self.link),
                "storage": dict(self.storage),
                "clock": dict(self.clock),
            }
