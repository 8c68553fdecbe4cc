"""`zastava demo` (what `make demo` runs): starts simulator, agent and central, answers on the
URLs it prints, keeps pages behind a login, and stops every process on Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, free_port, wait_for, zastava_cmd

pytestmark = pytest.mark.slow


def status(url: str) -> int:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as e:
        return e.code


def tails(state_dir, out: list[str], lines: int = 25) -> str:
    """The demo's own output and the end of each child's log: what a failed stop needs to be
    understood (the state directory is gone once pytest cleans up)."""
    parts = ["--- zastava demo output ---", *out[-lines:]]
    for f in sorted(state_dir.glob("*.log")):
        parts += [f"--- {f.name} ---", *f.read_text(errors="replace").splitlines()[-lines:]]
    return "\n".join(x.rstrip("\n") for x in parts)


def test_demo_starts_answers_and_stops_on_ctrl_c(tmp_path):
    p = subprocess.Popen(zastava_cmd("demo", "--state-dir", str(tmp_path / "demo"), "--console-port",
                                     str(free_port()), "--dashboard-port", str(free_port())),
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(p.stdout), daemon=True).start()
    try:
        wait_for(lambda: any("Press Ctrl-C" in line for line in out), timeout=120, what="demo banner")
        text = "".join(out)
        console = re.search(r"Officer console\s+(\S+)", text).group(1)
        dashboard = re.search(r"Command dashboard\s+(\S+)", text).group(1)
        metrics = re.search(r"Agent metrics\s+(\S+)", text).group(1)
        assert re.search(r"officer / \S{8,}", text), "the banner says how to log in"
        for url in (console, dashboard):
            assert url.startswith("http://127.0.0.1:"), "loopback only"
            assert status(url + "login") == 200
            assert status(url + "api/alerts") in (401, 403), "pages refuse anyone not logged in"
        assert status(metrics) == 200
        ports = [int(u.rsplit(":", 1)[1].split("/")[0]) for u in (console, dashboard)]
        p.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            # the demo's own bound: each of its three children gets 8 s to stop before it is killed
            rc = p.wait(40)
        except subprocess.TimeoutExpired:
            pytest.fail("zastava demo did not stop within 40 s of Ctrl-C\n" + tails(tmp_path / "demo", out))
        assert rc == 0, tails(tmp_path / "demo", out)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for port in ports:  # every child stopped: nothing listens any more
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served after Ctrl-C"
    log = "".join(out)
    assert "stopping agent, simulator and central" in log
