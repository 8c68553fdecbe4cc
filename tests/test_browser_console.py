"""The officer console in headless Debian chromium (Playwright), against the console served by uvicorn
with a real Store and AgentState filled by the test. Screenshots go to bench/results/screenshots/."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from edge_agent.console.server import start_console
from edge_agent.evidence import FileStore
from edge_agent.state import AgentState
from edge_agent.store import Store
from tests.conftest import REPO, free_port, wait_for
from tests.test_console_fixtures import PASSWORDS, add_bag, add_radio, make_cfg, make_users

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHOTS = REPO / "bench" / "results" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="Debian chromium not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        assert b.version  # Debian's chromium, never a downloaded one
        yield b
        b.close()


@pytest.fixture
def agent(tmp_path):
    cfg = make_cfg(tmp_path, tip_rate=0.5, bind=f"127.0.0.1:{free_port()}")
    make_users(cfg)
    root = Path(cfg.storage.dir)
    store = Store(root / "store.sqlite")
    files = FileStore(store, root / "files", 1 << 30, 1 << 31)
    state = AgentState(cfg.checkpoint_id)
    state.set_device("L1.source", "xray", {"url": "spool:///var/spool/zastava/xray", "state": "ok", "last_error": None})
    state.set_device("L1.control", "control", {"url": "socket://127.0.0.1:7001", "state": "ok", "last_error": None})
    state.set_device("rx1.source", "iq", {"url": "rtltcp://127.0.0.1:1234", "state": "reconnecting",
                                          "last_error": "rtl_tcp stalled: no samples for 5.0 s",
                                          "last_error_t": time.time() - 12})
    state.link.update({"configured": True, "connected": True, "backlog": 0})
    handle = start_console(cfg, state, store.path, files.root, threading.Event(), tip_seed=2)
    yield f"http://{cfg.console.bind}", state, store, files
    handle.stop(timeout=3)
    store.close()


def wait_js(page, expr: str, timeout: float = 5000) -> None:
    """Poll a JS expression from Python: Playwright's wait_for_function evals strings in the page, which
    our Content-Security-Policy (script-src 'self', no eval) rightly refuses."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        if page.evaluate(expr):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expr}")
        time.sleep(0.1)


