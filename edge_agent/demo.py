"""Run the whole system on this machine: simulator, agent and central command on loopback.

Embedded defaults: SQLite at both ends, CurveZMQ keys made for this run, users with passwords
made for this run (printed once, stored only as argon2 hashes). Everything lives in
--state-dir (default ./demo-state). Ctrl-C stops every process cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("zastava.demo")

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "hw_sim" / "scenarios" / "demo.toml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=Path("demo-state"), help="where the demo keeps its files")
    p.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="simulator scenario")
    p.add_argument("--speed", type=float, default=None, help="simulator time scale (default: the scenario's)")
    p.add_argument("--console-port", type=int, default=8080, help="officer console port (next free if busy)")
    p.add_argument("--dashboard-port", type=int, default=8081, help="command dashboard port (next free if busy)")
    p.add_argument("--for", dest="duration", type=float, default=0, help="stop after this many seconds (0 = Ctrl-C)")
    p.add_argument("--keep", action="store_true", help="keep the previous run's store instead of starting fresh")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(preferred: int) -> int:
    for p in range(preferred, preferred + 50):
        if port_free(p):
            return p
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting (see its log)")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_toml(path: Path, top: dict, sections: dict[str, dict], arrays: dict[str, list[dict]]) -> None:
    """A tiny TOML writer for our flat configs (tomllib reads TOML but the stdlib cannot write it)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, sec in sections.items():
        lines += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in sec.items()]
    for name, items in arrays.items():
        for it in items:
            lines += ["", f"[[{name}]]"] + [f"{k} = {toml_value(v)}" for k, v in it.items()]
    path.write_text("\n".join(lines) + "\n")


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dir = args.state_dir.resolve()
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs: list = []

    def spawn(self, name: str, *argv: str, stdout=None) -> subprocess.Popen:
        logf = open(self.dir / f"{name}.log", "ab")
        self.logs.append(logf)
        cmd = [sys.executable, "-m", "edge_agent", *argv]
        p = subprocess.Popen(cmd, stdout=stdout or logf, stderr=logf, cwd=self.dir,
                             start_new_session=True)  # Ctrl-C reaches us only; we stop them in order
        self.procs.append((name, p))
        return p

    def prepare(self) -> None:
        if self.dir.exists() and not self.args.keep:
            shutil.rmtree(self.dir)
        (self.dir / "keys").mkdir(parents=True, exist_ok=True)

    def start(self) -> dict:
        from common.webauth import add_user
        from sync.keys import make_keypair

        d = self.dir
        cp_id = "DEMO-CP-01"
        hub_pub, hub_sec = make_keypair(d / "keys", "hub")
        cp_pub, cp_sec = make_keypair(d / "keys", cp_id)
        hub_port = pick_port(7100)
        dash_port = pick_port(self.args.dashboard_port)
        console_port = pick_port(self.args.console_port)
        metrics_port = pick_port(9108)

        passwords = {role: secrets.token_urlsafe(9) for role in ("officer", "supervisor", "engineer")}
        for role, pw in passwords.items():
            add_user(d / "agent-users.toml", role, role, pw)
            add_user(d / "central-users.toml", role, role, pw)

        (d / "checkpoints").mkdir(exist_ok=True)
        shutil.copy(cp_pub, d / "checkpoints" / f"{cp_id}.key")
        write_toml(d / "central.toml", {}, {
            "hub": {"bind": f"tcp://127.0.0.1:{hub_port}", "secret_key": str(hub_sec),
                    "checkpoints_dir": str(d / "checkpoints"), "store": f"sqlite:///{d / 'central' / 'central.sqlite'}",
                    "data_dir": str(d / "central")},
            "dashboard": {"bind": f"127.0.0.1:{dash_port}", "users_file": str(d / "central-users.toml"),
                          "secure_cookies": False},
        }, {})
        central = self.spawn("central", "central", "--config", str(d / "central.toml"))
        wait_port(hub_port, 30, central, "central hub")

        from hw_sim.scenario import load as load_scenario

        scenario = load_scenario(self.args.scenario)  # the demo harness reads it for the receivers' tunings
        tunings = {rx.id: (rx.center_hz, rx.rate_hz) for rx in scenario.receivers}
        sim_args = ["sim", "run", "--scenario", str(self.args.scenario.resolve()), "--state-dir", str(d / "sim"),
                    "--central-target", f"127.0.0.1:{hub_port}"]
        if self.args.speed is not None:
            sim_args += ["--speed", str(self.args.speed)]
        sim = self.spawn("sim", *sim_args, stdout=subprocess.PIPE)
        ready = self._read_ready(sim)
        devs = ready["devices"]

        lanes, receivers = [], []
        scanner = devs.get("scanner", {})
        if scanner:
            source = scanner.get("spool_dicos") or scanner.get("spool_png") or next(iter(scanner.values()))
            lane = {"id": "lane1", "source": source}  # stop_belt_on would halt the demo belt for good
            if "serial" in devs:
                lane["control"] = devs["serial"]["control"]
            lanes.append(lane)
        for key, urls in devs.items():
            if key.startswith("receiver:"):
                rid = key.split(":", 1)[1]
                center, rate = tunings[rid]
                receivers.append({"id": rid, "source": urls["iq"], "center_hz": center, "rate_hz": rate})
        endpoint = devs.get("central_link", {}).get("endpoint", f"tcp://127.0.0.1:{hub_port}")
        models = Path(__file__).resolve().parent.parent / "models"
        xray_model = models / "xray" / "zastava-xray.onnx"
        rf_model = models / "rf" / "zastava-rf.onnx"
        sections = {
            "storage": {"dir": str(d / "agent"), "quota_mb": 1024, "hard_limit_mb": 1536},
            "console": {"bind": f"127.0.0.1:{console_port}", "users_file": str(d / "agent-users.toml"),
                        "secure_cookies": False, "tip_rate": 0.05},
            "metrics": {"bind": f"127.0.0.1:{metrics_port}"},
            "central": {"endpoints": [endpoint], "server_public_key": str(hub_pub), "secret_key": str(cp_sec)},
            "xray_detector": {"model": str(xray_model) if xray_model.exists() else "physics"},
        }
        if rf_model.exists():
            sections["radio"] = {"classifier": str(rf_model)}
        write_toml(d / "zastava.toml", {"checkpoint_id": cp_id}, sections, {"lanes": lanes, "receivers": receivers})
        agent = self.spawn("agent", "agent", "--config", str(d / "zastava.toml"))
        wait_port(console_port, 60, agent, "agent console")
        wait_port(dash_port, 30, central, "central dashboard")
        return {"console": f"http://127.0.0.1:{console_port}/", "dashboard": f"http://127.0.0.1:{dash_port}/",
                "metrics": f"http://127.0.0.1:{metrics_port}/metrics", "passwords": passwords,
                "scenario": ready.get("scenario"), "devices": devs}

    def _read_ready(self, sim: subprocess.Popen) -> dict:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = sim.stdout.readline()
            if not line:
                if sim.poll() is not None:
                    raise RuntimeError(f"simulator exited with code {sim.returncode} (see {self.dir / 'sim.log'})")
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("ready"):
                return msg
        raise RuntimeError("simulator did not report ready within 60 s")

    def watch(self) -> int:
        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        while deadline is None or time.monotonic() < deadline:
            for name, p in self.procs:
                if p.poll() is not None:
                    print(f"zastava demo: {name} exited with code {p.returncode}; see {self.dir / (name + '.log')}",
                          file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        for name, p in reversed(self.procs):  # agent first, then simulator, then central
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=8)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within 8 s; killing it", name)
                    p.kill()
                    p.wait()
        for f in self.logs:
            f.close()


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the demo the same way Ctrl-C does


def run(args: argparse.Namespace) -> int:
    demo = Demo(args)
    demo.prepare()
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C stops the demo however it was started: a background job of a script (`make test &`,
    # CI runners) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it,
    # so the demo sat through the Ctrl-C its test sends. The agent, hub and simulator install
    # their own SIGINT handlers likewise.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        info = demo.start()
        pw = info["passwords"]
        print(f"""
Zastava demo is running ({info['scenario']}), all on loopback.

  Officer console    {info['console']}
  Command dashboard  {info['dashboard']}
  Agent metrics      {info['metrics']}

  Log in with        officer / {pw['officer']}
                     supervisor / {pw['supervisor']}
                     engineer / {pw['engineer']}
  (passwords made for this run; only their argon2 hashes are stored)

  Logs and state     {demo.dir}
  Press Ctrl-C to stop everything.
""", flush=True)
        return demo.watch()
    except KeyboardInterrupt:
        return 0
    finally:
        print("zastava demo: stopping agent, simulator and central ...", file=sys.stderr, flush=True)
        demo.stop()
