"""The wire codec: every message type round-trips, every bad field is named, fuzzing finds no crash."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync import wire

BLOB = b"\x89PNG" + bytes(range(200))
SHA = hashlib.sha256(BLOB).hexdigest()


def alert_body(**over) -> dict:
    b = {"id": "0b5e6a1c-1d2e-4f00-9a9b-0123456789ab", "checkpoint": "CP-01", "created": 1_700_000_000.5,
         "priority": 3, "data": {"kind": "xray.weapon", "score": 0.97, "location": {"box": [1, 2, 3, 4]}},
         "evidence": [{"name": "frame.jpg", "mime": "image/jpeg", "size": len(BLOB), "sha256": SHA}]}
    b.update(over)
    return b


PLAN = {"bands": [{"start_hz": 1e6, "stop_hz": 2e6}]}

VALID = {
    "hello": ({"checkpoint": "CP-01", "proto": 1, "software": "zastava-edge/0.1", "t": 1.7e9}, []),
    "alert": (alert_body(), [BLOB]),
    "decision": ({"id": "d-1", "checkpoint": "CP-01", "created": 1.7e9, "priority": 2,
                  "data": {"alert_uuid": "a-1", "decision": "confirmed"}}, []),
    "health": ({"checkpoint": "CP-01", "t": 1.7e9, "backlog": 3, "data": {"lane1": {"state": "ok"}}}, []),
    "heartbeat": ({"checkpoint": "CP-01", "t": 1.7e9, "backlog": 0, "offset": -0.25, "rtt": 0.001}, []),
    "pong": ({"echo_t": 1.7e9, "hub_t": 1.7e9 + 0.1}, []),
    "ack": ({"ids": ["a-1", "a-2"], "refused": [{"id": "a-3", "reason": "sha256 mismatch"}]}, []),
    "downlink": ({"kind": "frequency_plan", "version": 4, "doc": PLAN, "sha256": wire.doc_digest(PLAN)}, []),
    "downlink_ack": ({"checkpoint": "CP-01", "kind": "watchlist", "version": 2, "ok": False, "error": "bad entry"}, []),
}


@pytest.mark.parametrize("msg_type", wire.TYPES)
def test_every_type_round_trips(msg_type):
    body, blobs = VALID[msg_type]
    m = wire.decode(wire.encode(msg_type, body, blobs))
    assert (m.type, m.body, m.blobs) == (msg_type, body, blobs)


@pytest.mark.parametrize(("frames", "needle"), [
    ([b"ZST/1", b"alert"], "at least 3 frames"),
    ([b"ZST/2", b"alert", b"\x80"], "unsupported protocol version"),
    ([b"HTTP", b"alert", b"\x80"], "bad magic"),
    ([wire.MAGIC, b"launch", b"\x80"], "unknown message type"),
    ([wire.MAGIC, b"ack", b"\xc1"], "not msgpack"),
    ([wire.MAGIC, b"ack", b"\x93\x01\x02\x03"], "expected a map"),
    ([wire.MAGIC, b"ack", msgpack.packb({1: 2})], "not msgpack"),  # non-string map key
    ([wire.MAGIC, b"ack", b"\x91" * 200_000 + b"\xc0"], "not msgpack"),  # nesting bomb
    ([wire.MAGIC, b"ack", b"\xdd\xff\xff\xff\xff"], "not msgpack"),  # claims 4G items, has none
    ([wire.MAGIC, b"pong", msgpack.packb({"echo_t": msgpack.ExtType(5, b"x"), "hub_t": 1.0})], "expected a number"),
    ([wire.MAGIC, b"ack", b"\x00" * (wire.MAX_BODY + 1)], "larger than"),
])
def test_broken_framing_is_named(frames, needle):
    with pytest.raises(wire.WireError, match=needle):
        wire.decode(frames)


@pytest.mark.parametrize(("msg_type", "change", "blobs", "needle"), [
    ("alert", {"id": "../etc/passwd"}, [BLOB], "id: bad format"),
    ("alert", {"checkpoint": 7}, [BLOB], "checkpoint: expected a string"),
    ("alert", {"created": float("inf")}, [BLOB], "created: not finite"),
    ("alert", {"priority": True}, [BLOB], "priority: expected an integer"),
    ("alert", {"extra": 1}, [BLOB], "extra: unknown field"),
    ("alert", {}, [], "1 evidence entries but 0"),
    ("alert", {}, [BLOB[:-1]], "size"),
    ("alert", {}, [bytes(len(BLOB))], "sha256 mismatch"),
    ("alert", {"evidence": [{"name": "../x", "mime": "a", "size": 0, "sha256": SHA}]}, [b""], "name: bad format"),
    ("alert", {"data": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {}}}}}}}}}}}, [BLOB], "nested too deep"),
    ("alert", {"data": {"x": float("nan")}}, [BLOB], "not finite"),
    ("heartbeat", {"backlog": -1}, [], "backlog: out of range"),
    ("hello", {"proto": 0}, [], "proto: out of range"),
    ("downlink", {"sha256": "0" * 64}, [], "does not match the document"),
    ("downlink", {"kind": "firmware"}, [], "unknown downlink kind"),
    ("ack", {"ids": "a-1"}, [], "ids: expected a list"),
    ("pong", {"echo_t": None}, [], "echo_t: expected a number"),
    ("health", {}, [b"x"], "carries no evidence frames"),
])
def test_bad_fields_are_named(msg_type, change, blobs, needle):
    body = dict(VALID[msg_type][0])
    body.update(change)
    frames = [wire.MAGIC, msg_type.encode(), msgpack.packb(body, use_bin_type=True), *blobs]
    with pytest.raises(wire.WireError, match=needle):
        wire.decode(frames)
    with pytest.raises(wire.WireError):  # and the sender refuses to send it in the first place
        wire.encode(msg_type, body, blobs)


def test_missing_required_field_and_missing_evidence_flag():
    body = dict(VALID["hello"][0])
    del body["software"]
    with pytest.raises(wire.WireError, match="software: missing"):
        wire.encode("hello", body)
    ev = [{"name": "iq.sigmf-data", "mime": "application/octet-stream", "size": 9, "sha256": SHA, "missing": True}]
    assert wire.decode(wire.encode("alert", alert_body(evidence=ev), [b""])).blobs == [b""]
    with pytest.raises(wire.WireError, match="marked missing but has data"):
        wire.encode("alert", alert_body(evidence=ev), [b"x"])


def test_downlink_documents_are_checked_per_kind():
    wire.check_doc("model_announcement", {"name": "xray-v3.onnx", "version": "3.0.1", "sha256": SHA})
    with pytest.raises(wire.WireError, match="sha256"):
        wire.check_doc("model_announcement", {"name": "m", "version": "1", "sha256": "nothex"})
    with pytest.raises(wire.WireError, match="stop_hz must be above"):
        wire.check_doc("frequency_plan", {"bands": [{"start_hz": 5.0, "stop_hz": 5.0}]})
    wire.check_doc("watchlist", {"entries": [{"plate": "AB123"}], "name": "national"})
    assert wire.doc_digest({"a": 1, "b": 2}) == wire.doc_digest({"b": 2, "a": 1})


plain = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
                     | st.binary(max_size=20), lambda c: st.lists(c, max_size=4)
                     | st.dictionaries(st.text(max_size=8) | st.integers(), c, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_fuzz_random_frames_only_ever_raise_wire_error(frames):
    try:
        wire.decode(frames)
    except wire.WireError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(wire.TYPES), plain, st.lists(st.binary(max_size=32), max_size=3))
def test_fuzz_well_framed_random_bodies_only_ever_raise_wire_error(msg_type, body, blobs):
    try:
        raw = msgpack.packb(body, use_bin_type=True)
    except (ValueError, OverflowError, TypeError):
        return
    try:
        m = wire.decode([wire.MAGIC, msg_type.encode(), raw, *blobs])
    except wire.WireError:
        return
    assert m.type == msg_type and isinstance(m.body, dict)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(wire.TYPES), st.data())
def test_fuzz_mutated_valid_messages(msg_type, data):
    """Flip bytes in a valid message: either still valid (and re-encodable) or a WireError."""
    body, blobs = VALID[msg_type]
    frames = wire.encode(msg_type, body, blobs)
    i = data.draw(st.integers(0, len(frames) - 1))
    f = bytearray(frames[i])
    if f:
        j = data.draw(st.integers(0, len(f) - 1))
        f[j] ^= data.draw(st.integers(1, 255))
    frames[i] = bytes(f)
    try:
        m = wire.decode(frames)
    except wire.WireError:
        return
    wire.encode(m.type, m.body, m.blobs)
