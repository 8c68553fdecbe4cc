"""`zastava central` with a [dashboard] section serves the dashboard beside the hub, as its own process."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx

from common import webauth
from tests.conftest import REPO, free_port, run_zastava, wait_for, zastava_cmd


def test_central_process_serves_dashboard(tmp_path):
    keys = tmp_path / "keys"
    r = run_zastava("keys", "new", "--name", "hub", "--dir", str(keys))
    assert r.returncode == 0, r.stderr
    (tmp_path / "checkpoints").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    webauth.add_user(data / "users.toml", "sam", "supervisor", "supervisor-pass-1")
    port = free_port()
    cfg = tmp_path / "central.toml"
    cfg.write_text(f"""
[hub]
bind = "tcp://127.0.0.1:{free_port()}"
secret_key = "keys/hub.key_secret"
checkpoints_dir = "checkpoints"
data_dir = "data"

[dashboard]
bind = "127.0.0.1:{port}"
secure_cookies = false
""")
    p = subprocess.Popen(zastava_cmd("central", "--config", str(cfg)), cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(base + "/login", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, interval=0.2, what="dashboard listening")
        with httpx.Client(base_url=base) as c:
            assert c.get("/api/checkpoints").status_code == 401
            tok = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            c.post("/login", data={"username": "sam", "password": "supervisor-pass-1", "csrf": tok})
            assert c.get("/api/checkpoints").json() == []
            assert c.get("/api/info").json()["can_send"] is True
    finally:
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=15)
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 10
