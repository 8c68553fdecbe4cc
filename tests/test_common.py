"""Plumbing every process shares: sd_notify on a real socket, JSON logs, redaction, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from common import sdnotify
from common.logs import redact
from edge_agent.cli import SUBCOMMANDS
from hw_sim.clock import SimClock
from hw_sim.linkproxy import LinkProxySection, start
from tests.conftest import REPO, run_zastava, wait_for


def test_sd_notify_reaches_a_real_notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.ready("2 lanes")
    assert srv.recv(100) == b"READY=1\nSTATUS=2 lanes"
    assert sdnotify.watchdog()
    assert srv.recv(100) == b"WATCHDOG=1"
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 15.0
    srv.close()


def test_sd_notify_is_silent_without_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False


def test_redact_hides_url_passwords():
    assert redact("postgresql://zastava:s3cret@db:5432/x") == "postgresql://zastava:***@db:5432/x"


def test_top_level_help_lists_every_command():
    r = run_zastava("--help")
    assert r.returncode == 0
    for name in SUBCOMMANDS:
        assert name in r.stdout


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_explains_itself(name):
    r = run_zastava(name, "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: zastava " + name in r.stdout
    assert len(r.stdout.splitlines()) > 4


def test_json_log_format_is_one_object_per_line(tmp_path):
    bad = tmp_path / "z.toml"
    bad.write_text('checkpoint_id = "x"\n[storage]\ndir = "s"\n[[lanes]]\nid="l"\nsource="spool:///tmp/q"\n')
    code = (
        "import logging, sys; from common import logs; logs.setup('json');"
        "logging.getLogger('zastava.test').warning('hello %s', 'world', extra={'fields': {'lane': 'l1'}})"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    rec = json.loads(r.stderr.strip())
    assert rec["msg"] == "hello world" and rec["level"] == "warning" and rec["lane"] == "l1"


def test_link_relay_cuts_and_restores_the_uplink():
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]
    accepted = []

    def echo():
        while True:
            try:
                c, _ = upstream.accept()
            except OSError:
                return
            accepted.append(c)
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(100), b"")],
                             daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    stop = threading.Event()
    proxy = start(LinkProxySection(target=f"127.0.0.1:{port}"), clock=SimClock(10.0), stop=stop)
    host, pport = proxy.urls["endpoint"].removeprefix("tcp://").split(":")
    c = socket.create_connection((host, int(pport)), timeout=2)
    c.sendall(b"ping")
    assert c.recv(10) == b"ping"
    proxy.inject("outage", 5.0, {})  # 5 scenario seconds = 0.5 s at 10x
    assert c.recv(10) == b""  # the relayed connection is cut
    c2 = socket.create_connection((host, int(pport)), timeout=2)
    assert c2.recv(10) == b""  # and new ones are refused during the outage
    wait_for(lambda: not proxy.stats()["down"], timeout=5, what="link restored")
    time.sleep(0.05)
    c3 = socket.create_connection((host, int(pport)), timeout=2)
    c3.sendall(b"back")
    assert c3.recv(10) == b"back"
    assert proxy.stats()["cut"] >= 1 and proxy.stats()["refused"] >= 1
    proxy.close()
    upstream.close()
