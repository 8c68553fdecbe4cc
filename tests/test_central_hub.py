"""The hub process under systemd's eyes: READY/STATUS on NOTIFY_SOCKET, clean SIGTERM, bad keys refused."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from sync.harness import REPO, Rig, wait_for
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


@pytest.mark.parametrize("mode", ["syncfs", "fsync"])
def test_either_evidence_sync_stores_every_file_whole(tmp_path, mode):
    """Both ways of making a batch's evidence durable (one syncfs, or an fsync per file) leave
    every file under its final name with the bytes the edge hashed, and no temp file behind."""
    rig = Rig(tmp_path / "rig", evidence_sync=mode)
    try:
        rig.start_hub()
        rig.start_sender(batch=100)
        ids = rig.add_alerts(250, evidence_bytes=5000)
        wait_for(lambda: rig.backlog() == 0, 60, what="delivery")
        rows = rig.hub_query("SELECT alert_uuid, path, sha256, size FROM evidence")
        assert {r[0] for r in rows} == set(ids)
        for _u, path, sha, size in rows:
            data = (rig.data_dir / path).read_bytes()
            assert len(data) == size == 5000 and hashlib.sha256(data).hexdigest() == sha
        assert not [p for p in (rig.data_dir / "evidence").rglob("*") if p.name.endswith(".tmp")]
    finally:
        rig.stop_all()


def test_an_unknown_evidence_sync_is_refused_by_name(tmp_path):
    rig = Rig(tmp_path / "rig")
    rig.config.write_text(rig.config.read_text().replace('evidence_sync = "syncfs"', 'evidence_sync = "never"'))
    r = run_zastava("central", "--config", str(rig.config), timeout=60)
    assert r.returncode == 2 and "evidence_sync" in r.stderr


def _hub(rig: Rig):
    from central.hub import Hub

    return Hub(rig.endpoint, rig.hub_sec, rig.cps, rig.root / "hubdata", f"sqlite:///{rig.root / 'hub.sqlite'}")


def test_hub_refuses_to_start_when_another_zap_handler_holds_the_context(tmp_path):
    """A CURVE server whose ZAP endpoint someone else answers admits whatever that handler says:
    the hub must not bind at all then."""
    import zmq

    rig = Rig(tmp_path / "rig")
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.REP)
    squatter.bind("inproc://zeromq.zap.01")
    hub = _hub(rig)
    try:
        try:
            hub.start(context=ctx)
        except RuntimeError as e:
            assert "ZAP authenticator did not start" in str(e) and "admit any key" in str(e)
        else:
            raise AssertionError("the hub started without its own ZAP handler")
        probe = socket.socket()
        port = int(rig.endpoint.rsplit(":", 1)[1])
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the hub bound its port anyway"
        probe.close()
    finally:
        hub.close()
        squatter.close(0)
        ctx.term()


def test_a_message_without_user_id_is_refused(tmp_path):
    """The second guard: frames that came through no ZAP handler carry no User-Id; the hub refuses
    them even from a socket it never expected to see such frames on."""
    import zmq

    from sync import wire

    rig = Rig(tmp_path / "rig")
    hub = _hub(rig)
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        router.bind("inproc://no-zap")
        dealer.connect("inproc://no-zap")
        dealer.send_multipart(wire.encode("heartbeat", {"checkpoint": "CP-01", "t": time.time(), "backlog": 0}))
        assert router.poll(5000)
        frames = router.recv_multipart(copy=False)
        assert hub._authorise(frames) is None
        assert hub.stats["refused.unauthenticated"] == 1
    finally:
        dealer.close(0)
        router.close(0)
        ctx.term()
        hub.close()


def test_a_database_held_locked_keeps_the_hub_pinging_and_loses_no_alert(tmp_path):
    """Another process holds central's SQLite store locked for 36 s (longer than systemd's
    WatchdogSec, 30 s) while a checkpoint sends alerts. The hub's writes give up after a short
    busy wait and are not acked; its loop keeps pinging the watchdog (a real notify socket); once
    the lock goes the sender's retries deliver every alert, each stored once. (With the old 30 s
    busy wait the loop, waiting behind the writer, went half a minute without a ping, and systemd
    would have restarted the hub, again and again while the lock lasted.)"""
    from tests.conftest import NotifyListener, hold_sqlite_lock

    rig = Rig(tmp_path / "rig")
    systemd = NotifyListener(tmp_path / "notify.sock")
    locker = None
    try:
        rig.start_hub(env=systemd.env)
        rig.start_sender()
        first = rig.add_alerts(10)
        wait_for(lambda: set(rig.hub_alert_ids()) >= set(first), timeout=30, what="the first alerts at central")
        locker = hold_sqlite_lock(rig.data_dir / "central.sqlite", 36)
        t_locked = time.monotonic()
        later = rig.add_alerts(20)
        assert locker.wait(timeout=60) == 0
        t_unlocked = time.monotonic()
        wait_for(lambda: rig.backlog() == 0, timeout=90, what="every alert acked")
        ids = rig.hub_alert_ids()
        assert sorted(ids) == sorted(first + later), "each alert stored exactly once"
        assert rig.hub.poll() is None
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
        rig.stop_all()
        systemd.close()
    assert t_unlocked - t_locked >= 31
    silence = systemd.longest_silence(t_locked - 2, t_unlocked + 2)
    assert silence < 15, f"the hub went {silence:.0f} s without a watchdog ping while its store was locked"
    log = (rig.root / "hub.log").read_text()
    assert "database is locked" in log, log[-2000:]