def watch_errors(page) -> list[str]:
    """JS exceptions and console errors (e.g. a CSP refusal) seen by the page; a test asserts none."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    return errors


def login(page, base, name):
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("#username", name)
    page.fill("#password", PASSWORDS[name])
    page.click("#signin")
    page.wait_for_selector("body[data-ready='1']", timeout=10000)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_console_in_chromium(browser, agent):
    base, state, store, files = agent
    for i in range(1, 4):  # seed 2: the first bags stay clear... until the rng says otherwise
        add_bag(state, store, files, "L1", f"bag-{i}", seed=i, t=time.time() - 60 * (4 - i))
    radio = add_radio(state, store)
    ctx = browser.new_context(viewport={"width": 1600, "height": 900})
    page = ctx.new_page()
    errors = watch_errors(page)
    # refused before login: pages redirect, the API answers 401
    assert page.goto(base + "/api/alerts").url.endswith("/login")
    assert page.request.get(base + "/api/alerts").status == 401
    login(page, base, "olga")

    # a bag with narcotics arrives live: its box is drawn and its finding listed, no reload
    _, alerts = add_bag(state, store, files, "L1", "bag-narc", seed=11, narcotics=True)
    wait_js(page, "document.getElementById('bag-id').textContent === 'bag-narc'", timeout=10000)
    page.wait_for_selector("#findings li.f-narcotics")
    time.sleep(0.5)
    # the box: amber stroke pixels on the canvas where the finding is
    amber = page.evaluate("""() => { const c = document.getElementById('xray'); const v = viewer;
        const [x1, y1, x2, y2] = v.boxes[0].box; const X = Math.round(v.panX + x1 * v.zoom), Y = Math.round(v.panY + ((y1 + y2) / 2) * v.zoom);
        const d = c.getContext('2d').getImageData(X - 1, Y, 3, 1).data; return [d[0], d[1], d[2], d[4], d[5], d[6]]; }""")
    assert any(amber[i] > 200 and 140 < amber[i + 1] < 210 and amber[i + 2] < 60 for i in (0, 3)), amber
    shot(page, "console_lane")

    # image tools work on the canvas
    for key in ("m", "o", "g", "v", "e"):
        page.keyboard.press(key)
    assert page.evaluate("[viewer.mode, viewer.inverse, viewer.edges]") == ["grey", True, True]
    page.mouse.move(700, 400)
    page.mouse.wheel(0, -300)
    assert page.evaluate("viewer.zoom") > page.evaluate("Math.min(1, 99)") * 0.5
    shot(page, "console_lane_tools")
    page.keyboard.press("n")
    page.keyboard.press("v")
    page.keyboard.press("e")
    page.keyboard.press("0")

    page.keyboard.press("?")
    assert page.is_visible("#help") and "organic" in page.inner_text("#help")
    page.keyboard.press("Escape")
    assert page.is_hidden("#help")

    # officer marks it: X -> contraband kind -> recorded, stored, queued for central
    page.keyboard.press("x")
    page.select_option("#kind-select", "narcotics")
    page.fill("#kind-note", "found in lining")
    page.click("#kind-ok")
    wait_for(lambda: store.decisions_for(alerts[0].uuid), 5, what="decision stored")
    wait_js(page, "document.getElementById('bag-decided').textContent.includes('contraband found (narcotics) by olga')")
    d = store.decisions_for(alerts[0].uuid)[0]
    assert (d["officer"], d["decision"], d["contraband_kind"]) == ("olga", "contraband_found", "narcotics")

    # alert queue with evidence and reason; radio alert is there too
    page.keyboard.press("2")
    page.uncheck("#only-pending")
    page.click(f"tr[data-uuid='{alerts[0].uuid}']")
    page.wait_for_selector("#alert-detail img.evidence")
    assert "concealed" in page.inner_text("#alert-detail")
    assert "contraband found" in page.inner_text("#alert-detail")
    page.check("#only-pending")
    page.click(f"tr[data-uuid='{radio.uuid}']")
    page.keyboard.press("s")
    wait_for(lambda: store.decisions_for(radio.uuid), 5, what="radio decision stored")
    page.uncheck("#only-pending")
    page.click(f"tr[data-uuid='{alerts[0].uuid}']")
    shot(page, "console_alerts")

    # radio view: waterfall grows live, emitters listed with licence state
    page.keyboard.press("3")
    for k in range(30):
        view = state.receiver("rx1")
        row = list(view.waterfall[-1])
        state.events.publish("waterfall", {"receiver": "rx1", "center_hz": view.center_hz, "rate_hz": view.rate_hz,
                                           "row": [round(float(v) + (30 if 200 < j < 206 and k % 6 < 4 else 0), 1)
                                                   for j, v in enumerate(row)], "emitters": view.emitters})
    wait_js(page, "S.wf.rx1 && S.wf.rx1.rows >= 90", timeout=10000)
    page.wait_for_selector("#rx-rx1 table.emitters tr.unlicensed")
    assert "pmr446" in page.inner_text("#rx-rx1") and "NO" in page.inner_text("#rx-rx1")
    assert "rf.unlicensed" in page.inner_text("#radio-alerts")
    assert "stalled" in page.inner_text("#statusbar") and "connected" in page.inner_text("#statusbar")
    shot(page, "console_radio")

    # the link to central goes down: the status bar says so within the 2 s status beat, with the error
    state.link.update({"connected": False, "backlog": 17, "last_error": "hub tcp://10.0.0.1:7100 unreachable",
                       "last_ack": time.time() - 30})
    wait_js(page, "document.getElementById('link').textContent.includes('DOWN')", timeout=6000)
    assert "backlog 17" in page.inner_text("#link") and "unreachable" in page.inner_text("#link")
    state.link.update({"connected": True, "backlog": 0, "last_error": None})

    # a lane could not screen a bag (its frame could not be written): red in the status bar
    state.pipelines["L1"] = {"frames": 9, "bags_failed": 1, "last_failed": {
        "bag_id": "bag-jam", "t": time.time() - 20, "reason": "OSError: [Errno 28] No space left on device"}}
    wait_js(page, "document.getElementById('lanes-health').textContent.includes('NOT screened')", timeout=6000)
    chip = page.inner_text("#lanes-health")
    assert "L1: 1 bag NOT screened" in chip and "bag-jam" in chip and "No space left" in chip, chip
    assert "bad" in page.get_attribute("#lanes-health .chip", "class")
    shot(page, "console_lane_failed")

    # a lane held on a bag it is trying again shows why no new bag comes, in amber, before its failures
    state.pipelines["L1"]["retrying"] = {"bag_id": "bag-held", "since": time.time() - 30, "failures": 3,
                                         "reason": "OperationalError: database is locked"}
    wait_js(page, "document.getElementById('lanes-health').textContent.includes('held on bag')", timeout=6000)
    chips = page.query_selector_all("#lanes-health .chip")
    assert len(chips) == 2, page.inner_text("#lanes-health")
    held = chips[0].inner_text()
    assert "L1: held on bag bag-held" in held and "3 failed" in held and "database is locked" in held, held
    assert "warn" in chips[0].get_attribute("class") and "NOT screened" in chips[1].inner_text()
    state.pipelines.pop("L1")

    # a disk under its floor: red, first in the status bar's health chips
    state.storage = {"free_bytes": 300 << 20, "min_free_bytes": 1 << 30, "low": True}
    wait_js(page, "document.getElementById('lanes-health').textContent.includes('MB free')", timeout=6000)
    chip = page.inner_text("#lanes-health")
    assert "disk: 300 MB free" in chip and "under the 1024 MB floor" in chip, chip
    assert "bad" in page.get_attribute("#lanes-health .chip", "class")
    state.storage = {"free_bytes": 3 << 30, "min_free_bytes": 1 << 30, "low": False}
    wait_js(page, "!document.getElementById('lanes-health').textContent.includes('MB free')", timeout=6000)

    # a clock central finds three years off: amber, saying which way; gone once the clock is right
    state.clock = {"synced": False, "max_error_s": 16.0, "offset_s": 1095 * 86400.0}
    wait_js(page, "document.getElementById('lanes-health').textContent.includes('central')", timeout=6000)
    chip = page.inner_text("#lanes-health")
    assert "clock: 1095.0 days behind central" in chip, chip
    assert "warn" in page.get_attribute("#lanes-health .chip", "class")
    state.clock = {"synced": True, "max_error_s": 0.01, "offset_s": 0.003}
    wait_js(page, "!document.getElementById('lanes-health').textContent.includes('central')", timeout=6000)

    # an officer cannot reach the engineer page
    assert page.goto(base + "/engineer").status == 403
    assert page.goto(base + "/api/engineer/health").status == 403

    # TIP: clear bags until the console projects one; the officer flags it -> scored as a hit
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='1']")
    n = 0
    while True:
        n += 1
        assert n < 30, "no projection in 30 clear bags at tip_rate 0.5"
        add_bag(state, store, files, "L1", f"clear-{n}", seed=100 + n)
        wait_js(page, f"document.getElementById('bag-id').textContent === 'clear-{n}'", timeout=10000)
        if any(a["tip"] and a["bag_id"] == f"clear-{n}" for a in store.alerts(limit=50, include_tip=True)):
            break
    time.sleep(0.5)
    shot(page, "console_tip_projected")
    page.keyboard.press("t")
    page.wait_for_selector("#tipbanner.hit")
    assert "Threat Image Projection" in page.inner_text("#tipbanner")
    shot(page, "console_tip_hit")
    # only the deliberate 401/403 refusals above may show in the page's console
    assert [e for e in errors if "status of 401" not in e and "status of 403" not in e] == [], errors
    ctx.close()

    # the supervisor sees the score; the engineer sees raw counters
    ctx = browser.new_context(viewport={"width": 1400, "height": 800})
    sup = ctx.new_page()
    login(sup, base, "sam")
    sup.goto(base + "/supervisor")
    sup.wait_for_selector("#scores tr[data-officer='olga']")
    row = sup.inner_text("#scores tr[data-officer='olga']").split("\t")
    assert row[:4] == ["olga", "1", "1", "0"], row
    shot(sup, "console_supervisor")
    ctx.close()
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    eng = ctx.new_page()
    login(eng, base, "eve")
    eng.goto(base + "/engineer")
    eng.wait_for_selector("body[data-ready='1']")
    assert "rtl_tcp stalled" in eng.inner_text("#devices")
    shot(eng, "console_engineer")
    assert eng.goto(base + "/supervisor").status == 403
    ctx.close()
