"""Threads or processes for the agent's pipelines? Measured, not guessed.

The radio pipeline (RadioMonitor.process on 2.4 MS/s IQ) runs while an X-ray inference runs:
  1. radio alone, one thread;
  2. radio and X-ray in two threads of one process (what the agent does);
  3. radio here and X-ray in a child process.
If (2) keeps the radio well above real time and close to (3), the GIL is not in the way (numpy
FFT, onnxruntime and OpenCV release it) and threads win: no copies of IQ or images between
processes, one store connection per thread. Prints a table and writes bench/results/agent_pipelines.json.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RATE = 2.4e6
BLOCK = 262144


def make_iq(seconds: float) -> list[np.ndarray]:
    from hw_sim.rf.band import Emitter, synthesize

    ems = [Emitter("lora", 433.7e6, 15, {"sf": 7, "bw_hz": 125e3}, period_s=1.0, duty=0.3),
           Emitter("ook", 433.92e6, 18, {}, period_s=2.0, duty=0.2),
           Emitter("fsk2", 434.5e6, 12, {"baud": 9600.0, "deviation_hz": 4800.0})]
    x = synthesize(ems, center_hz=433.92e6, rate_hz=RATE, n=int(seconds * RATE), rng=np.random.default_rng(1))
    return [x[i:i + BLOCK] for i in range(0, len(x) - BLOCK + 1, BLOCK)]


def radio_run(blocks: list[np.ndarray], seconds: float) -> float:
    """MS/s the RadioMonitor sustains over `seconds` of wall time (cycling the blocks)."""
    from edge_agent.radio_setup import make_monitor_for_bench

    mon = make_monitor_for_bench()
    t0 = time.perf_counter()
    n = 0
    i = 0
    t = 1.7e9
    while time.perf_counter() - t0 < seconds:
        b = blocks[i % len(blocks)]
        mon.process(b, t, 433.92e6, RATE)
        t += len(b) / RATE
        n += len(b)
        i += 1
    return n / (time.perf_counter() - t0) / 1e6


def xray_loop(stop, counter) -> None:
    from detectors.xray.detector import load_detector
    from hw_sim.xray.scene import make_bag

    model = ROOT / "models" / "xray" / "zastava-xray.onnx"
    det = load_detector(model if model.exists() else "physics", "zastava")
    bag = make_bag(np.random.default_rng(3), "narcotics")
    while not stop.is_set():
        det.detect(bag.high, bag.low)
        with counter.get_lock():
            counter.value += 1


def main() -> int:
    quick = "--quick" in sys.argv
    secs = 5.0 if quick else 20.0
    blocks = make_iq(2.0)
    out = {"block_samples": BLOCK, "rate_hz": RATE, "seconds_each": secs}

    out["radio_alone_msps"] = radio_run(blocks, secs)

    counter = mp.Value("i", 0)
    stop = threading.Event()
    th = threading.Thread(target=xray_loop, args=(stop, counter), daemon=True)
    th.start()
    time.sleep(1.0)  # let the model load
    c0, t0 = counter.value, time.perf_counter()
    out["radio_with_xray_thread_msps"] = radio_run(blocks, secs)
    out["xray_thread_fps"] = (counter.value - c0) / (time.perf_counter() - t0)
    stop.set()
    th.join()

    ctx = mp.get_context("spawn")
    counter2 = ctx.Value("i", 0)
    pstop = ctx.Event()
    p = ctx.Process(target=xray_loop, args=(pstop, counter2), daemon=True)
    p.start()
    time.sleep(3.0)
    c0, t0 = counter2.value, time.perf_counter()
    out["radio_with_xray_process_msps"] = radio_run(blocks, secs)
    out["xray_process_fps"] = (counter2.value - c0) / (time.perf_counter() - t0)
    pstop.set()
    p.join(5)

    out["realtime_factor_threads"] = out["radio_with_xray_thread_msps"] / (RATE / 1e6)
    out["realtime_factor_processes"] = out["radio_with_xray_process_msps"] / (RATE / 1e6)
    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "agent_pipelines.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    print(f"\n{'setup':<34}{'radio MS/s':>12}{'x real time':>13}{'X-ray fps':>11}")
    print(f"{'radio alone':<34}{out['radio_alone_msps']:>12.1f}{out['radio_alone_msps'] / 2.4:>13.1f}{'-':>11}")
    print(f"{'radio + X-ray thread (agent)':<34}{out['radio_with_xray_thread_msps']:>12.1f}"
          f"{out['realtime_factor_threads']:>13.1f}{out['xray_thread_fps']:>11.1f}")
    print(f"{'radio + X-ray process':<34}{out['radio_with_xray_process_msps']:>12.1f}"
          f"{out['realtime_factor_processes']:>13.1f}{out['xray_process_fps']:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
