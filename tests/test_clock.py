"""A checkpoint whose clock is wrong: its alerts still reach command where an analyst looks.

Real processes throughout: the simulator, central (hub and dashboard, on this machine's clock) and
the agent with tests/shift_clock.c preloaded, whose wall clock starts three years behind, as a box
with a reset real-time clock and no time server would; the monotonic clock is left alone, as a
wall-clock step leaves it. Then the agent's clock is stepped right, as NTP would once it can reach a
server, and the alerts made after the step must need no correction."""

from __future__ import annotations

import time
import tomllib

import httpx
import pytest

from common import clock, webauth
from sync.keys import make_keypair
from tests.agent_rig import Proc, agent_config, start_agent, start_sim
from tests.conftest import free_port, run_zastava, shift_clock, wait_for

BEHIND_S = 1095 * 86400  # three years


def _dashboard(base: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=5)
    tok = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
    r = c.post("/login", data={"username": "sam", "password": "supervisor-pass-1", "csrf": tok})
    assert r.status_code in (200, 303), r.text
    return c


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_alerts_of_a_box_whose_clock_is_years_behind_are_placed_by_centrals_clock(tmp_path):
    keys = tmp_path / "keys"
    hub_pub, hub_sec = make_keypair(keys, "hub")
    cp_pub, cp_sec = make_keypair(keys, "TEST-CP")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "TEST-CP.key").write_bytes(cp_pub.read_bytes())
    (tmp_path / "central").mkdir()
    webauth.add_user(tmp_path / "central" / "users.toml", "sam", "supervisor", "supervisor-pass-1")
    hub_port, dash_port = free_port(), free_port()
    (tmp_path / "central.toml").write_text(f"""
[hub]
bind = "tcp://127.0.0.1:{hub_port}"
secret_key = "{hub_sec}"
checkpoints_dir = "{tmp_path / 'checkpoints'}"
data_dir = "{tmp_path / 'central'}"

[dashboard]
bind = "127.0.0.1:{dash_port}"
secure_cookies = false
""")
    central = Proc("central", ["central", "--config", str(tmp_path / "central.toml")], tmp_path)
    sim, devices = start_sim(tmp_path, "e2e_xray.toml")  # a bag a second, half with contraband; radio beside
    rx = [{"id": "rx433", "source": devices["receiver:rx433"]["iq"], "center_hz": 433.92e6, "rate_hz": 1.024e6}]
    cfg = agent_config(tmp_path, devices, receivers=rx,
                       central={"endpoints": [f"tcp://127.0.0.1:{hub_port}"], "server_public_key": str(hub_pub),
                                "secret_key": str(cp_sec), "heartbeat_s": 1.0})
    metrics = "http://" + tomllib.loads(cfg.read_text())["metrics"]["bind"] + "/metrics"
    env, shift = shift_clock(tmp_path, -BEHIND_S)
    agent = start_agent(tmp_path, cfg, env=env)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{dash_port}/login", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, interval=0.3, what="dashboard up")
        dash = _dashboard(f"http://127.0.0.1:{dash_port}")

        def last_day() -> list[dict]:  # what the dashboard's feed asks for ("last 24 h")
            return dash.get("/api/alerts", params={"since": time.time() - 86400, "limit": 500}).json()

        def every() -> list[dict]:
            return dash.get("/api/alerts", params={"limit": 500}).json()

        wait_for(lambda: {"rf", "xray"} <= {a["kind"].split(".")[0] for a in every()}, 90,
                 what="X-ray and radio alerts at central",
                 on_timeout=lambda: f"agent log:\n{agent.text()[-3000:]}\ncentral log:\n{central.text()[-2000:]}")
        # the agent measures the offset at its first heartbeat: /metrics says it, and the box's own state
        off = wait_for(lambda: _metric(httpx.get(metrics, timeout=5).text, "zastava_clock_offset_seconds"), 10,
                       what="the clock offset in /metrics", on_timeout=lambda: httpx.get(metrics, timeout=5).text[-3000:])
        assert off == pytest.approx(BEHIND_S, abs=5), off
        before = every()
        # every alert made on the wrong clock is in the last day's feed, placed by central's clock near
        # when central received it, with the edge's own stamp (three years back) kept beside it
        assert {a["uuid"] for a in last_day()} == {a["uuid"] for a in before}
        for a in before:
            d = dash.get(f"/api/alerts/{a['uuid']}").json()["data"]
            assert d["t"] == pytest.approx(a["received"] - BEHIND_S, abs=60), (d["t"], a["received"])
            assert d["clock_offset_s"] == pytest.approx(BEHIND_S, abs=5)
            assert a["t"] == pytest.approx(a["received"], abs=60)
            assert d["clock"] == ("ntp-synced" if clock.kernel_synced()[0] else "unsynced")
        # the dashboard's checkpoint row says the clock is wrong
        cp = next(c for c in dash.get("/api/checkpoints").json() if c["id"] == "TEST-CP")
        assert cp["clock_skew_s"] == pytest.approx(BEHIND_S, abs=5)
        r = run_zastava("central", "status", "--config", str(tmp_path / "central.toml"))  # and so does the CLI
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith("TEST-CP"))
        assert line.endswith("CLOCK 1095.0 days behind central"), line

        # NTP steps the clock right: alerts made after it carry (nearly) no offset and land the same way
        shift.write_text("0")
        t_step = time.time()
        wait_for(lambda: any(dash.get(f"/api/alerts/{a['uuid']}").json()["data"]["t"] > t_step + 2
                             for a in every() if a["uuid"] not in {b["uuid"] for b in before}), 60,
                 what="an alert made after the clock was stepped")
        after = [dash.get(f"/api/alerts/{a['uuid']}").json() for a in every()
                 if a["uuid"] not in {b["uuid"] for b in before}]
    finally:
        agent.terminate()
        sim.terminate()
        central.terminate()
    stepped = [a for a in after if a["data"]["t"] > t_step + 2]
    assert stepped
    for a in stepped:
        assert abs(a["data"]["clock_offset_s"]) < 1.0, a["data"]["clock_offset_s"]
        assert a["t"] == a["data"]["t"]  # under a second: the edge's time stands
    for a in after:  # made in the second the step took, or before it and sent after: placed right all the same
        assert a["t"] == pytest.approx(a["received"], abs=60)
