"""The command dashboard in headless Debian chromium, on central's real store filled through its hub API."""

from __future__ import annotations

import threading
import time

import pytest

from central.config import DashboardConfig
from central.dashboard.server import start_dashboard
from central.store import open_store
from tests.conftest import free_port, wait_for
from tests.test_browser_console import CHROMIUM_ARGS, SHOTS, browser, login, pytestmark, wait_js, watch_errors  # noqa: F401
from tests.test_dashboard import fill_users, put_alert, put_decision

__all__ = ["pytestmark"]

BEHIND_S = 1095 * 86400.0


@pytest.fixture
def central(tmp_path):
    data = tmp_path / "central"
    data.mkdir()
    fill_users(data)
    store = open_store(f"sqlite:///{data / 'central.sqlite'}")
    now = time.time()
    for i, cp in enumerate(("cp-north-01", "cp-east-02", "cp-south-03", "cp-west-04")):
        devs = {"L1.source": {"state": "ok"}, "L1.control": {"state": "ok"}, "rx1.source": {"state": "ok"}}
        if cp == "cp-east-02":
            devs["rx1.source"] = {"state": "stalled", "last_error": "rtl_tcp stalled"}
        lanes = {"L1": {"bags_failed": 1, "last_failed": {"bag_id": "B77", "t": now - 40,
                                                          "reason": "OSError: [Errno 28] No space left on device"}}}
        disk = {"free_bytes": 300 << 20, "min_free_bytes": 1 << 30, "low": cp == "cp-north-01"}
        store.seen(cp, now - (900 if cp == "cp-west-04" else 1), backlog=i * 2 if cp != "cp-west-04" else 57,
                   health={"devices": devs, "pipelines": lanes if cp == "cp-south-03" else {}, "storage": disk},
                   health_t=now, skew_s=BEHIND_S if cp == "cp-east-02" else 0.01 * i)
    kinds = [("xray.narcotics", "high"), ("rf.unlicensed", "medium"), ("xray.weapon", "critical"),
             ("rf.drone", "high"), ("xray.currency", "medium"), ("xray.concealment", "medium")]
    for j in range(12):
        k, s = kinds[j % len(kinds)]
        uid = put_alert(store, data, ("cp-north-01", "cp-east-02", "cp-south-03")[j % 3], k, s, now - 300 * (j + 1), seed=j)
        if j % 2:
            put_decision(store, "cp-north-01", uid, officer="olga", decision="cleared", kind=None)
    # cp-east-02's clock is three years behind: its alert, made 2 min ago, carries the offset it measured
    put_alert(store, data, "cp-east-02", "xray.weapon", "critical", now - 120 - BEHIND_S, seed=99,
              clock="unsynced", clock_offset_s=BEHIND_S)
    cfg = DashboardConfig(secure_cookies=False, bind=f"127.0.0.1:{free_port()}")
    stop = threading.Event()
    h = start_dashboard(cfg, store, data, stop, poll_s=0.3)
    yield f"http://{cfg.bind}", store, data
    stop.set()
    wait_for(lambda: not h.thread.is_alive(), 5, what="dashboard stopped")
    store.close()


