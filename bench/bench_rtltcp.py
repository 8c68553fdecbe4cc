"""rtltcp:// client throughput on loopback, beside a bare socket recv + numpy conversion.

A child process plays an rtl_tcp server that streams a pre-made cu8 buffer as fast as the socket
takes it (no synthesis, so the server is not what is measured). The parent reads the same
number of samples twice: through drivers.rtltcp.RtlTcpSource.blocks() (greeting check, tuning
commands, parser, complex64 blocks, health counters), and through a bare loop of
socket.recv_into + (b - 127.5) / 127.5 in numpy, written both as usually seen (Python float
scalars) and with float32 scalars and a multiply, as the driver does. Both wall time and the reader's own CPU time
are printed: the box is shared, so CPU time is the figure that says what one core can do.
Target: >= 50 MS/s (twenty RTL-SDRs at 2.4 MS/s).

  .venv/bin/python bench/bench_rtltcp.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from drivers.rtltcp import RtlTcpSource
from drivers.rtltcp_protocol import pack_greeting

HERE = Path(__file__).resolve().parent
BLOCK = 262144
ROUNDS = 2  # each reader runs this many times, alternating; the best run counts


def _blaster(q, total_bytes: int) -> None:
    """Child: accept clients one after another and send each greeting + total_bytes of cu8."""
    payload = np.random.default_rng(0).integers(96, 160, 1 << 22, dtype=np.uint8).tobytes()
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(2)
    q.put(ls.getsockname()[1])
    for _ in range(3 * ROUNDS):
        c, _ = ls.accept()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        try:
            c.sendall(pack_greeting())
            sent = 0
            while sent < total_bytes:
                k = min(len(payload), total_bytes - sent)
                c.sendall(payload[:k])
                sent += k
            c.shutdown(socket.SHUT_WR)
            c.recv(1)
        except OSError:
            pass
        c.close()


def via_driver(port: int, samples: int) -> tuple[float, float]:
    src = RtlTcpSource(f"rtltcp://127.0.0.1:{port}?settle_ms=0", center_hz=433.92e6, block_samples=BLOCK)
    stop = threading.Event()
    got = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for b in src.blocks(stop):
        got += len(b.samples)
        if got >= samples:
            break
    w, c = time.perf_counter() - w0, time.process_time() - c0
    src.close()
    return got / w / 1e6, got / c / 1e6


def bare(port: int, samples: int, f32_scalars: bool) -> tuple[float, float]:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    g = b""
    while len(g) < 12:
        g += s.recv(12 - len(g))
    buf = bytearray(2 * BLOCK)
    view = memoryview(buf)
    got = 0
    w0, c0 = time.perf_counter(), time.process_time()
    while got < samples:
        fill = 0
        while fill < len(buf):
            n = s.recv_into(view[fill:])
            if not n:
                break
            fill += n
        a = np.frombuffer(buf, np.uint8).astype(np.float32)
        if f32_scalars:
            x = ((a - np.float32(127.5)) * np.float32(1 / 127.5)).view(np.complex64)
        else:  # the idiom as usually written (Python float scalars)
            x = ((a - 127.5) / 127.5).view(np.complex64)
        got += len(x)
    w, c = time.perf_counter() - w0, time.process_time() - c0
    s.close()
    return got / w / 1e6, got / c / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    a = ap.parse_args()
    samples = (100 if a.quick else 400) * BLOCK
    q = mp.Queue()
    child = mp.Process(target=_blaster, args=(q, 2 * samples + (1 << 22)), daemon=True)
    child.start()
    port = q.get(timeout=30)
    runs = {"idiom": [], "f32": [], "driver": []}
    for _ in range(ROUNDS):
        runs["idiom"].append(bare(port, samples, False))
        runs["f32"].append(bare(port, samples, True))
        runs["driver"].append(via_driver(port, samples))
    (i_wall, i_cpu), (b_wall, b_cpu), (d_wall, d_cpu) = (max(runs["idiom"]), max(runs["f32"]), max(runs["driver"]))
    child.join(10)
    rows = [("bare recv_into + numpy (b-127.5)/127.5", i_wall, i_cpu),
            ("bare recv_into + numpy, float32 scalars", b_wall, b_cpu),
            ("drivers.rtltcp RtlTcpSource.blocks()", d_wall, d_cpu)]
    print(f"{'reader (' + str(samples // 1_000_000) + ' MS over loopback)':<48} {'wall MS/s':>10} {'CPU MS/s':>10}")
    for n, w, c in rows:
        print(f"{n:<48} {w:10.1f} {c:10.1f}")
    print(f"\ndriver / bare float32 form (CPU): {d_cpu / b_cpu:.2f}; target >= 50 MS/s")
    res = {"bench": "rtltcp", "quick": a.quick, "samples": samples, "block_samples": BLOCK,
           "python": platform.python_version(), "numpy": np.__version__,
           "rows": [{"what": n, "wall_msps": round(w, 2), "cpu_msps": round(c, 2)} for n, w, c in rows],
           "target_msps": 50}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "rtltcp.json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
