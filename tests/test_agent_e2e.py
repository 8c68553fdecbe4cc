"""The agent against the simulator, as separate processes: alerts match the scenario's truth,
a clean stream stays quiet, SIGTERM stops it within 5 s, and kill -9 loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from tests.agent_rig import agent_config, ground_truth, spool_backlog, start_agent, start_sim, wait_bags
from tests.conftest import NotifyListener, hold_sqlite_lock, run_zastava, wait_for

pytestmark = pytest.mark.slow


def read_alerts(tmp, agent_dir: Path | None = None) -> list[dict]:
    path = (agent_dir or tmp / "agent") / "store.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM alerts")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def run_until_drained(tmp, scenario: str, bags: int, receivers=None, lane_extra=None):
    sim, devices = start_sim(tmp, scenario)
    agent = start_agent(tmp, agent_config(tmp, devices, receivers=receivers, lane_extra=lane_extra))
    try:
        wait_bags(tmp, bags, timeout=bags * 3 + 30)
        sim.terminate()  # no more bags: the agent must now finish every one it was given
        wait_for(lambda: spool_backlog(tmp) == 0, timeout=60, what="agent to drain the spool")
        time.sleep(1.5)
        stop_s = agent.terminate()
        assert agent.p.returncode == 0, agent.text()[-3000:]
        assert stop_s < 5.0, f"SIGTERM took {stop_s:.1f} s"
    finally:
        agent.terminate()
        sim.terminate()
    return ground_truth(tmp), read_alerts(tmp), agent, sim


def detector_view(tmp, model_path) -> dict[str, set]:
    """What the detector itself finds in each processed bag's DICOS files, read independently."""
    from detectors.xray.detector import load_detector
    from drivers.dicos import read_dicos

    det = load_detector(model_path, "zastava")
    done = tmp / "sim" / "spool" / "dicos" / "done"
    out = {}
    for high in sorted(done.glob("*_high.dcs")):
        bag = high.name.removesuffix("_high.dcs")
        h, lo = read_dicos(high).image, read_dicos(done / f"{bag}_low.dcs").image
        out[bag] = {(f"xray.{f.cls}", tuple(int(v) for v in f.box)) for f in det.detect(h, lo)}
    return out


def test_xray_lane_alerts_on_exactly_what_the_detector_finds(tmp_path):
    """The pipeline part of the end-to-end check, independent of the model's quality: every bag the
    simulator made was processed, and its alerts are exactly the detector's findings on its images."""
    truth, alerts, agent, _ = run_until_drained(tmp_path, "e2e_xray.toml", 14)
    model = agent_config_model(tmp_path)
    expected = detector_view(tmp_path, model)
    assert {b["bag_id"] for b in truth} <= set(expected), "every simulated bag reached the detector"
    got = defaultdict(set)
    for a in alerts:
        got[a["bag_id"]].add((a["kind"], tuple(json.loads(a["location"])["box"])))
    for bag, findings in expected.items():
        assert got.get(bag, set()) == findings, f"bag {bag}: alerts {got.get(bag)} vs detector {findings}"
    for a in alerts:  # every alert carries its evidence JPEG and a reason
        ev = json.loads(a["evidence"])
        assert ev and ev[0]["mime"] == "image/jpeg" and a["reason"]
    assert_tdrs(tmp_path, expected, alerts)


