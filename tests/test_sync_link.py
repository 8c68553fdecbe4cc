"""Sender and hub as separate processes on loopback: outages, kill -9, refusals, downlink, revocation."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
import uuid

import pytest
import zmq

from sync import wire
from sync.harness import Rig, wait_for
from sync.keys import load_pair, load_public, make_keypair


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path / "rig", checkpoints=["CP-01", "CP-02"], max_msg_bytes=256 << 10)
    yield r
    r.stop_all()


def _assert_exactly_once(rig: Rig, ids: list[str], cp: str = "CP-01") -> None:
    got = rig.hub_alert_ids()
    assert len(got) == len(set(got))
    assert set(got) == set(ids), f"missing {len(set(ids) - set(got))}, extra {len(set(got) - set(ids))}"
    assert rig.backlog(cp) == 0
    # evidence arrived intact, on disk, where the store says
    for u, path, sha in rig.hub_query("SELECT alert_uuid, path, sha256 FROM evidence"):
        assert hashlib.sha256((rig.data_dir / path).read_bytes()).hexdigest() == sha, u


def _raw_client(rig: Rig, secret_file, server_pub=None) -> zmq.Socket:
    """A DEALER speaking the protocol by hand, to send what the real sender never would."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.curve_publickey, s.curve_secretkey = load_pair(secret_file)
    s.curve_serverkey = server_pub or load_public(rig.hub_pub)
    s.connect(rig.endpoint)
    return s


def _alert_frames(cp: str, mid: str | None = None) -> tuple[str, list[bytes]]:
    mid = mid or str(uuid.uuid4())
    blob = os.urandom(100)
    body = {"id": mid, "checkpoint": cp, "created": time.time(), "priority": 1,
            "data": {"uuid": mid, "t": time.time(), "kind": "rf.unlicensed", "severity": "medium"},
            "evidence": [{"name": "s.png", "mime": "image/png", "size": 100, "sha256": hashlib.sha256(blob).hexdigest()}]}
    return mid, wire.encode("alert", body, [blob])


def _recv_ack(s: zmq.Socket, timeout_ms: int = 3000) -> dict | None:
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        if s.poll(50):
            m = wire.decode(s.recv_multipart())
            if m.type == "ack":
                return m.body
    return None


def test_hub_outage_then_every_alert_arrives_once(rig):
    rig.start_hub()
    rig.start_sender()
    first = rig.add_alerts(30)
    wait_for(lambda: rig.backlog() == 0, 20, what="first alerts delivered")
    rig.kill(rig.hub, signal.SIGTERM)
    during = rig.add_alerts(200)
    time.sleep(1.5)  # the sender keeps trying against a dead hub: nothing is marked delivered
    assert rig.backlog() == 200
    rig.start_hub()
    wait_for(lambda: rig.backlog() == 0, 30, what="backlog flushed after the hub returned")
    _assert_exactly_once(rig, first + during)
    skew = rig.hub_query("SELECT skew_s, backlog, last_seen FROM checkpoints WHERE id = 'CP-01'")
    assert skew and skew[0][0] is not None and abs(skew[0][0]) < 1.0  # same machine: near zero


def test_kill9_sender_or_hub_50_rounds_zero_lost_zero_duplicated(rig):
    rng = random.Random(8)
    rig.start_hub()
    rig.start_sender()
    ids: list[str] = []
    rounds = 0
    deadline = time.monotonic() + 110
    while rounds < 50 and time.monotonic() < deadline:
        ids += rig.add_alerts(rng.randint(5, 40))
        time.sleep(rng.uniform(0.02, 0.35))
        if rng.random() < 0.5:
            rig.kill(rig.senders["CP-01"])
            ids += rig.add_alerts(rng.randint(0, 10))  # the agent keeps committing meanwhile
            rig.start_sender(wait=rng.random() < 0.5)
        else:
            rig.kill(rig.hub)
            ids += rig.add_alerts(rng.randint(0, 10))
            rig.start_hub()
        rounds += 1
    assert rounds >= 50, f"only {rounds} rounds in the time box"
    wait_for(lambda: rig.backlog() == 0, 40, what="final flush")
    _assert_exactly_once(rig, ids)


def test_unknown_key_is_refused(rig, tmp_path):
    rig.start_hub()
    _, stranger_sec = make_keypair(tmp_path / "k", "CP-01")  # right name, key not listed at the hub
    s = _raw_client(rig, stranger_sec)
    mid, frames = _alert_frames("CP-01")
    s.send_multipart(frames)
    assert _recv_ack(s, 2000) is None
    s.close(0)
    assert mid not in rig.hub_alert_ids()
    assert "ZAP: refused unknown CURVE key" in (rig.root / "hub.log").read_text()


def test_known_key_claiming_another_checkpoint_is_refused(rig):
    rig.start_hub()
    s = _raw_client(rig, rig.cp_keys["CP-02"][1])
    mid, frames = _alert_frames("CP-01")  # CP-02's key, CP-01's id
    s.send_multipart(frames)
    ack = _recv_ack(s)
    assert ack is not None and ack["ids"] == []
    assert ack["refused"][0]["id"] == mid and "does not match" in ack["refused"][0]["reason"]
    mid2, frames2 = _alert_frames("CP-02")  # the same connection speaking for itself is fine
    s.send_multipart(frames2)
    assert _recv_ack(s)["ids"] == [mid2]
    s.close(0)
    assert rig.hub_alert_ids() == [mid2]