def test_dashboard_in_chromium(browser, central):  # noqa: F811
    base, store, data = central
    ctx = browser.new_context(viewport={"width": 1700, "height": 950})
    page = ctx.new_page()
    errors = watch_errors(page)
    login(page, base, "sam")
    page.wait_for_selector("#cp-table tr[data-cp='cp-west-04']")
    assert "OFFLINE" in page.inner_text("#cp-table tr[data-cp='cp-west-04']")
    assert "degraded" in page.inner_text("#cp-table tr[data-cp='cp-east-02']")
    north = "#cp-table tr[data-cp='cp-north-01'] .chip"  # its disk is under its floor
    assert page.inner_text(north) == "degraded" and "disk under its floor" in page.get_attribute(north, "title")
    south = "#cp-table tr[data-cp='cp-south-03'] .chip"
    assert page.inner_text(south) == "bags NOT screened" and "bad" in page.get_attribute(south, "class")
    assert "L1: bag B77 not screened" in page.get_attribute(south, "title")
    assert "3/4 checkpoints online" in page.inner_text("#summary")
    assert page.locator("#feed tbody tr").count() == 13
    # the checkpoint whose clock is wrong is flagged, and its alert stands first in the last day's feed,
    # by central's clock, with the box's own stamp beside it in the detail
    skew = "#cp-table tr[data-cp='cp-east-02'] td:nth-child(7) .chip"  # the skew column
    assert page.inner_text(skew) == "+1095 d" and "1095 days behind central" in page.get_attribute(skew, "title")
    page.click("#feed tbody tr:first-child")
    wait_js(page, "document.getElementById('detail').innerText.includes('Edge clock')", timeout=10000)
    detail = page.inner_text("#detail")
    assert "xray.weapon" in detail and "unsynced, 1095 days behind central" in detail, detail
    assert time.strftime("%Y-", time.gmtime(time.time() - BEHIND_S)) in detail  # the box's own year

    # a new alert at a checkpoint appears live; the officer's decision follows it
    uid = put_alert(store, data, "cp-north-01", "xray.narcotics", "high", time.time(), seed=42)
    page.wait_for_selector(f"#feed tr[data-uuid='{uid}']", timeout=10000)
    page.click(f"#feed tr[data-uuid='{uid}']")
    page.wait_for_selector("#detail img.evidence")
    assert "pending at the checkpoint" in page.inner_text("#detail")
    put_decision(store, "cp-north-01", uid, officer="olga", decision="contraband_found", kind="narcotics")
    wait_js(page, f"document.querySelector(\"#feed tr[data-uuid='{uid}'] td.dec\").textContent.includes('contraband found')",
                           timeout=10000)
    wait_js(page, "document.getElementById('detail').innerText.includes('olga')", timeout=10000)

    # filters
    page.select_option("#f-kind", "rf.")
    wait_js(page, "[...document.querySelectorAll('#feed tbody tr')].every(r => r.innerText.includes('rf.'))")
    page.select_option("#f-checkpoint", "cp-east-02")
    wait_js(page, "[...document.querySelectorAll('#feed tbody tr')].every(r => r.innerText.includes('cp-east-02'))")
    page.select_option("#f-kind", "")
    page.select_option("#f-checkpoint", "")
    wait_js(page, "document.querySelectorAll('#feed tbody tr').length === 14")

    # send a frequency plan down to two chosen checkpoints
    page.check("#cp-table tr[data-cp='cp-north-01'] input.pick")
    page.check("#cp-table tr[data-cp='cp-west-04'] input.pick")
    page.select_option("#dl-kind", "frequency_plan")
    page.fill("#dl-text", 'name = "north"\n[[bands]]\nstart_hz = 446.0e6\nstop_hz = 446.2e6\nlabel = "PMR446"\nlicensed = true\n')
    page.click("#dl-send")
    wait_js(page, "document.getElementById('dl-result').textContent.startsWith('Queued')")
    assert {x["checkpoint"] for x in store.downlinks()} == {"cp-north-01", "cp-west-04"}
    page.wait_for_selector("#dl-table tbody tr")
    page.click(f"#feed tr[data-uuid='{uid}']")
    page.wait_for_selector("#detail img.evidence")
    time.sleep(0.3)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard.png"))
    assert errors == [], errors
    ctx.close()

    # an officer sees the feed but cannot send documents nor open the engineer page
    ctx = browser.new_context(viewport={"width": 1400, "height": 800})
    page = ctx.new_page()
    login(page, base, "olga")
    assert page.is_hidden("#send-box")
    assert page.goto(base + "/engineer").status == 403
    ctx.close()
