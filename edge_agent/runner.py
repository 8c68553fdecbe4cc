"""Run the checkpoint agent: every lane and receiver, the store, the sync sender, the console.

  zastava agent --config /etc/zastava/zastava.toml

Under systemd (Type=notify) it says READY once every pipeline runs, pings the watchdog while
every worker's heartbeat is fresh (a hung pipeline stops the pings, so systemd restarts the
agent), and keeps STATUS current. SIGTERM stops everything within 5 seconds.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import threading
import time
from pathlib import Path

from common import clock, sdnotify
from edge_agent.pipeline import TRANSIENT

log = logging.getLogger("zastava.agent")

SUPERVISOR_BUSY_S = 5.0  # see Agent.__init__: well inside systemd's WatchdogSec (30 s)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="path to zastava.toml")


class Agent:
    def __init__(self, cfg, config_path: str = "config"):
        from edge_agent.evidence import FileStore
        from edge_agent.fusion import Fusion
        from edge_agent.state import AgentState
        from edge_agent.store import Store

        self.cfg = cfg
        self.config_path = config_path  # named when a model it configures is refused
        self.stop = threading.Event()
        self.root = Path(cfg.storage.dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.store_path = self.root / "store.sqlite"
        self.files_root = self.root / "files"
        # migrates; this connection is the supervisor's, which pings systemd's watchdog (30 s): its
        # health writes wait at most SUPERVISOR_BUSY_S for a database another process holds locked
        self.store = Store(self.store_path, SUPERVISOR_BUSY_S)
        # the supervisor makes room on a full disk too: the lanes do before each bag, but with no
        # room a C-STORE inbox refuses every image and no bag ever comes to make it
        self.files = FileStore(self.store, self.files_root, cfg.storage.quota_mb << 20, cfg.storage.hard_limit_mb << 20,
                               cfg.storage.min_free_mb << 20)
        self.state = AgentState(cfg.checkpoint_id)
        self.fusion = Fusion(cfg.fusion_window_s)
        self.lanes: list = []
        self.receivers: list = []
        self.sender = None
        self.console = None
        self.metrics = None

    def start(self) -> None:
        cfg = self.cfg
        if cfg.lanes:
            from edge_agent.xray_lane import XrayLane

            detector = cfg.xray_detector.load(self.config_path)
            for lane in cfg.lanes:
                xl = XrayLane(cfg, lane, detector, self.state, self.store_path, self.files_root, self.fusion,
                              self.stop)
                xl.start()
                self.lanes.append(xl)
        if cfg.receivers:
            from edge_agent.radio import RadioReceiver
            from edge_agent.radio_setup import make_monitor

            for rx in cfg.receivers:
                rr = RadioReceiver(cfg, rx, make_monitor(cfg, self.root), self.state, self.store_path,
                                   self.files_root, self.fusion, self.stop)
                rr.start()
                self.receivers.append(rr)
        if cfg.central is not None:
            from edge_agent.downlink import Downlink
            from sync.sender import Sender

            self.downlink = Downlink(cfg, self.root, self.receivers)
            c = cfg.central
            self.sender = Sender(self.store_path, cfg.checkpoint_id, c.endpoints, c.server_public_key,
                                 c.secret_key, self.files_root, heartbeat_s=c.heartbeat_s, batch=c.batch,
                                 on_downlink=self.downlink.apply)
            self.sender.start()
            self.state.link["configured"] = True
        if cfg.metrics.bind:
            from edge_agent import metrics

            self.metrics = metrics.serve(cfg.metrics.bind, self.snapshot)
        from edge_agent.console.server import start_console

        self.console = start_console(cfg, self.state, self.store_path, self.files_root, self.stop)

    def snapshot(self) -> dict:
        s = self.state.snapshot()
        s["backlog"] = self.state.link.get("backlog", 0)
        return s

    def _refresh(self, persist: bool) -> None:
        for xl in self.lanes:
            self.state.set_device(f"{xl.lane.id}.source", "xray", xl.source.health().as_dict())
            if xl.control is not None:
                self.state.set_device(f"{xl.lane.id}.control", "control", xl.control.health().as_dict())
            self.state.pipelines[xl.lane.id] = {**xl.report(), "worker_age_s": round(xl.worker.age(), 1)}
        for rr in self.receivers:
            self.state.set_device(f"{rr.rx.id}.source", "iq", rr.source.health().as_dict())
            self.state.pipelines[rr.rx.id] = {**rr.report(), "worker_age_s": round(rr.worker.age(), 1)}
        self.files.make_room()  # one statvfs when there is room
        floor = self.cfg.storage.min_free_mb << 20
        free = shutil.disk_usage(self.root).free
        self.state.storage = {"free_bytes": free, "min_free_bytes": floor, "low": bool(floor and free < floor),
                              "deleted_for_disk": self.files.deleted_for_disk}
        if self.sender is not None:
            self.state.link.update(self.sender.link_state())
        synced, max_error = clock.kernel_synced()
        self.state.clock = {"synced": synced, "max_error_s": max_error,
                            "offset_s": clock.offset_now(self.state.link.get("clock_measure"))}
        if self.sender is not None:
            self.sender.set_health(self.snapshot())
        else:
            self.state.link["backlog"] = self.store.backlog()
        if persist:
            for dev, h in self.state.devices.items():
                self.store.record_health(dev, h.get("role", ""), h.get("state", "?"), h)

    def hung_workers(self) -> list[str]:
        ws = [xl.worker for xl in self.lanes] + [rr.worker for rr in self.receivers]
        return [w.name for w in ws if w is not None and w.age() > self.cfg.hung_after_s]

    def status_line(self) -> str:
        p = self.state.pipelines
        parts = [f"{k}: {v.get('frames', v.get('blocks', 0))} in, {v.get('alerts', 0)} alerts" for k, v in p.items()]
        link = self.state.link
        if link.get("configured"):
            parts.append(f"central {'up' if link.get('connected') else 'DOWN'}, backlog {link.get('backlog', 0)}")
        return "; ".join(parts) or "idle"

    def run(self) -> int:
        self.start()
        sdnotify.ready(self.status_line())
        log.info("agent %s running: %d lane(s), %d receiver(s)", self.cfg.checkpoint_id, len(self.lanes),
                 len(self.receivers))
        tick = 0
        hung_reported = False
        while not self.stop.wait(1.0):
            tick += 1
            try:
                self._refresh(persist=tick % 10 == 0)
            except TRANSIENT as e:  # a locked database, a disk refusing: the next refresh tries again
                log.warning("health refresh failed: %s: %s", type(e).__name__, e)
            except Exception:
                log.exception("health refresh failed")
            hung = self.hung_workers()
            if hung:
                if not hung_reported:
                    log.error("pipeline hung: %s; no more watchdog pings, systemd will restart the agent",
                              ", ".join(hung))
                    hung_reported = True
                sdnotify.status(f"HUNG: {', '.join(hung)}")
                continue
            sdnotify.watchdog()
            if tick % 5 == 0:
                sdnotify.status(self.status_line())
        return 0

    def shutdown(self) -> None:
        t0 = time.monotonic()
        sdnotify.stopping()
        self.stop.set()
        for part in self.lanes + self.receivers:
            part.close()
        if self.sender is not None:
            self.sender.stop(timeout=2.0)
        if self.console is not None:
            self.console.stop(timeout=1.5)
        if self.metrics is not None:
            self.metrics.shutdown()
        for part in self.lanes + self.receivers:
            if part.worker is not None:
                part.worker.join(max(0.1, 4.0 - (time.monotonic() - t0)))
        self.store.close()
        log.info("agent stopped in %.2f s", time.monotonic() - t0)


def run(args: argparse.Namespace) -> int:
    from edge_agent.config import load

    cfg = load(args.config)
    agent = Agent(cfg, str(args.config))

    def on_signal(signum, _frame):
        log.info("signal %d: stopping", signum)
        agent.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return agent.run()
    finally:
        agent.shutdown()