def test_garbage_and_oversize_frames_are_refused_and_the_link_stays_up(rig):
    rig.start_hub()
    rig.start_sender()
    ids = rig.add_alerts(20)
    s = _raw_client(rig, rig.cp_keys["CP-02"][1])
    garbage = [
        [b"hello"], [b"ZST/1"], [b"ZST/9", b"alert", b"\x80"], [wire.MAGIC, b"nonsense", b"\x80"],
        [wire.MAGIC, b"alert", b"\xc1\xc1\xc1"], [wire.MAGIC, b"alert", wire.packb({"id": "x"})],
        [wire.MAGIC, b"heartbeat", wire.packb({"checkpoint": "CP-02", "t": float("nan"), "backlog": 0})],
        [os.urandom(1000) for _ in range(5)],
    ]
    for g in garbage:
        s.send_multipart(g)
    mid, frames = _alert_frames("CP-02")
    s.send_multipart(frames)
    assert _recv_ack(s)["ids"] == [mid]  # same connection, still served
    # a bad evidence hash is refused by id so the sender knows
    mid_bad, frames_bad = _alert_frames("CP-02")
    frames_bad[-1] = b"x" * 100
    s.send_multipart(frames_bad)
    ack = _recv_ack(s)
    assert ack["refused"][0]["id"] == mid_bad and "sha256" in ack["refused"][0]["reason"]
    # a frame over ZMQ_MAXMSGSIZE: libzmq drops that connection; the DEALER reconnects by itself
    mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    s.send_multipart([wire.MAGIC, b"alert", b"\0" * (300 << 10)])
    assert mon.poll(5000), "the hub should drop a connection that sends a frame over ZMQ_MAXMSGSIZE"
    s.disable_monitor()
    mon.close(0)
    mid3, frames3 = _alert_frames("CP-02")
    ack = None
    for _ in range(10):  # as the real sender does: resend until acked (the first may die with the old pipe)
        s.send_multipart(frames3)
        ack = _recv_ack(s, 1000)
        if ack:
            break
    assert ack is not None and ack["ids"] == [mid3]
    s.close(0)
    ids += rig.add_alerts(20)  # the real sender was never disturbed
    wait_for(lambda: rig.backlog() == 0, 20, what="sender delivery")
    got = set(rig.hub_alert_ids())
    assert set(ids) | {mid, mid3} == got and mid_bad not in got
    assert "refused message" in (rig.root / "hub.log").read_text()


def test_downlink_reaches_an_offline_checkpoint_on_reconnect(rig, tmp_path):
    from tests.conftest import run_zastava

    rig.start_hub()
    doc = {"name": "march", "bands": [{"start_hz": 433.05e6, "stop_hz": 434.79e6, "label": "ISM", "licensed": True}]}
    f = tmp_path / "plan.json"
    for version_tag in ("old", "new"):
        doc["name"] = version_tag
        f.write_text(json.dumps(doc))
        r = run_zastava("central", "send", "--config", str(rig.config), "--kind", "frequency_plan", "--file", str(f),
                        "--to", "CP-01")
        assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bands": [{"start_hz": 5, "stop_hz": 1}]}))
    r = run_zastava("central", "send", "--config", str(rig.config), "--kind", "frequency_plan", "--file", str(bad),
                    "--to", "CP-01")
    assert r.returncode == 2 and "stop_hz" in r.stderr
    dl = tmp_path / "applied"
    rig.start_sender(downlink_dir=dl)  # CP-01 was offline when both versions were queued
    wait_for(lambda: (dl / "frequency_plan.json").exists(), 20, what="downlink applied")
    assert json.loads((dl / "frequency_plan.json").read_text())["name"] == "new"  # only the latest
    wait_for(lambda: rig.hub_query("SELECT ok FROM downlink_targets WHERE checkpoint='CP-01' AND acked IS NOT NULL"),
             10, what="ack stored at central")
    rows = rig.hub_query("SELECT d.doc, t.ok FROM downlink_targets t JOIN downlink_docs d USING (version)"
                         " WHERE t.acked IS NOT NULL")
    assert len(rows) == 1 and json.loads(rows[0][0])["name"] == "new" and rows[0][1] == 1


def test_revoking_a_key_takes_effect_without_restarting_the_hub(rig):
    rig.start_hub()
    rig.start_sender()
    rig.add_alerts(5)
    wait_for(lambda: rig.backlog() == 0, 20, what="delivery before revocation")
    hub_pid = rig.hub.pid
    (rig.cps / "CP-01.key").unlink()
    rig.hub.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    late = rig.add_alerts(5)
    time.sleep(2.0)
    assert rig.backlog() == 5 and not set(late) & set(rig.hub_alert_ids())
    assert "revoked" in (rig.root / "hub.log").read_text()
    # restore the key (polling picks it up, no signal) and the backlog flows
    os.link(rig.cp_keys["CP-01"][0], rig.cps / "CP-01.key")
    wait_for(lambda: rig.backlog() == 0, 20, what="delivery after the key came back")
    assert rig.hub.pid == hub_pid and rig.hub.poll() is None
