"""Every X-ray scheme against the real simulator process (`zastava sim run`): DICOS and PNG spool
folders, C-STORE pushes into our receiver, the MJPEG operator display, and the serial control
link on both its pty and its socket, with the scenario's faults (garbage on the line, truncated
images) and the stop-belt command actually stopping the bag stream."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from drivers.registry import open_control_link, open_frame_source
from tests.conftest import REPO, wait_for, zastava_cmd

SCENARIO = """
name = "driver integration"
seed = 3
speed = 1.0
duration_s = 0

[scanner]
bag_interval_s = 0.8
first_bag_s = 0.5
contraband_share = 0.5
outputs = ["spool_dicos", "spool_png", "cstore", "mjpeg"]
cstore_port = {cstore_port}
image_rows = 128
image_cols = 192
mjpeg_fps = 5
bag_id_prefix = "IT-"

[serial]
pty = true
status_interval_s = 0.5

[[faults]]
at_s = 2.0
device = "serial"
kind = "garbage"
params = {{ bytes = 80 }}

[[faults]]
at_s = 2.5
device = "scanner"
kind = "truncated_image"
params = {{ count = 1 }}
"""


class Pump:
    def __init__(self, src, attr: str = "frames"):
        self.src = src
        self.stop = threading.Event()
        self.items: list = []
        self.thread = threading.Thread(target=lambda: [self.items.append(x) for x in getattr(src, attr)(self.stop)],
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.src.close()
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def sim(tmp_path):
    scp = open_frame_source("dicos-scp://127.0.0.1:0?ae=ZASTAVA", pair_timeout_s=5)
    scen = tmp_path / "scenario.toml"
    scen.write_text(SCENARIO.format(cstore_port=scp.port))
    proc = subprocess.Popen(zastava_cmd("sim", "run", "--scenario", str(scen), "--state-dir", str(tmp_path / "state")),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=open(tmp_path / "sim.log", "w"), text=True)
    try:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"simulator exited with {proc.wait(10)} before it was ready")
        ready = json.loads(line)
        assert ready["ready"]
        yield ready["devices"], scp, tmp_path / "state"
    finally:
        # hw_sim/runner.py waits on stop.wait() without a timeout in the main thread, so a SIGTERM
        # that the kernel delivers to another thread is only seen late or never: wait, then kill
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        scp.close()


def test_every_scheme_against_the_simulator(sim):
    devices, scp, state = sim
    scanner, serial_urls = devices["scanner"], devices["serial"]
    links = [Pump(open_control_link(serial_urls["control"], ack_timeout_s=10), "events"),
             Pump(open_control_link(f"serial://{serial_urls['control_pty']}?baud=115200", ack_timeout_s=10), "events")]
    sources = {
        "dicos": Pump(open_frame_source(scanner["spool_dicos"], poll_s=0.1, settle_s=0.1)),
        "png": Pump(open_frame_source(scanner["spool_png"], poll_s=0.1, settle_s=0.1)),
        "scp": Pump(scp),
        "mjpeg": Pump(open_frame_source(scanner["mjpeg"], read_timeout_s=3)),
    }
    try:
        wait_for(lambda: all(len(p.items) >= 4 for k, p in sources.items() if k != "mjpeg")
                 and len(sources["mjpeg"].items) >= 2, timeout=40, what="frames from every source")
        bags_in = {e.bag_id for e in links[0].items if e.kind == "bag_in"}
        assert bags_in and all(b.startswith("IT-") for b in bags_in)
        for k in ("dicos", "png", "scp"):
            frames = sources[k].items
            dual = [f for f in frames if f.low is not None]
            assert dual, f"{k}: no dual-energy frame"
            f = dual[0]
            assert f.high.dtype == np.uint16 and f.high.shape == f.low.shape == (128, 192)
            assert f.bag_id in bags_in, f"{k}: frame of bag {f.bag_id} without a bag_in event"
            # dual-energy physics: the low energy is absorbed more than the high one
            assert f.low.mean() <= f.high.mean()
        assert sources["dicos"].items[0].pixel_spacing_mm is not None
        m = sources["mjpeg"].items[0]
        assert m.low is None and m.meta["single_energy"]

        # the scenario's truncated file went to bad/ with a reason; the source carried on
        bad = Path(scanner["spool_dicos"].removeprefix("spool://")) / "bad"
        wait_for(lambda: list(bad.glob("*.reason.txt")), timeout=20, what="the truncated file in bad/")
        assert sources["dicos"].src.health().errors >= 1
        # the scenario's garbage on the serial line: counted errors on both links, and still working
        wait_for(lambda: all(any(e.kind == "error" for e in lk.items) for lk in links), what="garbage seen")

        # stop the belt: the scanner stops sending bags until the belt starts again
        assert links[0].src.stop_belt("integration test") is True
        time.sleep(0.3)
        n = len([e for e in links[1].items if e.kind == "bag_in"])
        time.sleep(2.0)
        assert len([e for e in links[1].items if e.kind == "bag_in"]) == n, "bags kept flowing after stop-belt"
        assert links[1].src.start_belt() is True
        wait_for(lambda: len([e for e in links[1].items if e.kind == "bag_in"]) > n, what="bags after belt start")
        assert all(lk.src.health().connected for lk in links)
    finally:
        for p in list(sources.values()) + links:
            p.close()
