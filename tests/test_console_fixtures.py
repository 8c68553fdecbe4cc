"""Helpers shared by the console, dashboard and browser tests: a real Store, real AgentState, real files.

Bag images are drawn here with OpenCV in the conventional pseudo-colour (organic orange, inorganic green,
metal blue) so the console's filters and the TIP compositor have something realistic to work on.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from common import webauth
from edge_agent.alerts import Alert
from edge_agent.config import AgentConfig
from edge_agent.evidence import FileStore
from edge_agent.state import AgentState, BagView
from edge_agent.store import Store

PASSWORDS = {"olga": "officer-pass-1", "sam": "supervisor-pass-1", "eve": "engineer-pass-1", "oleg": "officer-pass-2"}
ROLES = {"olga": "officer", "sam": "supervisor", "eve": "engineer", "oleg": "officer"}


def make_cfg(tmp: Path, tip_rate: float = 0.0, secure: bool = False, bind: str = "127.0.0.1:8080") -> AgentConfig:
    return AgentConfig.model_validate({
        "checkpoint_id": "cp-test", "storage": {"dir": str(tmp / "data")},
        "console": {"tip_rate": tip_rate, "secure_cookies": secure, "bind": bind},
    })


def make_users(cfg: AgentConfig) -> Path:
    path = Path(cfg.storage.dir) / "users.toml"
    for name, pw in PASSWORDS.items():
        webauth.add_user(path, name, ROLES[name], pw)
    return path


def bag_image(seed: int, w: int = 640, h: int = 400, metal: bool = True) -> np.ndarray:
    """A pseudo-colour bag: clothes (organic), a bottle and cables (inorganic), a laptop frame (metal)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 246, np.uint8)
    x0, y0, x1, y1 = 60, 50, w - 60, h - 50
    cv2.rectangle(img, (x0, y0), (x1, y1), (120, 170, 215), -1)  # bag body, light organic
    for _ in range(14):  # folded clothes
        cx, cy = int(rng.integers(x0 + 30, x1 - 30)), int(rng.integers(y0 + 30, y1 - 30))
        ax, ay = int(rng.integers(20, 90)), int(rng.integers(15, 50))
        cv2.ellipse(img, (cx, cy), (ax, ay), float(rng.uniform(0, 180)), 0, 360,
                    (int(rng.integers(40, 90)), int(rng.integers(110, 150)), int(rng.integers(190, 230))), -1)
    cv2.circle(img, (x0 + 120, y0 + 200), 38, (70, 160, 70), -1)  # a bottle seen end-on: inorganic
    for k in range(3):
        pts = np.array([[x0 + 40 + 60 * k, y1 - 40], [x0 + 200, y1 - 90 - 10 * k], [x1 - 80, y1 - 50]], np.int32)
        cv2.polylines(img, [pts], False, (60, 150, 40), 3)
    if metal:
        cv2.rectangle(img, (x1 - 230, y0 + 30), (x1 - 40, y0 + 150), (170, 90, 40), 6)  # laptop frame
        cv2.rectangle(img, (x1 - 200, y0 + 60), (x1 - 140, y0 + 110), (140, 60, 20), -1)  # battery
    cv2.rectangle(img, (x0, y0), (x1, y1), (40, 80, 130), 3)  # handle/rim
    noise = rng.normal(0, 6, img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (3, 3), 0)


def add_bag(state: AgentState, store: Store, files: FileStore, lane: str, bag_id: str, seed: int,
            narcotics: bool = False, t: float | None = None) -> tuple[BagView, list[Alert]]:
    """Store a bag's display image, (optionally) a narcotics alert with evidence, and publish the bag."""
    t = t or time.time()
    img = bag_image(seed)
    findings, alerts = [], []
    if narcotics:
        box = [200, 160, 300, 240]
        cv2.rectangle(img, (box[0], box[1]), (box[2], box[3]), (30, 110, 200), -1)  # a dense organic block
        findings = [{"cls": "narcotics", "score": 0.91, "box": box, "material": "organic", "concealed": True}]
    ok, jpg = cv2.imencode(".jpg", img)
    assert ok
    raw = files.save(f"raw/{lane}/{bag_id}.jpg", jpg.tobytes(), "raw", "image/jpeg")
    if narcotics:
        a = Alert(checkpoint="cp-test", source=lane, kind="xray.narcotics", score=0.91, severity="high", t=t,
                  bag_id=bag_id, location={"box": findings[0]["box"], "image": [img.shape[1], img.shape[0]]},
                  reason="narcotics (organic, score 0.91), concealed: inside another object")
        a.evidence = [files.save(f"evidence/{a.uuid}.jpg", jpg.tobytes(), "evidence", "image/jpeg", alert_uuid=a.uuid)]
        assert store.add_alert(a)
        alerts.append(a)
        state.events.publish("alert", {"alert": store.get_alert(a.uuid)})
    bag = BagView(lane=lane, bag_id=bag_id, t=t, image_path=raw.path, findings=findings,
                  alert_uuids=[a.uuid for a in alerts], width=img.shape[1], height=img.shape[0])
    state.add_bag(bag)
    return bag, alerts


def add_radio(state: AgentState, store: Store, rid: str = "rx1") -> Alert:
    view = state.receiver(rid)
    view.center_hz, view.rate_hz = 446.1e6, 2.4e6
    rng = np.random.default_rng(1)
    for i in range(60):
        row = rng.normal(-95, 2, 512)
        row[300:306] += 40  # a PMR446 walkie-talkie
        row[100:104] += 25 * (i % 8 < 5)
        view.waterfall.append(row)
    view.emitters = [
        {"cls": "pmr446", "center_hz": 446.1e6 + (303 / 512 - 0.5) * 2.4e6, "bandwidth_hz": 12.5e3, "power_db": -55.0,
         "licensed": False},
        {"cls": "fsk_telemetry", "center_hz": 446.1e6 + (102 / 512 - 0.5) * 2.4e6, "bandwidth_hz": 25e3,
         "power_db": -70.0, "licensed": True},
    ]
    a = Alert(checkpoint="cp-test", source=rid, kind="rf.unlicensed", score=0.88, severity="medium",
              location={"center_hz": view.emitters[0]["center_hz"], "bandwidth_hz": 12.5e3},
              reason="pmr446 walkie-talkie outside the frequency plan, -55 dBFS")
    store.add_alert(a)
    state.events.publish("alert", {"alert": store.get_alert(a.uuid)})
    return a


def login(client, name: str, password: str | None = None):
    r = client.get("/login")
    tok = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    return client.post("/login", data={"username": name, "password": password or PASSWORDS[name], "csrf": tok},
                       follow_redirects=False)


def csrf(client) -> str:
    return client.get("/api/me").json()["csrf"]


@pytest.fixture
def world(tmp_path):
    """cfg, state, store, files for one test; a real SQLite store on a tmp file."""
    cfg = make_cfg(tmp_path)
    make_users(cfg)
    root = Path(cfg.storage.dir)
    store = Store(root / "store.sqlite")
    files = FileStore(store, root / "files", 1 << 30, 1 << 31)
    state = AgentState(cfg.checkpoint_id)
    yield cfg, state, store, files
    store.close()
