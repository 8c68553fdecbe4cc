"""End to end in headless chromium: `zastava demo` (simulator + agent + central as processes) with the
smuggling scenario; a simulated bag with narcotics appears on the officer console with its box, the officer
marks it, and the decision appears on the command dashboard. Screenshots of both UIs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, zastava_cmd
from tests.test_browser_console import CHROMIUM, SHOTS, browser, wait_js  # noqa: F401

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian chromium not installed (apt-get install chromium)"),
]


@pytest.fixture
def demo(tmp_path):
    p = subprocess.Popen(
        zastava_cmd("demo", "--state-dir", str(tmp_path / "demo"), "--scenario",
                    str(REPO / "hw_sim" / "scenarios" / "smuggling.toml"),
                    "--console-port", str(free_port()), "--dashboard-port", str(free_port())),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    ready = threading.Event()

    def read():
        for line in p.stdout:
            out.append(line)
            if "Press Ctrl-C" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        p.send_signal(signal.SIGTERM)
        p.wait(20)
        pytest.fail("zastava demo did not start:\n" + "".join(out[-40:]))
    text = "".join(out)
    info = {
        "console": re.search(r"Officer console\s+(\S+)", text).group(1).rstrip("/"),
        "dashboard": re.search(r"Command dashboard\s+(\S+)", text).group(1).rstrip("/"),
        "pw": dict(re.findall(r"(officer|supervisor|engineer) / (\S+)", text)),
        "dir": Path(tmp_path / "demo"),
    }
    yield info
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def login(page, base, name, pw):
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("#username", name)
    page.fill("#password", pw)
    page.click("#signin")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)


def test_narcotics_bag_to_dashboard(browser, demo):  # noqa: F811
    con, dash, pw = demo["console"], demo["dashboard"], demo["pw"]
    ctx = browser.new_context(viewport={"width": 1600, "height": 900})
    page = ctx.new_page()
    assert page.request.get(con + "/api/lanes").status == 401
    assert page.request.get(dash + "/api/alerts").status == 401
    login(page, con, "officer", pw["officer"])
    assert page.request.get(con + "/api/engineer/health").status == 403

    # wait for a bag with a narcotics finding on the lane view; its box is drawn on the canvas
    wait_js(page, "S.bag && S.bag.findings.some(f => f.cls === 'narcotics') && viewer.boxes.length > 0",
                           timeout=120000)
    bag = page.evaluate("S.bag")
    box = next(f for f in bag["findings"] if f["cls"] == "narcotics")["box"]
    assert box[2] > box[0] and box[3] > box[1] and bag["alert_uuids"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "e2e_console_narcotics.png"))

    # the officer marks it: contraband found, narcotics
    page.evaluate("(u) => askKind(u)", bag["alert_uuids"])
    page.select_option("#kind-select", "narcotics")
    page.fill("#kind-note", "e2e: found in the lining")
    page.click("#kind-ok")
    page.wait_for_selector(".toast:not(.bad)", timeout=10000)
    assert "Recorded" in page.inner_text(".toast")

    # the radio view: both simulated receivers' waterfalls grow live
    page.keyboard.press("3")
    wait_js(page, "Object.keys(S.wf).length >= 2 && Object.values(S.wf).every(w => w.rows >= 20)", timeout=30000)
    page.screenshot(path=str(SHOTS / "e2e_console_radio.png"))
    ctx.close()

    # the decision reaches central and shows on the dashboard (live, no reload)
    ctx = browser.new_context(viewport={"width": 1700, "height": 950})
    page = ctx.new_page()
    login(page, dash, "supervisor", pw["supervisor"])
    uuid = next(u for u in bag["alert_uuids"])
    sel = f"#feed tr[data-uuid='{uuid}'] td.dec"
    page.wait_for_selector(sel, timeout=60000)
    wait_js(page, f"document.querySelector(\"{sel}\").textContent.includes('contraband found')",
                           timeout=60000)
    assert "officer" in page.inner_text(sel)
    page.click(f"#feed tr[data-uuid='{uuid}']")
    wait_js(page, "document.getElementById('detail').innerText.includes('e2e: found in the lining')",
                           timeout=15000)
    page.wait_for_selector("#detail img.evidence", timeout=15000)
    time.sleep(0.5)
    page.screenshot(path=str(SHOTS / "e2e_dashboard_decision.png"))
    assert "DEMO-CP-01" in page.inner_text("#cp-table")
    # Threat Image Projections (the demo projects into 5 % of clear bags) never reach central
    assert page.request.get(dash + "/api/alerts?kind=tip.&since=0").json() == []
    ctx.close()