def assert_tdrs(tmp, expected: dict[str, set], alerts: list[dict]) -> None:
    """DICOS in, DICOS out: each bag the simulator sent as DICOS has a Threat Detection Report
    beside its raw frame, referencing its high-energy image, ALARM with one threat per alert or
    CLEAR; each alert carries the same report in its evidence (so central gets it)."""
    import pydicom

    from detectors.xray.tdr import TDR_SOP_CLASS

    files = tmp / "agent" / "files"
    done = tmp / "sim" / "spool" / "dicos" / "done"
    by_bag = defaultdict(list)
    for a in alerts:
        by_bag[a["bag_id"]].append(a)
    assert any(expected.values()) and not all(expected.values()), "the scenario has bags of both kinds"
    for bag, findings in expected.items():
        [path] = list((files / "raw").rglob(f"{bag}.tdr.dcm"))
        tdr = pydicom.dcmread(path)
        image = pydicom.dcmread(done / f"{bag}_high.dcs", stop_before_pixels=True)
        assert tdr.SOPClassUID == TDR_SOP_CLASS and tdr.TDRType == "MACHINE"
        assert tdr.StudyInstanceUID == image.StudyInstanceUID and tdr.PatientID == bag
        assert tdr.ReferencedStudySequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
        assert tdr.AlarmDecision == ("ALARM" if findings else "CLEAR")
        assert tdr.NumberOfTotalObjects == len(findings) == len(by_bag[bag])
        boxes = {tuple(int(v) for v in t.PTORepresentationSequence[0].BoundingPolygon[0:2])
                 + tuple(int(v) for v in t.PTORepresentationSequence[0].BoundingPolygon[6:8])
                 for t in tdr.get("ThreatSequence", [])}
        assert boxes == {box for _, box in findings}
        for a in by_bag[bag]:
            [ev] = [e for e in json.loads(a["evidence"]) if e["mime"] == "application/dicom"]
            data = (files / ev["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == ev["sha256"] and data == path.read_bytes()


def agent_config_model(tmp) -> str:
    import tomllib

    return tomllib.loads((tmp / "zastava.toml").read_text())["xray_detector"]["model"]


def assert_alerts_match_truth(truth: list[dict], alerts: list[dict]) -> None:
    """What should alert does (all but one bag carrying contraband get an alert of its class) and
    clean bags stay (almost) quiet."""
    by_bag = defaultdict(set)
    for a in alerts:
        by_bag[a["bag_id"]].add(a["kind"])
    carrying = [b for b in truth if b["contraband"]]
    clean = [b for b in truth if not b["contraband"]]
    assert len(carrying) >= 4 and len(clean) >= 4, truth
    found = [b for b in carrying if f"xray.{b['contraband']}" in by_bag.get(b["bag_id"], set())]
    false_alarm_bags = [b for b in clean if by_bag.get(b["bag_id"])]
    assert len(found) >= len(carrying) - 1, (
        f"missed {[(b['bag_id'], b['contraband']) for b in carrying if b not in found]}; alerts {dict(by_bag)}")
    assert len(false_alarm_bags) <= max(1, len(clean) // 10), f"false alarms on clean bags: {false_alarm_bags}"


def test_weapon_alerts_match_the_scenario_truth(tmp_path):
    """The truth comparison on a class the shipped model detects well (weapons: pd 0.98 on the
    held-out set, models/xray/MODEL_CARD.md)."""
    truth, alerts, _, _ = run_until_drained(tmp_path, "e2e_weapons.toml", 14)
    assert_alerts_match_truth(truth, alerts)


def test_xray_alerts_match_the_scenario_truth(tmp_path):
    """The narcotics-heavy scenario (60 % of its contraband): its seeded bags hide their narcotics
    where the shipped model finds them, so all but one carrying bag must alert. Run 4 missed
    them (it found narcotics in bottles and double walls only); a regression fails here."""
    truth, alerts, _, _ = run_until_drained(tmp_path, "e2e_xray.toml", 14)
    assert_alerts_match_truth(truth, alerts)


def test_clean_stream_stays_quiet(tmp_path):
    """A clean stream raises (almost) nothing: the operating point allows <= 0.03 false alarms per
    clean bag, so over ten seeded clean bags at most one may alarm."""
    truth, alerts, _, _ = run_until_drained(tmp_path, "e2e_clean.toml", 10)
    assert len(truth) >= 10 and not any(b["contraband"] for b in truth)
    alarmed = {a["bag_id"] for a in alerts}
    assert len(alarmed) <= 1, [(a["bag_id"], a["kind"], a["score"]) for a in alerts]


def test_kill9_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(7)
    sim, devices = start_sim(tmp_path, "e2e_xray.toml")
    cfg = agent_config(tmp_path, devices)
    seen: dict[str, dict] = {}
    try:
        for _round in range(6):
            agent = start_agent(tmp_path, cfg)
            time.sleep(rng.uniform(1.5, 5.0))
            agent.kill9()
            now = {a["uuid"]: a for a in read_alerts(tmp_path)}
            lost = set(seen) - set(now)
            assert not lost, f"committed alerts lost after kill -9: {lost}"
            seen.update(now)
        sim.terminate()
        agent = start_agent(tmp_path, cfg)
        wait_for(lambda: spool_backlog(tmp_path) == 0, timeout=60, what="restarted agent to drain the spool")
        time.sleep(1.5)
        agent.terminate()
    finally:
        sim.terminate()
    alerts = read_alerts(tmp_path)
    assert set(seen) <= {a["uuid"] for a in alerts}
    keys = [(a["bag_id"], a["kind"], a["location"]) for a in alerts]
    assert len(keys) == len(set(keys)), "an image's finding was committed twice"
    assert not evidence_intact(tmp_path, alerts), "evidence of a committed alert replaced or lost"
    conn = sqlite3.connect(tmp_path / "agent" / "store.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    queued = conn.execute("SELECT count(*) FROM outbox WHERE msg_type = 'alert'").fetchone()[0]
    assert queued == len(alerts), "every committed alert is queued for central exactly once"
    done = tmp_path / "sim" / "spool" / "dicos" / "done"
    processed = {p.name.rsplit("_", 1)[0] for p in done.iterdir()} if done.exists() else set()
    bags = {b["bag_id"] for b in ground_truth(tmp_path)}
    assert bags <= processed, f"bags never processed after the kills: {bags - processed}"


def evidence_intact(tmp, alerts) -> list[str]:
    """Evidence files of committed alerts that are gone or differ from the sha256 the alert holds."""
    bad = []
    for a in alerts:
        for e in json.loads(a["evidence"]):
            p = tmp / "agent" / "files" / e["path"]
            if not p.exists() or hashlib.sha256(p.read_bytes()).hexdigest() != e["sha256"]:
                bad.append(e["path"])
    return bad


def test_an_image_given_again_after_a_crash_keeps_one_alert_and_its_evidence(tmp_path):
    """The crash window kill -9 hits only by chance, made on purpose: a bag's alerts are committed
    but its spool never recorded the hand-over, so the restarted agent reads the same files again.
    Its findings must not be committed twice, and the first alert's evidence must stay as it was
    (the sha256 sent to central vouches for it)."""
    sim, devices = start_sim(tmp_path, "e2e_xray.toml")
    cfg = agent_config(tmp_path, devices)
    agent = start_agent(tmp_path, cfg)
    spool = tmp_path / "sim" / "spool" / "dicos"
    try:
        wait_for(lambda: len({a["bag_id"] for a in read_alerts(tmp_path)}) >= 2, timeout=90,
                 what="alerts on two bags", on_timeout=lambda: agent.text()[-3000:])
        sim.terminate()
        wait_for(lambda: spool_backlog(tmp_path) == 0, timeout=60, what="agent to drain the spool")
        time.sleep(1.5)
        agent.terminate()
    finally:
        agent.terminate()
        sim.terminate()
    before = read_alerts(tmp_path)
    bag = before[0]["bag_id"]
    files = sorted(p.name for p in (spool / "done").iterdir() if p.name.startswith(bag))
    assert len(files) == 2, files
    for name in files:  # back where the scanner left them, and unknown to the ledger
        os.replace(spool / "done" / name, spool / name)
    ledger = sqlite3.connect(spool / ".zastava-spool.sqlite")
    with ledger:
        ledger.executemany("DELETE FROM files WHERE name = ?", [(n,) for n in files])
    ledger.close()
    agent = start_agent(tmp_path, cfg)
    try:
        wait_for(lambda: spool_backlog(tmp_path) == 0 and all((spool / "done" / n).exists() for n in files),
                 timeout=60, what="the bag read again", on_timeout=lambda: agent.text()[-3000:])
        port = re.search(r'\[metrics\]\nbind = "127.0.0.1:(\d+)"', cfg.read_text()).group(1)
        n_bag = sum(a["bag_id"] == bag for a in before)

        def repeats():  # the agent did screen the bag again, and knew its findings (refreshed each second)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            m = re.search(r'zastava_pipeline_total\{counter="repeats",pipeline="lane1"\} (\d+)', text)
            return m and int(m.group(1)) >= n_bag

        wait_for(repeats, timeout=10, what=f"{n_bag} repeats counted in /metrics")
        agent.terminate()
    finally:
        agent.terminate()
    after = read_alerts(tmp_path)
    assert sorted(a["uuid"] for a in after) == sorted(a["uuid"] for a in before), "committed again"
    assert not evidence_intact(tmp_path, after), "evidence replaced or lost"


def test_a_tdr_that_cannot_be_made_or_kept_holds_back_no_alert(tmp_path):
    """The DICOS report is a courtesy to DICOS consoles; the alerts are the job. Three weapon bags
    through a running agent: one as it should be, one whose study UID is no DICOM UID (no report
    can reference it), one whose report's place on disk is taken by a directory (the write fails
    in the file system). Every bag's alerts are committed with their evidence image, the failures
    are counted in /metrics, the good bag's report is written, and nothing is left half-written."""
    from pydicom.uid import generate_uid

    bags = {"OK1": generate_uid(), "BADUID": "1.2.840.99.not-a-uid", "NOROOM": generate_uid()}
    spool = weapon_spool(tmp_path, bags)
    files = tmp_path / "agent" / "files"
    block_raw_file(files, "NOROOM.tdr.dcm")
    cfg = agent_config(tmp_path, {"scanner": {"spool_dicos": f"spool://{spool}"}})
    agent = start_agent(tmp_path, cfg)
    try:
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 6, timeout=90, what="the three bags screened",
                 on_timeout=lambda: agent.text()[-3000:])
        # BADUID: no report made; NOROOM: made but not kept beside the frame (its alerts carry it)
        wait_for(lambda: lane_counter(cfg, "tdr_failed") == 2, timeout=15, what="two TDR failures in /metrics")
        assert agent.p.poll() is None, "the agent kept running"
        stop_s = agent.terminate()
        assert agent.p.returncode == 0 and stop_s < 5.0, agent.text()[-3000:]
    finally:
        agent.terminate()
    log_text = agent.text()
    assert "the DICOS TDR of bag BADUID could not be made" in log_text
    assert "the DICOS TDR of bag NOROOM could not be kept beside the frame" in log_text
    assert "Traceback" not in log_text, log_text[-3000:]
    alerts = read_alerts(tmp_path)
    assert alerts_by_bag(alerts) == spool_findings(tmp_path, spool / "done", bags), (
        "every bag's alerts are committed, reports or not")
    for a in alerts:
        ev = {e["mime"]: e for e in json.loads(a["evidence"])}
        assert "image/jpeg" in ev
        assert ("application/dicom" in ev) == (a["bag_id"] != "BADUID"), (a["bag_id"], list(ev))
    raw = files / "raw" / "lane1"
    assert len(list(raw.rglob("OK1.tdr.dcm"))) == 1 and not list(raw.rglob("BADUID.tdr.dcm"))
    assert all(p.is_dir() for p in raw.rglob("NOROOM.tdr.dcm")), "the obstacle is left as it was"
    assert not [p for p in files.rglob("*.tmp")], "a failed write leaves no temporary file"


def weapon_bags(bags: dict[str, str]) -> dict[str, dict]:
    """One simulated weapon bag per bag id, as the scanner's two DICOS DX instances (high, low) in
    the study the dict gives it."""
    import numpy as np
    from pydicom.uid import generate_uid

    from hw_sim.xray.scene import make_bag
    from tests.test_dicos import make_dx

    rng = np.random.default_rng(20261129)
    out = {}
    for bag, study in bags.items():
        b, series = make_bag(rng, "weapon"), generate_uid()
        out[bag] = {energy: make_dx(img, energy=energy, bag_id=bag, study=study, series=series)
                    for energy, img in (("high", b.high), ("low", b.low))}
    return out


def weapon_spool(tmp, bags: dict[str, str]) -> Path:
    """A scanner's spool folder with weapon_bags' files."""
    spool = tmp / "spool"
    spool.mkdir()
    for bag, pair in weapon_bags(bags).items():
        for energy, ds in pair.items():
            ds.save_as(spool / f"{bag}_{energy}.dcs", enforce_file_format=True)
    return spool


def block_raw_file(files: Path, name: str) -> list[Path]:
    """A directory where lane1 will write a raw file of this name: the write fails in the file
    system, as a full or broken disk makes it fail (root ignores permissions, not this)."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)  # the lane files raw data by the UTC day it screens a bag
    out = [files / "raw" / "lane1" / d.strftime("%Y%m%d") / name for d in (now, now + timedelta(days=1))]
    for p in out:
        (p / "taken").mkdir(parents=True)
    return out


def lane_counter(cfg: Path, counter: str, pipeline: str = "lane1") -> int | None:
    port = re.search(r'\[metrics\]\nbind = "127.0.0.1:(\d+)"', cfg.read_text()).group(1)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'zastava_pipeline_total\{{counter="{counter}",pipeline="{pipeline}"\}} (\d+)', text)
    return int(m.group(1)) if m else None


def alerts_by_bag(alerts: list[dict]) -> dict[str, set]:
    got = defaultdict(set)
    for a in alerts:
        got[a["bag_id"]].add((a["kind"], tuple(json.loads(a["location"])["box"])))
    return dict(got)


def spool_findings(tmp, folder: Path, bags, must: str = "xray.weapon") -> dict[str, set]:
    """What the configured detector finds in each of these bags' DICOS files, read independently;
    each is a weapon bag and the weapon must be among them (else the test would prove little)."""
    from drivers.dicos import read_dicos

    return findings_of(tmp, {bag: tuple(read_dicos(folder / f"{bag}_{e}.dcs").image for e in ("high", "low"))
                             for bag in bags}, must)


def findings_of(tmp, images: dict[str, tuple], must: str | None = "xray.weapon") -> dict[str, set]:
    from detectors.xray.detector import load_detector

    det = load_detector(agent_config_model(tmp), "zastava")
    out = {}
    for bag, (hi, lo) in images.items():
        out[bag] = {(f"xray.{f.cls}", tuple(int(v) for v in f.box)) for f in det.detect(hi, lo)}
        assert must is None or must in {k for k, _ in out[bag]}, f"{bag}: the detector should find its {must}"
    return out


def test_a_bag_that_cannot_be_screened_is_set_aside_not_filed_as_done(tmp_path):
    """A bag whose processing fails (here its frame cannot be written: a directory has its name),
    or whose images the detector refuses (12 x 12 pixels), is not acknowledged as screened: its
    files go to the spool's bad/ with the reason, the lane counts it, the other bags go on; once
    the fault is cleared, `zastava requeue` puts the first bag back and it is screened and alerts."""

    bags = {"FIRST": "1.2.826.0.1.3680043.8.498.1", "JAMMED": "1.2.826.0.1.3680043.8.498.2",
            "AFTER": "1.2.826.0.1.3680043.8.498.3"}
    spool = weapon_spool(tmp_path, bags)
    from tests.test_dicos import bag_image, make_dx

    for energy in ("high", "low"):  # a readable DICOS pair the detector refuses: 12 x 12 pixels
        make_dx(bag_image(12, 12, seed=3), energy=energy, bag_id="TINY", study="1.2.826.0.1.3680043.8.498.9",
                series="1.2.826.0.1.3680043.8.498.10").save_as(spool / f"TINY_{energy}.dcs", enforce_file_format=True)
    blocked = block_raw_file(tmp_path / "agent" / "files", "JAMMED.jpg")
    # tried twice (again after 1 s), then set aside: the next wait, 2 s, would pass retry_s
    cfg = agent_config(tmp_path, {"scanner": {"spool_dicos": f"spool://{spool}"}}, storage={"retry_s": 2})
    agent = start_agent(tmp_path, cfg)
    try:
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 4 and len(list(spool.glob("bad/*.dcs"))) == 4,
                 timeout=90, what="two bags screened, two set aside", on_timeout=lambda: agent.text()[-3000:])
        assert sorted(p.name for p in spool.glob("bad/*.dcs")) == [
            "JAMMED_high.dcs", "JAMMED_low.dcs", "TINY_high.dcs", "TINY_low.dcs"]
        reason = (spool / "bad" / "JAMMED_high.dcs.reason.txt").read_text()
        assert reason.startswith("not screened: ") and "JAMMED.jpg" in reason, reason
        reason = (spool / "bad" / "TINY_low.dcs.reason.txt").read_text()
        assert reason.startswith("not screened: refused by the detector: ") and "too small" in reason, reason
        wait_for(lambda: lane_counter(cfg, "bags_failed") == 2, timeout=15, what="the failures in /metrics")
        assert lane_counter(cfg, "bad_frames") == 1
        assert lane_counter(cfg, "retries") == 1, "a refused image is not tried again; the jammed bag once"
        assert set(alerts_by_bag(read_alerts(tmp_path))) == {"FIRST", "AFTER"}
        for p in blocked:  # the engineer clears the fault and requeues what was not screened
            shutil.rmtree(p)
        dry = run_zastava("requeue", str(spool), "--dry-run")
        assert dry.returncode == 0 and "2 file(s) would be requeued" in dry.stdout, dry.stdout + dry.stderr
        assert len(list(spool.glob("bad/*.dcs"))) == 4, "a dry run moves nothing"
        out = run_zastava("requeue", str(spool))  # TINY stays: it was refused, not a fault of ours
        assert out.returncode == 0 and "2 file(s) requeued" in out.stdout, out.stdout + out.stderr
        assert sorted(p.name for p in spool.glob("bad/*")) == [
            "TINY_high.dcs", "TINY_high.dcs.reason.txt", "TINY_low.dcs", "TINY_low.dcs.reason.txt"]
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 6, timeout=60, what="the bag screened again",
                 on_timeout=lambda: agent.text()[-3000:])
        wait_for(lambda: "JAMMED" in alerts_by_bag(read_alerts(tmp_path)), timeout=10, what="its alerts")
        assert agent.terminate() < 5.0 and agent.p.returncode == 0, agent.text()[-3000:]
    finally:
        agent.terminate()
    assert "bag JAMMED NOT screened" in agent.text() and "bag TINY NOT screened: refused by the detector" in agent.text()
    assert alerts_by_bag(read_alerts(tmp_path)) == spool_findings(tmp_path, spool / "done", bags)
    assert not list((tmp_path / "agent" / "files").rglob("*.tmp")), "a failed write leaves no temporary file"


def test_a_bag_that_meets_a_passing_fault_is_screened_once_it_clears(tmp_path):
    """A fault of the machine that passes (here the evidence of a bag's second finding cannot be
    written until the engineer clears its path; a locked database or a full disk fail alike)
    holds the lane on that bag and tries it again, waiting longer each time: no bag overtakes it,
    none is set aside, and once the fault clears the bag is screened with nothing done by hand.
    The alert committed before the fault is that bag's, announced once with the others (not
    taken for a repeat after a crash)."""
    from datetime import UTC, datetime, timedelta

    import numpy as np
    from pydicom.uid import generate_uid

    from detectors.xray.detector import load_detector
    from edge_agent.xray_lane import finding_uuid
    from hw_sim.xray.scene import make_bag
    from tests.test_dicos import make_dx

    bags = {"FIRST": "1.2.826.0.1.3680043.8.498.31", "JAMMED": "1.2.826.0.1.3680043.8.498.32",
            "AFTER": "1.2.826.0.1.3680043.8.498.33"}
    pairs = weapon_bags({b: bags[b] for b in ("FIRST", "AFTER")})
    rng = np.random.default_rng(20261130)
    make_bag(rng, "concealment")
    b = make_bag(rng, "narcotics")  # this draw's second bag: three findings (narcotics in a false bottom)
    series = generate_uid()
    pairs["JAMMED"] = {e: make_dx(img, energy=e, bag_id="JAMMED", study=bags["JAMMED"], series=series)
                       for e, img in (("high", b.high), ("low", b.low))}
    spool = tmp_path / "spool"
    spool.mkdir()
    t0 = time.time() - 60
    for i, bag in enumerate(bags):  # the spool hands over oldest first: FIRST, JAMMED, AFTER
        for energy, ds in pairs[bag].items():
            ds.save_as(spool / f"{bag}_{energy}.dcs", enforce_file_format=True)
            os.utime(spool / f"{bag}_{energy}.dcs", (t0 + i, t0 + i))
    cfg = agent_config(tmp_path, {"scanner": {"spool_dicos": f"spool://{spool}"}}, storage={"retry_s": 300})
    found = load_detector(agent_config_model(tmp_path), "zastava").detect(b.high, b.low)
    assert len(found) >= 2, found
    key = "dicos:" + "+".join(str(pairs["JAMMED"][e].SOPInstanceUID) for e in ("high", "low"))
    second = finding_uuid("TEST-CP", "lane1", key, found[1].cls, found[1].box)
    now = datetime.now(UTC)  # its evidence is filed by the UTC day of the bag
    blocked = [tmp_path / "agent" / "files" / "evidence" / d.strftime("%Y%m%d") / f"{second}.jpg"
               for d in (now - timedelta(days=1), now, now + timedelta(days=1))]
    for p in blocked:
        (p / "taken").mkdir(parents=True)
    agent = start_agent(tmp_path, cfg)
    try:
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 2, timeout=60, what="the first bag screened",
                 on_timeout=lambda: agent.text()[-3000:])
        wait_for(lambda: (lane_counter(cfg, "retries") or 0) >= 2, timeout=60, what="the jammed bag tried again",
                 on_timeout=lambda: agent.text()[-3000:])
        assert sorted(p.name for p in spool.glob("done/*.dcs")) == ["FIRST_high.dcs", "FIRST_low.dcs"]
        assert sorted(p.name for p in spool.glob("*.dcs")) == [
            "AFTER_high.dcs", "AFTER_low.dcs", "JAMMED_high.dcs", "JAMMED_low.dcs"], "held: nothing overtakes it"
        assert not list(spool.glob("bad/*")), "a passing fault sets nothing aside while it is tried again"
        assert len(alerts_by_bag(read_alerts(tmp_path)).get("JAMMED", ())) == 1, "its first alert is committed"
        for p in blocked:  # the fault clears
            shutil.rmtree(p)
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 6, timeout=60, what="every bag screened",
                 on_timeout=lambda: agent.text()[-3000:])
        wait_for(lambda: set(alerts_by_bag(read_alerts(tmp_path))) == set(bags), timeout=10, what="their alerts")
        assert not list(spool.glob("bad/*"))
        n_alerts = len(read_alerts(tmp_path))
        wait_for(lambda: lane_counter(cfg, "bags_alerted") == 3, timeout=15, what="the lane's report in /metrics")
        assert lane_counter(cfg, "bags_failed") == 0 and lane_counter(cfg, "repeats") == 0
        assert lane_counter(cfg, "alerts") == n_alerts
        assert agent.terminate() < 5.0 and agent.p.returncode == 0, agent.text()[-3000:]
    finally:
        agent.terminate()
    log = agent.text()
    assert "bag JAMMED could not be screened (IsADirectoryError" in log and "trying again in 2 s (attempt 3)" in log
    assert re.search(r"bag JAMMED screened on attempt \d+, \d+ s after it first failed", log), log[-3000:]
    assert "NOT screened" not in log
    expected = spool_findings(tmp_path, spool / "done", ["FIRST", "AFTER"])
    expected.update(spool_findings(tmp_path, spool / "done", ["JAMMED"], must="xray.narcotics"))
    assert alerts_by_bag(read_alerts(tmp_path)) == expected


def test_a_database_held_locked_by_another_process_delays_bags_but_loses_none(tmp_path):
    """Another process (an engineer's sqlite3 shell, a tool) holds the agent's database locked
    for 36 s while bags come, longer than hung_after_s and systemd's WatchdogSec (30 s). The
    lane's writes give up after their busy wait (10 s, a third of hung_after_s), the bag is tried
    again, the worker never looks hung and the supervisor's health writes give way: the pings to
    systemd's watchdog (a real notify socket) go on throughout. Once the lock goes every bag is
    screened, none set aside. (With one 30 s busy wait, as before, the bag was set aside, the
    lane reported hung and the pings stopped for half a minute.)"""
    bags = {"LOCKED1": "1.2.826.0.1.3680043.8.498.41", "LOCKED2": "1.2.826.0.1.3680043.8.498.42"}
    staging = weapon_spool(tmp_path, bags)
    spool = tmp_path / "scanner"
    spool.mkdir()
    cfg = agent_config(tmp_path, {"scanner": {"spool_dicos": f"spool://{spool}"}}, storage={"retry_s": 120})
    systemd = NotifyListener(tmp_path / "notify.sock")
    agent = start_agent(tmp_path, cfg, env=systemd.env)
    locker = None
    try:
        wait_for(lambda: (tmp_path / "agent" / "store.sqlite").exists() and "running" in agent.text(), timeout=60,
                 what="the agent up", on_timeout=lambda: agent.text()[-3000:])
        locker = hold_sqlite_lock(tmp_path / "agent" / "store.sqlite", 36)
        t_locked = time.monotonic()
        for f in sorted(staging.glob("*.dcs")):  # the scanner writes its bags meanwhile
            os.replace(f, spool / f.name)
        wait_for(lambda: "database is locked); trying again" in agent.text(), timeout=30,
                 what="a write given up and tried again", on_timeout=lambda: agent.text()[-3000:])
        assert not list(spool.glob("done/*")) and not list(spool.glob("bad/*")), "held while locked"
        assert locker.wait(timeout=60) == 0
        t_unlocked = time.monotonic()
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 4, timeout=60, what="both bags screened",
                 on_timeout=lambda: agent.text()[-3000:])
        wait_for(lambda: set(alerts_by_bag(read_alerts(tmp_path))) == set(bags), timeout=10, what="their alerts")
        assert not list(spool.glob("bad/*")) and lane_counter(cfg, "bags_failed") == 0
        assert (lane_counter(cfg, "retries") or 0) >= 1
        assert agent.terminate() < 5.0 and agent.p.returncode == 0, agent.text()[-3000:]
    finally:
        if locker is not None and locker.poll() is None:
            locker.kill()
        agent.terminate()
        systemd.close()
    log = agent.text()
    held_s = t_unlocked - t_locked
    assert held_s >= 31, f"the lock lasted {held_s:.0f} s: the test proves nothing shorter than the watchdog's 30 s"
    silence = systemd.longest_silence(t_locked - 2, t_unlocked + 2)
    assert silence < 10, f"the watchdog went {silence:.0f} s without a ping while the database was locked"
    assert not [m for _, m in systemd.notes if m.startswith("STATUS=HUNG")]
    assert "pipeline hung" not in log and "Traceback" not in log, log[-3000:]
    assert "NOT screened" not in log
    assert alerts_by_bag(read_alerts(tmp_path)) == spool_findings(tmp_path, spool / "done", bags)


def test_a_disk_filled_by_something_else_costs_old_raw_data_not_bags(tmp_path):
    """The agent's disk (a 32 MB tmpfs here) fills up to 64 kB with a file that is not ours (a
    log, a scanner's spool) while bags come. Under storage.min_free_mb the agent deletes raw
    frames, oldest first, within a second and before each bag, so that writes find room: every
    bag is screened, none set aside, and the alerts' evidence (central has none of it: no link)
    is all kept. Without the
    floor the quota, which counts only our files, saw nothing, and every write failed."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system as the agent's disk needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    agent = None
    try:
        first = {f"OLD{i:02d}": f"1.2.826.0.1.3680043.8.498.{100 + i}" for i in range(64)}
        later = {f"NEW{i}": f"1.2.826.0.1.3680043.8.498.{200 + i}" for i in range(4)}
        staging = weapon_spool(tmp_path, {**first, **later})
        spool = tmp_path / "scanner"
        spool.mkdir()
        cfg = agent_config(tmp_path, {"scanner": {"spool_dicos": f"spool://{spool}"}},
                           storage={"dir": str(disk / "agent"), "min_free_mb": 1, "retry_s": 5})
        agent = start_agent(tmp_path, cfg)

        def hand_over(bags):
            for bag in bags:
                for e in ("high", "low"):
                    os.replace(staging / f"{bag}_{e}.dcs", spool / f"{bag}_{e}.dcs")

        hand_over(first)
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 128, timeout=120, what="the first bags screened",
                 on_timeout=lambda: agent.text()[-3000:])
        raw = disk / "agent" / "files" / "raw"
        wait_for(lambda: len(list(raw.rglob("OLD*.jpg"))) == 64, timeout=10, what="their raw frames")
        raw_bytes = sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())
        assert raw_bytes > 3 << 19, f"{raw_bytes} bytes of raw data: too little to make 1 MB of room and keep some"
        ballast = disk / "not-ours.log"  # something else fills the disk to within 64 kB
        with open(ballast, "wb") as f:
            f.write(b"\0" * (shutil.disk_usage(disk).free - (64 << 10)))
        # no bag needs to come for room to be made (a C-STORE inbox on a full disk lets none in)
        wait_for(lambda: shutil.disk_usage(disk).free >= 1 << 20, timeout=10, what="room made by the agent itself")
        hand_over(later)
        wait_for(lambda: len(list(spool.glob("done/*.dcs"))) == 136, timeout=120, what="the later bags screened",
                 on_timeout=lambda: agent.text()[-3000:])
        assert not list(spool.glob("bad/*")), [p.name for p in spool.glob("bad/*")]
        wait_for(lambda: set(alerts_by_bag(read_alerts(tmp_path, disk / "agent"))) >= set(later), timeout=10,
                 what="their alerts")
        wait_for(lambda: (lane_counter(cfg, "deleted_for_disk") or 0) > 0, timeout=10, what="the deletions counted")
        assert lane_counter(cfg, "bags_failed") == 0
        assert shutil.disk_usage(disk).free >= 1 << 19, "room made before each bag: 1 MB less its writes"
        port = re.search(r'\[metrics\]\nbind = "127.0.0.1:(\d+)"', cfg.read_text()).group(1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert re.search(r"^zastava_disk_min_free_bytes 1\.048576e\+06$", text, re.M), text[-2000:]
        free = float(re.search(r"^zastava_disk_free_bytes (\S+)$", text, re.M).group(1))
        assert 0 < free < 8 << 20, free  # the tmpfs's, not the machine's
        by_supervisor = float(re.search(r"^zastava_disk_deleted_for_room_total (\S+)$", text, re.M).group(1))
        assert by_supervisor > 0, "the supervisor made room before any later bag came"
        order = [f"{b}.jpg" for b in (*first, *later)]
        kept = {p.name for p in raw.rglob("*.jpg")}
        assert "OLD00.jpg" not in kept and all(f"{b}.jpg" in kept for b in later), sorted(kept)
        assert kept == set(order[len(order) - len(kept):]), f"not the oldest first: kept {sorted(kept)}"
        for a in read_alerts(tmp_path, disk / "agent"):  # no evidence deleted: central has none of it
            for e in json.loads(a["evidence"]):
                assert list((disk / "agent" / "files" / "evidence").rglob(e["name"])), e["name"]
        assert agent.terminate() < 5.0 and agent.p.returncode == 0, agent.text()[-3000:]
    finally:
        if agent is not None:
            agent.terminate()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    log = agent.text()
    assert "disk low: deleted" in log and "NOT screened" not in log, log[-3000:]


def test_bags_pushed_by_c_store_survive_a_kill_between_success_and_screening(tmp_path):
    """A scanner that heard success deletes its copy: the agent's C-STORE receiver keeps each
    image on disk (an inbox under storage.dir) until its bag is screened. kill -9 right after the
    scanner's pushes, a restart, and every bag is screened once: alerts exactly the detector's
    findings, none twice, and the inbox empty."""
    from pynetdicom import AE

    from drivers.dicos import DICOS_DX_PROCESSING
    from drivers.dicos_scp import register_dicos_classes
    from tests.conftest import free_port

    register_dicos_classes()
    port = free_port()
    cfg = agent_config(tmp_path, {"scanner": {"spool_dicos": f"dicos-scp://127.0.0.1:{port}?ae=ZASTAVA"}})
    bags = weapon_bags({f"PUSH{i}": f"1.2.826.0.1.3680043.8.498.{70 + i}" for i in range(3)})
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(DICOS_DX_PROCESSING)
    ae.add_requested_context("1.2.840.10008.1.1")
    inbox = tmp_path / "agent" / "inbox" / "lane1"

    def associate():
        assoc = ae.associate("127.0.0.1", port, ae_title="ZASTAVA")
        return assoc if assoc.is_established else None

    agent = start_agent(tmp_path, cfg)
    try:
        assoc = wait_for(associate, timeout=60, what="the agent's C-STORE receiver",
                         on_timeout=lambda: agent.text()[-3000:])
        for pair in bags.values():
            for ds in pair.values():
                assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        agent.kill9()  # the scanner has deleted its copies by now
        first = read_alerts(tmp_path)
        agent = start_agent(tmp_path, cfg)
        wait_for(lambda: inbox.is_dir() and not list(inbox.glob("*.dcs")), timeout=90,
                 what="the inbox screened empty", on_timeout=lambda: agent.text()[-3000:])
        time.sleep(1.0)
        assert agent.terminate() < 5.0 and agent.p.returncode == 0, agent.text()[-3000:]
    finally:
        agent.terminate()
    alerts = read_alerts(tmp_path)
    assert len({a["uuid"] for a in alerts}) == len(alerts) and {a["uuid"] for a in first} <= {a["uuid"] for a in alerts}
    expected = findings_of(tmp_path, {b: (p["high"].pixel_array, p["low"].pixel_array) for b, p in bags.items()})
    assert alerts_by_bag(alerts) == expected
    assert sum(len(v) for v in expected.values()) == len(alerts), "no finding alerted twice"
    assert not (inbox / "bad").exists() or not list((inbox / "bad").iterdir()), "nothing set aside"


def test_radio_alerts_match_the_scenario(tmp_path):
    """Drone telemetry is watchlisted, the FSK link outside the band is unlicensed, the key fob
    in the licence-exempt SRD band raises nothing; each alert has a spectrogram and SigMF."""
    sim, devices = start_sim(tmp_path, "e2e_radio.toml")
    rx = [{"id": "rx433", "source": devices["receiver:rx433"]["iq"], "center_hz": 433.92e6, "rate_hz": 2.4e6}]
    agent = start_agent(tmp_path, agent_config(tmp_path, devices, receivers=rx))

    emitters = {"drone": 433.5e6, "unlicensed": 434.95e6, "keyfob": 433.92e6}

    def kinds_near():
        """Alert kinds by the scenario's emitter each lies within 60 kHz of (not by rounding the
        estimated centre: 434.95 MHz sits on a rounding boundary, one FFT bin decides the side)."""
        out = defaultdict(set)
        for a in read_alerts(tmp_path):
            loc = json.loads(a["location"])
            for name, f in emitters.items():
                if abs(loc["center_hz"] - f) < 60e3:
                    out[name].add(a["kind"])
        return out

    try:
        wait_for(lambda: {"rf.watchlist"} <= kinds_near().get("drone", set())
                 and {"rf.unlicensed"} <= kinds_near().get("unlicensed", set()), timeout=60,
                 what="watchlist alert at 433.5 MHz and unlicensed alert at 434.95 MHz",
                 on_timeout=lambda: f"alerts {[(a['kind'], a['location']) for a in read_alerts(tmp_path)]}\n"
                                    f"agent log:\n{agent.text()[-4000:]}")
        time.sleep(3)
    finally:
        agent.terminate()
        sim.terminate()
    near = kinds_near()
    assert not near.get("keyfob"), f"the licensed key fob raised {near.get('keyfob')}"
    for a in read_alerts(tmp_path):
        names = [e["name"] for e in json.loads(a["evidence"])]
        assert any(n.endswith(".png") for n in names) and any(n.endswith(".sigmf-meta") for n in names), names
        if a["kind"] == "rf.watchlist":
            assert json.loads(a["location"])["class"] == "lora"


def test_radio_alerts_that_cannot_be_stored_for_a_while_are_stored_once_the_fault_clears(tmp_path):
    """The evidence folder cannot be made (a file holds its name; a full or failing disk fails
    alike) when the receiver's first alerts come: the spectrum goes on being watched, the alerts
    are kept and tried again, and once the fault clears they are stored with their evidence,
    none lost."""
    from datetime import UTC, datetime, timedelta

    sim, devices = start_sim(tmp_path, "e2e_radio.toml")
    rx = [{"id": "rx433", "source": devices["receiver:rx433"]["iq"], "center_hz": 433.92e6, "rate_hz": 2.4e6}]
    now = datetime.now(UTC)  # evidence is filed by the UTC day
    blocked = [tmp_path / "agent" / "files" / "evidence" / d.strftime("%Y%m%d")
               for d in (now - timedelta(days=1), now, now + timedelta(days=1))]
    for p in blocked:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("a file where the day's evidence folder goes")
    cfg = agent_config(tmp_path, devices, receivers=rx, storage={"retry_s": 300})
    agent = start_agent(tmp_path, cfg)

    def counter(name):
        try:
            return lane_counter(cfg, name, "rx433")
        except OSError:  # the metrics server is not up yet
            return None

    try:
        wait_for(lambda: (counter("retries") or 0) >= 3, timeout=60, what="alerts tried again",
                 on_timeout=lambda: agent.text()[-3000:])
        assert read_alerts(tmp_path) == [], "nothing stored while the fault lasts"
        cleared = time.time()
        for p in blocked:
            p.unlink()
        wait_for(lambda: {"rf.watchlist", "rf.unlicensed"} <= {a["kind"] for a in read_alerts(tmp_path)},
                 timeout=60, what="the alerts stored", on_timeout=lambda: agent.text()[-3000:])
        wait_for(lambda: counter("unstored") == 0, timeout=40, what="every kept alert stored")
        assert counter("alerts_lost") == 0
    finally:
        agent.terminate()
        sim.terminate()
    alerts = read_alerts(tmp_path)
    kept = [a for a in alerts if a["t"] < cleared]
    assert {"rf.watchlist", "rf.unlicensed"} <= {a["kind"] for a in kept}, "the alerts found during the fault"
    for a in alerts:
        names = [e["name"] for e in json.loads(a["evidence"])]
        assert any(n.endswith(".png") for n in names) and any(n.endswith(".sigmf-meta") for n in names), names
    log = agent.text()
    assert "could not be stored (FileExistsError" in log and re.search(r"alert \S+ stored on attempt \d", log)
    assert "LOST" not in log


def test_radio_activity_raises_the_risk_of_bags_inspected_meanwhile(tmp_path):
    """Fusion: once drone telemetry is alerted, X-ray alerts of bags in the window carry a raised
    severity and the reason. The physics baseline is used so the test does not hinge on the model."""
    sim, devices = start_sim(tmp_path, "e2e_fusion.toml")
    rx = [{"id": "rx433", "source": devices["receiver:rx433"]["iq"], "center_hz": 433.92e6, "rate_hz": 1.024e6}]
    cfg = agent_config(tmp_path, devices, receivers=rx, model="physics")
    agent = start_agent(tmp_path, cfg)
    try:
        def fused():
            rf = [a for a in read_alerts(tmp_path) if a["kind"] == "rf.watchlist"]
            xr = [a for a in read_alerts(tmp_path) if a["kind"].startswith("xray.") and rf
                  and a["t"] > min(r["t"] for r in rf) + 0.5]
            return xr if xr and all(a["fusion"] for a in xr) else None

        alerts = wait_for(fused, timeout=60, what="X-ray alerts after a drone alert, with fusion")
        # the same run, seen by Prometheus: devices up, pipeline counters moving
        port = re.search(r'\[metrics\]\nbind = "127.0.0.1:(\d+)"', cfg.read_text()).group(1)

        def scrape():  # the agent refreshes its figures once a second
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return text if re.search(r'zastava_pipeline_total\{counter="alerts",pipeline="lane1"\} [1-9]',
                                     text) else None

        text = wait_for(scrape, timeout=10, what="alert counter in /metrics")
        assert 'zastava_device_up{device="rx433.source",role="iq"} 1.0' in text, text
        assert "zastava_outbox_backlog" in text
    finally:
        agent.terminate()
        sim.terminate()
    f = json.loads(alerts[0]["fusion"])
    assert f["raised"] and "lora" in f["reason"] and f["radio_alerts"]
    assert "risk raised" in alerts[0]["reason"]
