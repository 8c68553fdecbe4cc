"""`zastava sim run` with receivers: a real simulator process, its ready line, a scheduled
rtl_tcp fault, and the rtltcp:// driver riding through it."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from drivers.rtltcp import RtlTcpSource
from tests.conftest import zastava_cmd

SCENARIO = """
name = "rf faults"
seed = 3
speed = 1.0
duration_s = 0

[[receivers]]
id = "rxA"
center_hz = 433.92e6
truth_file = "truth/rxA.json"

  [[receivers.emitters]]
  id = "fob"
  class = "ook"
  freq_hz = 433.92e6
  snr_db = 20
  on = [[0.0, 100.0]]

[[receivers]]
id = "rxB"
center_hz = 446.1e6
rate_hz = 1.024e6

  [[receivers.emitters]]
  class = "nfm"
  freq_hz = 446.05625e6
  snr_db = 12
  period_s = 2.0
  duty = 0.5

[[faults]]
at_s = 1.0
device = "receiver:rxA"
kind = "drop_client"
duration_s = 0.5

[[faults]]
at_s = 1.2
device = "receiver:rxB"
kind = "no_such_fault"
"""


def test_sim_run_serves_receivers_and_plays_their_faults(tmp_path):
    sc = tmp_path / "rf.toml"
    sc.write_text(SCENARIO)
    p = subprocess.Popen(zastava_cmd("sim", "run", "--scenario", str(sc), "--state-dir", str(tmp_path / "st")),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        ready = json.loads(p.stdout.readline())
        assert ready["ready"]
        urls = {k: v["iq"] for k, v in ready["devices"].items()}
        assert set(urls) == {"receiver:rxA", "receiver:rxB"} and len(set(urls.values())) == 2
        assert all(u.startswith("rtltcp://127.0.0.1:") for u in urls.values())
        truth = json.loads((tmp_path / "truth" / "rxA.json").read_text())
        assert truth[0]["id"] == "fob" and truth[0]["stop_s"] == 100.0

        src = RtlTcpSource(urls["receiver:rxA"], center_hz=433.92e6, block_samples=1 << 16, backoff_base_s=0.05)
        stop = threading.Event()
        blocks = []
        after = 0  # samples received after the driver reconnected
        deadline = time.monotonic() + 30.0  # only so that a dead stream fails instead of hanging
        for b in src.blocks(stop):
            blocks.append(b)
            if src.health().reconnects >= 1:
                after += len(b.samples)
            if after >= 2.4e6 or time.monotonic() > deadline:
                break
        h = src.health()
        src.close()
        assert h.reconnects >= 1 and h.errors >= 1 and h.state == "ok"
        assert [b.seq for b in blocks] == list(range(len(blocks)))
        # the stream came back after the dropped client: a full second of samples (2.4 MS/s) after
        # the reconnect (counted, not timed: a busy machine streams slower, not less)
        assert after >= 2.4e6
        assert p.poll() is None, "an unknown fault kind must not end the simulator"
    finally:
        p.terminate()
        rc = p.wait(15)
        err = p.stderr.read()
    assert rc == 0, err
    assert "no_such_fault" in err
