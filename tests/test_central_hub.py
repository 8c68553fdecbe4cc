"""The hub process under systemd's eyes: READY/STATUS on NOTIFY_SOCKET, clean SIGTERM, bad keys refused."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from sync.harness import REPO, Rig
from tests.conftest import run_zastava


def test_hub_notifies_systemd_and_stops_cleanly(tmp_path):
    rig = Rig(tmp_path / "rig")
    sock_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    p = subprocess.Popen([sys.executable, "-m", "edge_agent", "central", "--config", str(rig.config)], cwd=REPO,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = []
        while not any("WATCHDOG=1" in g for g in got):
            got.append(ns.recv(4096).decode())
        assert got[0].startswith("READY=1") and f"hub on {rig.endpoint}" in got[0]
        while not any(g.startswith("STATUS=") and "connected" in g for g in got):
            got.append(ns.recv(4096).decode())
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 0
        assert "hub stopped" in err
    finally:
        if p.poll() is None:
            p.kill()
        ns.close()


def test_hub_refuses_a_public_key_as_its_secret(tmp_path):
    rig = Rig(tmp_path / "rig")
    rig.config.write_text(rig.config.read_text().replace(str(rig.hub_sec), str(rig.hub_pub)))
    r = run_zastava("central", "--config", str(rig.config), timeout=60)
    assert r.returncode == 1 and "holds no secret key" in r.stderr


def test_status_command_lists_checkpoints(tmp_path):
    rig = Rig(tmp_path / "rig")
    rig.start_hub()
    rig.start_sender()
    rig.add_alerts(3)
    from sync.harness import wait_for

    wait_for(lambda: rig.backlog() == 0, 20, what="delivery")
    wait_for(lambda: rig.hub_query("SELECT skew_s FROM checkpoints WHERE skew_s IS NOT NULL"), 10, what="skew")
    r = run_zastava("central", "status", "--config", str(rig.config))
    rig.stop_all()
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("CP-01"))
    assert line.split()[-1] == "3"  # alerts stored for CP-01


def test_partial_files_of_a_killed_hub_are_removed_at_start(tmp_path):
    rig = Rig(tmp_path / "rig")
    day = rig.data_dir / "evidence" / "CP-01" / "2026-01-02"
    day.mkdir(parents=True)
    old, fresh, kept = day / ".a_frame.jpg.1.2.tmp", day / ".b_frame.jpg.3.4.tmp", day / "c_frame.jpg"
    for f in (old, fresh, kept):
        f.write_bytes(b"x")
    os.utime(old, (time.time() - 600, time.time() - 600))
    rig.start_hub()
    rig.stop_all()
    assert not old.exists()  # left by a crash
    assert fresh.exists()  # may belong to another hub sharing the folder, still writing
    assert kept.exists()
