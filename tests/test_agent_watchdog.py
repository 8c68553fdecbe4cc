"""systemd integration of the agent: READY and WATCHDOG pings on a real notify socket, and a
hung pipeline stops the pings so that systemd's watchdog restarts the agent.

The hang is real: a user's ONNX model (end-to-end layout) whose graph loops for a long time, as a
pathological model would; the agent must notice its X-ray worker stopped beating."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_agent.demo import write_toml
from tests.conftest import REPO, free_port


def slow_e2e_model(path, iterations: int = 200_000_000) -> None:
    """An e2e-layout model ([1, K, 6] output) that spins in a Loop before answering."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "spin",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    nodes = [
        helper.make_node("Loop", ["trips", "cond", "acc0"], ["acc"], body=body),
        helper.make_node("Mul", ["acc", "zero"], ["nothing"]),
        helper.make_node("ReduceSum", ["images"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["nothing2"]),
        helper.make_node("Add", ["nothing", "nothing2"], ["z"]),
        helper.make_node("Add", ["dets0", "z"], ["dets"]),
    ]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, 1, 6])],
        [helper.make_tensor("trips", TensorProto.INT64, [], [iterations]),
         helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
         helper.make_tensor("acc0", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("dets0", TensorProto.FLOAT, [1, 1, 6], [1, 1, 10, 10, 0.9, 0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def recv_all(sock: socket.socket, seconds: float) -> list[tuple[float, str]]:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            out.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            break
    return out


def test_watchdog_pings_stop_when_a_pipeline_hangs(tmp_path):
    model = tmp_path / "slow.onnx"
    slow_e2e_model(model)
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = tmp_path / "zastava.toml"
    write_toml(cfg, {"checkpoint_id": "WD-CP", "hung_after_s": 3.0}, {
        "storage": {"dir": str(tmp_path / "agent")},
        "console": {"bind": f"127.0.0.1:{free_port()}", "secure_cookies": False},
        "metrics": {"bind": f"127.0.0.1:{free_port()}"},
        "xray_detector": {"model": str(model), "layout": "e2e", "class_names": ["narcotics"]},
    }, {"lanes": [{"id": "lane1", "source": f"spool://{spool}"}]})
    sock_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "4000000", "PYTHONPATH": str(REPO)}
    agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "agent", "--config", str(cfg)],
                             env=env, stderr=subprocess.PIPE, text=True)
    try:
        msgs = recv_all(ns, 20)  # READY, then a ping a second while healthy
        assert any(m.startswith("READY=1") for _, m in msgs), msgs
        assert sum(m == "WATCHDOG=1" for _, m in msgs) >= 5, msgs

        # a bag arrives; the model spins; the X-ray worker stops beating
        img = np.full((64, 64), 40000, np.uint16)
        png = cv2.imencode(".png", img)[1].tobytes()
        for energy in ("high", "low"):
            (spool / f".bag1_{energy}.png.part").write_bytes(png)
        for energy in ("high", "low"):
            os.replace(spool / f".bag1_{energy}.png.part", spool / f"bag1_{energy}.png")
        msgs = recv_all(ns, 15)
        hung = [t for t, m in msgs if m.startswith("STATUS=HUNG")]
        assert hung, f"no HUNG status: {msgs}"
        pings_after = [t for t, m in msgs if m == "WATCHDOG=1" and t > hung[0]]
        assert not pings_after, "the agent kept pinging the watchdog with a hung pipeline"
        assert agent.poll() is None  # it does not exit by itself: systemd's watchdog kills it
    finally:
        agent.kill()
        err = agent.communicate()[1]
        ns.close()
    assert "pipeline hung: lane1-detect" in err
