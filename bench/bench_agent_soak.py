"""Soak: the agent with one X-ray lane (scenario at 10x) and one receiver (2.4 MS/s) for 10 minutes.

Prints RSS over time (the agent is one process; its threads share it), alert latency from frame
arrival to committed alert (p50/p99, the agent's own measure from /metrics), and IQ and frame drops.
Targets (issue 7): RSS flat and <= 500 MB; p99 < 200 ms; zero drops at nominal rates.
--quick runs 60 s. Writes bench/results/agent_soak.json.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.agent_rig import Proc, agent_config  # noqa: E402


def start_sim(tmp: Path, name: str, scenario: Path) -> tuple[Proc, dict]:
    import subprocess

    p = Proc(name, ["sim", "run", "--scenario", str(scenario), "--state-dir", str(tmp / name)], tmp,
             stdout=subprocess.PIPE)
    for line in p.p.stdout:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("ready"):
            return p, msg["devices"]
    raise RuntimeError(f"{name} did not start: {p.text()[-2000:]}")


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, val = line.rpartition(" ")
        try:
            out[key] = float(val)
        except ValueError:
            pass
    return out


def pick(m: dict, name: str, **labels) -> float:
    for k, v in m.items():
        if k.startswith(name + "{") and all(f'{a}="{b}"' in k for a, b in labels.items()):
            return v
    return float("nan")


def main() -> int:
    duration = 60.0 if "--quick" in sys.argv else 600.0
    tmp = Path(tempfile.mkdtemp(prefix="zastava-soak-"))
    sims = []
    agent = None
    try:
        xsim, xdev = start_sim(tmp, "simx", ROOT / "bench" / "scenarios" / "soak_xray.toml")
        sims.append(xsim)
        rsim, rdev = start_sim(tmp, "simr", ROOT / "bench" / "scenarios" / "soak_radio.toml")
        sims.append(rsim)
        cfg = agent_config(tmp, xdev, receivers=[{"id": "rx433", "source": rdev["receiver:rx433"]["iq"],
                                                   "center_hz": 433.92e6, "rate_hz": 2.4e6}])
        text = cfg.read_text()
        port = re.search(r'\[metrics\]\nbind = "127.0.0.1:(\d+)"', text).group(1)
        murl = f"http://127.0.0.1:{port}/metrics"
        agent = Proc("agent", ["agent", "--config", str(cfg)], tmp)
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:
            time.sleep(10 if duration > 100 else 5)
            if agent.p.poll() is not None:
                raise RuntimeError(f"agent died: {agent.text()[-3000:]}")
            try:
                m = metrics(murl)
            except OSError:
                continue
            samples.append({
                "t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(agent.p.pid), 1),
                "frames": pick(m, "zastava_pipeline_total", pipeline="lane1", counter="frames"),
                "iq_blocks": pick(m, "zastava_pipeline_total", pipeline="rx433", counter="blocks"),
                "lat_p50_ms": pick(m, "zastava_pipeline_gauge", pipeline="lane1", gauge="latency_ms_p50"),
                "lat_p99_ms": pick(m, "zastava_pipeline_gauge", pipeline="lane1", gauge="latency_ms_p99"),
                "iq_dropped": pick(m, "zastava_pipeline_total", pipeline="rx433", counter="dropped"),
                "iq_driver_drops": pick(m, "zastava_pipeline_total", pipeline="rx433", counter="iq_drops_driver"),
                "frames_dropped": pick(m, "zastava_pipeline_total", pipeline="lane1", counter="dropped"),
            })
            print(json.dumps(samples[-1]), flush=True)
    finally:
        if agent is not None:
            agent.terminate()
        for s in sims:
            s.terminate()
    last = samples[-1] if samples else {}
    rss = [s["rss_mb"] for s in samples]
    half = rss[len(rss) // 2:] or rss
    result = {
        "duration_s": duration, "samples": samples,
        "rss_mb_max": max(rss) if rss else None,
        "rss_mb_growth_second_half": round(half[-1] - half[0], 1) if half else None,
        "latency_ms_p50": last.get("lat_p50_ms"), "latency_ms_p99": last.get("lat_p99_ms"),
        "frames": last.get("frames"), "iq_blocks": last.get("iq_blocks"),
        "iq_dropped": last.get("iq_dropped"), "iq_driver_drops": last.get("iq_driver_drops"),
        "frames_dropped": last.get("frames_dropped"),
        "iq_realtime_blocks_expected": round(duration * 2.4e6 / 262144),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "agent_soak.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'t (s)':>7}{'RSS MB':>9}{'frames':>8}{'IQ blocks':>11}{'p50 ms':>8}{'p99 ms':>8}{'IQ drop':>9}")
    for s in samples:
        print(f"{s['t_s']:>7}{s['rss_mb']:>9}{s['frames']:>8.0f}{s['iq_blocks']:>11.0f}{s['lat_p50_ms']:>8}"
              f"{s['lat_p99_ms']:>8}{s['iq_dropped'] + s['iq_driver_drops']:>9.0f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
