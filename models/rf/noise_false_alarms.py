"""False alarms per hour on emitter-free receiver noise, over a long stretch (default 60 min).

The dataset's emitter-free captures hold seconds of noise, too little to tell 1 per hour from
0; this streams the simulator's band with no emitter (thermal noise, DC spike, IQ imbalance, cu8
quantisation) through the RadioMonitor (band-only judgement, so every new emitter is counted)
and the bare front end, block by block, as the agent would.

  .venv/bin/python -m models.rf.noise_false_alarms --minutes 60 [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from detectors.rf.frontend import FrontEnd
from detectors.rf.tracker import Tracker
from hw_sim.rf.band import Band, Flaws, to_cu8

RATE, CENTER, BLOCK = 2.4e6, 433.92e6, 1 << 18


def run(minutes: float, seed: int = 1, log=print) -> dict:
    band = Band([], center_hz=CENTER, rate_hz=RATE, rng=np.random.default_rng(seed),
                flaws=Flaws(dc_dbfs=-45.0, iq_gain=1.01, iq_phase_deg=1.0))
    fe, tr = FrontEnd(), Tracker()
    n_blocks = int(minutes * 60 * RATE / BLOCK)
    bursts, emitters = 0, 0
    t0 = time.time()
    for i in range(n_blocks):
        res = fe.process(to_cu8(band.read(BLOCK)).tobytes(), i * BLOCK / RATE, CENTER, RATE)
        if res is None:
            continue
        bursts += len(res.bursts)
        emitters += sum(new for _, _, new in tr.update(res))
        if log and i and i % 2000 == 0:
            log(f"  {i * BLOCK / RATE / 60:.1f} min: {emitters} new emitters, {bursts} bursts")
    hours = n_blocks * BLOCK / RATE / 3600
    return {"hours": round(hours, 4), "new_emitters": emitters, "bursts": bursts,
            "false_alarms_per_hour": round(emitters / hours, 3), "bursts_per_hour": round(bursts / hours, 3),
            "seed": seed, "wall_s": round(time.time() - t0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    print(json.dumps(run(a.minutes, a.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
