"""Run the simulator, the agent (and optionally central) as real processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.demo import write_toml
from tests.conftest import REPO, free_port, wait_for

SCENARIOS = Path(__file__).parent / "scenarios"


class Proc:
    def __init__(self, name: str, argv: list[str], cwd: Path, stdout=None, env: dict | None = None):
        self.name = name
        self.log = open(cwd / f"{name}.log", "ab")
        self.p = subprocess.Popen([sys.executable, "-m", "edge_agent", *argv], cwd=cwd, stdout=stdout or self.log,
                                  stderr=self.log, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})

    def terminate(self, timeout: float = 10) -> float:
        """SIGTERM; returns the seconds the process took to exit."""
        if self.p.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            return float("inf")
        return time.monotonic() - t0

    def kill9(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")


def start_sim(tmp: Path, scenario: str, extra: list[str] | None = None) -> tuple[Proc, dict]:
    sim = Proc("sim", ["sim", "run", "--scenario", str(SCENARIOS / scenario), "--state-dir", str(tmp / "sim"),
                       *(extra or [])], tmp, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = sim.p.stdout.readline()
        if not line:
            if sim.p.poll() is not None:
                raise AssertionError(f"simulator exited: {sim.text()}")
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("ready"):
            return sim, msg["devices"]
    raise AssertionError("simulator not ready in 60 s")


def agent_config(tmp: Path, devices: dict, *, receivers: list[dict] | None = None, central: dict | None = None,
                 model: str | None = None, lane_extra: dict | None = None, storage: dict | None = None) -> Path:
    sections = {
        "storage": {"dir": str(tmp / "agent"), "quota_mb": 512, "hard_limit_mb": 768, **(storage or {})},
        "console": {"bind": f"127.0.0.1:{free_port()}", "secure_cookies": False},
        "metrics": {"bind": f"127.0.0.1:{free_port()}"},
    }
    shipped = REPO / "models" / "xray" / "zastava-xray.onnx"
    sections["xray_detector"] = {"model": model or (str(shipped) if shipped.exists() else "physics")}
    if central:
        sections["central"] = central
    lanes = []
    if "scanner" in devices:
        lane = {"id": "lane1", "source": devices["scanner"]["spool_dicos"]}
        if "serial" in devices:
            lane["control"] = devices["serial"]["control"]
        lane.update(lane_extra or {})
        lanes.append(lane)
    path = tmp / "zastava.toml"
    write_toml(path, {"checkpoint_id": "TEST-CP"}, sections, {"lanes": lanes, "receivers": receivers or []})
    return path


def start_agent(tmp: Path, config: Path, env: dict | None = None) -> Proc:
    return Proc("agent", ["agent", "--config", str(config)], tmp, env=env)


def ground_truth(tmp: Path) -> list[dict]:
    p = tmp / "sim" / "ground_truth.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def spool_backlog(tmp: Path) -> int:
    d = tmp / "sim" / "spool" / "dicos"
    return sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.exists() else 0


def wait_bags(tmp: Path, n: int, timeout: float = 60) -> list[dict]:
    return wait_for(lambda: (gt := ground_truth(tmp)) and len(gt) >= n and gt, timeout=timeout,
                    what=f"{n} simulated bags")
