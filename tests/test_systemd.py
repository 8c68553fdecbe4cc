"""The unit files are valid for systemd and carry the hardening and watchdog the design asks for."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest

from tests.conftest import REPO

UNITS = ["zastava-agent.service", "zastava-central.service", "zastava-sim.service"]


def parse(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(REPO / "systemd" / name)
    return cp


@pytest.mark.parametrize("name", ["zastava-agent.service", "zastava-central.service"])
def test_services_are_notify_with_watchdog_and_hardening(name):
    s = parse(name)["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    for key, val in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                     "PrivateTmp": "yes"}.items():
        assert s[key] == val, key
    assert s["User"] != "root" and s["StateDirectory"]


def test_agent_may_reach_serial_and_usb_only():
    text = (REPO / "systemd" / "zastava-agent.service").read_text()
    assert "DevicePolicy=closed" in text and "DeviceAllow=char-ttyUSB rw" in text
    assert "DeviceAllow=char-usb_device rw" in text
    assert "SupplementaryGroups=dialout plugdev" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(name, tmp_path):
    # verify checks ExecStart binaries exist: point them at a real executable for the check
    text = (REPO / "systemd" / name).read_text().replace("/opt/zastava/.venv/bin/zastava", "/bin/true")
    unit = tmp_path / name
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    problems = [ln for ln in r.stderr.splitlines()
                if name in ln and "Failed to" not in ln and "User" not in ln and "Group" not in ln]
    assert r.returncode == 0 or not problems, r.stderr
    assert "Unknown key" not in r.stderr and "Invalid" not in r.stderr, r.stderr


def test_udev_rule_names_rtlsdr_ids():
    text = (REPO / "systemd" / "60-zastava-rtlsdr.rules").read_text()
    assert 'ATTRS{idVendor}=="0bda", ATTRS{idProduct}=="2838"' in text
