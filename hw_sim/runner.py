"""`zastava sim run`: start every device of a scenario, play its faults, stop cleanly.

Prints one JSON line on stdout when all devices listen: {"ready": true, "devices": {...}} with
each device's URLs, so that the demo and the tests connect without guessing ports.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

from hw_sim.clock import SimClock
from hw_sim.scenario import load

log = logging.getLogger("zastava.sim")


def run_scenario(path: Path, speed: float | None = None, seed: int | None = None, state_dir: Path | None = None,
                 central_target: str | None = None) -> int:
    sc = load(path)
    if central_target and sc.central_link is not None:
        sc.central_link.target = central_target
    speed = sc.speed if speed is None else speed
    seed = sc.seed if seed is None else seed
    state_dir = Path(state_dir or Path.cwd() / "sim-state")
    state_dir.mkdir(parents=True, exist_ok=True)
    clock = SimClock(speed)
    stop = threading.Event()
    devices: dict[str, object] = {}

    def on_signal(signum, _frame):
        log.info("signal %d: stopping the simulator", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        if sc.serial is not None:
            from hw_sim.scanner_serial import start as start_serial

            devices["serial"] = start_serial(sc.serial, seed=seed, clock=clock, state_dir=state_dir)
        if sc.scanner is not None:
            from hw_sim.xray.device import start as start_scanner

            devices["scanner"] = start_scanner(
                sc.scanner, seed=seed, clock=clock, state_dir=state_dir, link=devices.get("serial"), stop=stop
            )
        for i, rx in enumerate(sc.receivers):
            from hw_sim.rf.device import start as start_receiver

            devices[f"receiver:{rx.id}"] = start_receiver(rx, seed=seed + 1000 + i, clock=clock, stop=stop)
        if sc.central_link is not None:
            from hw_sim.linkproxy import start as start_proxy

            devices["central_link"] = start_proxy(sc.central_link, clock=clock, stop=stop)

        print(json.dumps({"ready": True, "scenario": sc.name, "speed": speed, "seed": seed,
                          "devices": {k: d.urls for k, d in devices.items()}}), flush=True)
        log.info("simulator ready: %s at %gx", sc.name, speed)

        for f in sorted(sc.faults, key=lambda f: f.at_s):
            while clock.elapsed() < f.at_s and not stop.wait(min(0.5, max(0.01, (f.at_s - clock.elapsed()) / max(clock.speed, 1e-9)))):
                pass
            if stop.is_set():
                break
            dev = devices.get(f.device)
            if dev is None:
                log.warning("fault at %gs names device %r which this scenario does not run", f.at_s, f.device)
                continue
            log.info("fault: %s on %s for %gs", f.kind, f.device, f.duration_s)
            dev.inject(f.kind, f.duration_s, f.params)

        # wait in short slices: Python runs signal handlers in the main thread only between
        # bytecodes, so an untimed wait here would leave SIGTERM unhandled
        while not stop.wait(0.5):
            if sc.duration_s > 0 and clock.elapsed() >= sc.duration_s:
                break
    finally:
        stop.set()
        for name, d in reversed(list(devices.items())):
            try:
                d.close()
            except Exception:
                log.exception("closing %s", name)
        sys.stdout.flush()
    return 0
