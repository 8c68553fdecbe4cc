"""Simulated SDR receiver: how many MS/s of cu8 one receiver synthesises on one core.

Measured for an empty band, the shipped scenarios' receivers, and a busy band of seven
emitters (WFM, GMSK, LoRa, GFSK, NFM, OOK, swept jammer), each beside the bare numpy work every
receiver must do whatever its emitters (complex Gaussian noise + 8-bit quantisation) on the same
number of samples in the same run. Also the rtl_tcp server streaming flat out (speed 0) to a bare
socket reader over loopback. Target: > 3.2 MS/s per receiver (the most an RTL-SDR gives).

  .venv/bin/python bench/bench_sim_rf.py [--quick]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hw_sim.clock import SimClock  # noqa: E402
from hw_sim.rf.band import Band, Emitter, to_cu8  # noqa: E402
from hw_sim.rf.rtltcp_server import RtlTcpServer  # noqa: E402
from hw_sim.scenario import SCENARIO_DIR, load  # noqa: E402

HERE = Path(__file__).resolve().parent
RATE, CENTER = 2.4e6, 433.92e6
CHUNK = 1 << 15  # what the server synthesises per step at 2.4 MS/s


def busy_band() -> list[Emitter]:
    c = CENTER
    return [Emitter("wfm", c - 900e3, 20.0), Emitter("gmsk", c + 900e3, 8.0),
            Emitter("lora", c + 200e3, 10.0, {"sf": 9}), Emitter("fsk2", c + 500e3, 15.0),
            Emitter("nfm", c - 300e3, 12.0), Emitter("ook", c + 20e3, 15.0),
            Emitter("jammer", c - 600e3, 5.0, {"kind": "sweep", "bw_hz": 200e3})]


def cpu_rate(fn, samples: int, repeats: int) -> float:
    """Best-of MS/s in this process's CPU time (one core's work, whatever the neighbours do)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return samples / max(best, 1e-9) / 1e6


def synth_rate(emitters: list[Emitter], samples: int, repeats: int, rate: float = RATE,
               center: float = CENTER) -> float:
    band = Band(emitters, center_hz=center, rate_hz=rate, rng=np.random.default_rng(0))
    out = np.empty(2 * CHUNK, np.uint8)

    def run():
        for _ in range(samples // CHUNK):
            to_cu8(band.read(CHUNK), out=out)
    return cpu_rate(run, samples, repeats)


def bare_rate(samples: int, repeats: int) -> float:
    rng = np.random.default_rng(0)

    def run():
        for _ in range(samples // CHUNK):
            x = rng.standard_normal(2 * CHUNK, dtype=np.float32)
            np.clip(x * 0.02 * 128 + 128, 0, 255).astype(np.uint8)
    return cpu_rate(run, samples, repeats)


def _serve_child(q, samples: int) -> None:
    """Child process: the server alone, so its CPU time is its own (not the reader's)."""
    band = Band(busy_band(), center_hz=CENTER, rate_hz=RATE, rng=np.random.default_rng(0))
    srv = RtlTcpServer(band, clock=SimClock(0.0)).start()
    q.put(srv.port)
    while srv.stats()["samples_sent"] == 0:
        time.sleep(0.001)
    c0, n0 = time.process_time(), srv.stats()["samples_sent"]
    while srv.stats()["samples_sent"] < samples:
        time.sleep(0.01)
    c1, n1 = time.process_time(), srv.stats()["samples_sent"]
    q.put((n1 - n0) / max(c1 - c0, 1e-9) / 1e6)
    srv.close()


def server_rate(samples: int) -> tuple[float, float]:
    """(wall MS/s received by a bare socket reader, server CPU MS/s), server flat out in its own process."""
    import multiprocessing as mp

    q = mp.Queue()
    p = mp.Process(target=_serve_child, args=(q, samples), daemon=True)
    p.start()
    port = q.get(timeout=30)
    with socket.create_connection(("127.0.0.1", port)) as s:
        buf = bytearray(1 << 20)
        got = 0
        t0 = time.perf_counter()
        while got < 12 + 2 * samples:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
        wall = (got - 12) / 2 / (time.perf_counter() - t0) / 1e6
        cpu = q.get(timeout=60)
    p.join(10)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    a = ap.parse_args()
    samples, repeats = ((1 << 21), 2) if a.quick else ((1 << 23), 3)
    rows = []
    bare = bare_rate(samples, repeats)
    rows.append(("bare numpy: noise + cu8 (no emitters)", bare))
    rows.append(("band: noise only", synth_rate([], samples, repeats)))
    for name in ("calm_day", "smuggling", "demo"):
        path = SCENARIO_DIR / f"{name}.toml"
        if not path.exists():
            continue
        for rx in load(path).receivers:
            ems = [e.emitter() for e in rx.emitters]
            for e in ems:  # measure with every emitter keyed (the worst case of its schedule)
                e.schedule, e.period_s = None, None
            band_rate = synth_rate(ems, samples, repeats, rx.rate_hz, rx.center_hz)
            rows.append((f"scenario {name}/{rx.id}: {len(ems)} emitters @ {rx.rate_hz / 1e6:g} MS/s", band_rate))
    rows.append(("busy band: 7 emitters all keyed", synth_rate(busy_band(), samples, repeats)))
    wall, cpu = server_rate(samples)
    rows.append(("rtl_tcp server flat out, busy band: server CPU", cpu))
    rows.append(("rtl_tcp server flat out, busy band: received (wall, shared box)", wall))
    print(f"{'what':<62} {'MS/s':>8}")
    for name, r in rows:
        print(f"{name:<62} {r:8.2f}")
    worst = min(r for n, r in rows if not n.startswith("bare") and "wall" not in n)
    print(f"\nslowest receiver: {worst:.2f} MS/s (target > 3.2 MS/s on one core)")
    res = {"bench": "sim_rf", "quick": a.quick, "samples": samples, "python": platform.python_version(),
           "numpy": np.__version__, "rows": [{"what": n, "msps": round(r, 3)} for n, r in rows],
           "slowest_receiver_msps": round(worst, 3), "target_msps": 3.2}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "sim_rf.json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
