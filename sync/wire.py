"""The edge <-> central wire protocol, version 1 (docs/protocol.md is the normative text).

A message is a ZeroMQ multipart message:

    frame 0  b"ZST/1"           protocol magic and version
    frame 1  message type       ASCII, one of TYPES
    frame 2  body               msgpack map, fields per type (SCHEMAS)
    frame 3+ evidence blobs     only for "alert": one frame per entry of body["evidence"], in order

Every field of every body is checked here, on both ends, before anything else looks at it: a
peer that sends garbage gets a `WireError` naming the field, which the caller logs, counts and
drops, while the connection carries on. Validation is hand-written (not pydantic) because it is
a dozen flat checks on the hot path of 3,000+ messages a second and must accept exactly what the
document says, nothing looser.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

MAGIC = b"ZST/1"
PROTOCOL_VERSION = 1

# Limits a receiver enforces; the socket's ZMQ_MAXMSGSIZE bounds each frame before we see it.
MAX_BODY = 1 << 20  # 1 MiB of msgpack per body
MAX_EVIDENCE = 16  # files per alert
MAX_ACK_IDS = 10_000
MAX_DEPTH = 8  # nesting of maps/lists inside free-form data

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # a file name, never a path
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")

DOWNLINK_KINDS = ("watchlist", "frequency_plan", "model_announcement")


class WireError(ValueError):
    """A message that does not follow the protocol; `reason` is short and safe to log."""


@dataclass
class Message:
    type: str
    body: dict
    blobs: list[bytes] = field(default_factory=list)


# --- field checks ------------------------------------------------------------------------------
Check = Callable[[Any, str], None]


def _fail(path: str, what: str) -> None:
    raise WireError(f"{path}: {what}")


def _str(maxlen: int = 256, pattern: re.Pattern | None = None) -> Check:
    def check(v: Any, path: str) -> None:
        if not isinstance(v, str):
            _fail(path, "expected a string")
        if len(v) > maxlen:
            _fail(path, f"longer than {maxlen}")
        if pattern is not None and not pattern.match(v):
            _fail(path, "bad format")

    return check


def _int(lo: int = 0, hi: int = 2**53) -> Check:
    def check(v: Any, path: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(path, "expected an integer")
        if not lo <= v <= hi:
            _fail(path, f"out of range [{lo}, {hi}]")

    return check


def _num(lo: float = -1e18, hi: float = 1e18) -> Check:
    def check(v: Any, path: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            _fail(path, "expected a number")
        if not math.isfinite(v) or not lo <= v <= hi:
            _fail(path, "not finite or out of range")

    return check


def _bool(v: Any, path: str) -> None:
    if not isinstance(v, bool):
        _fail(path, "expected a boolean")


def _opt(check: Check) -> Check:
    def c(v: Any, path: str) -> None:
        if v is not None:
            check(v, path)

    return c


_SCALARS = (str, int, bool, bytes, type(None))


def _plain(v: Any, path: str) -> None:
    """Free-form data: maps with string keys, lists, scalars; bounded nesting.

    An explicit stack instead of recursion: this runs on every alert's data at the hub, and
    Python calls per value were a measurable share of the hub's CPU.
    """
    stack = [(v, path, 0)]
    while stack:
        x, p, depth = stack.pop()
        if isinstance(x, dict):
            if depth >= MAX_DEPTH:
                _fail(p, "nested too deep")
            for k, y in x.items():
                if not isinstance(k, str):
                    _fail(p, "map keys must be strings")
                if not isinstance(y, _SCALARS):
                    stack.append((y, f"{p}.{k}", depth + 1))
        elif isinstance(x, list):
            if depth >= MAX_DEPTH:
                _fail(p, "nested too deep")
            for i, y in enumerate(x):
                if not isinstance(y, _SCALARS):
                    stack.append((y, f"{p}[{i}]", depth + 1))
        elif isinstance(x, float):
            if not math.isfinite(x):
                _fail(p, "not finite")
        elif not isinstance(x, _SCALARS):
            _fail(p, f"unsupported type {type(x).__name__}")


def _map(v: Any, path: str) -> None:
    if not isinstance(v, dict):
        _fail(path, "expected a map")
    _plain(v, path)


def _list_of(check: Check, maxlen: int) -> Check:
    def c(v: Any, path: str) -> None:
        if not isinstance(v, list):
            _fail(path, "expected a list")
        if len(v) > maxlen:
            _fail(path, f"more than {maxlen} items")
        for i, x in enumerate(v):
            check(x, f"{path}[{i}]")

    return c


def _fields(spec: dict[str, tuple[Check, bool]]) -> Check:
    """A map with exactly these keys (required ones must be present; unknown keys refused)."""

    def c(v: Any, path: str) -> None:
        if not isinstance(v, dict):
            _fail(path, "expected a map")
        for k in v:
            if k not in spec:
                _fail(f"{path}.{k}" if path else str(k), "unknown field")
        for k, (check, required) in spec.items():
            if k in v:
                check(v[k], f"{path}.{k}" if path else k)
            elif required:
                _fail(f"{path}.{k}" if path else k, "missing")

    return c


REQ, OPT = True, False  # required / optional
_id = _str(128, ID_RE)
_t = _num(0, 1e11)  # Unix seconds
_evidence_meta = _fields({
    "name": (_str(128, NAME_RE), REQ),
    "mime": (_str(128), REQ),
    "size": (_int(0, 1 << 40), REQ),
    "sha256": (_str(64, HEX64_RE), REQ),
    "missing": (_bool, OPT),  # the edge no longer has the file (evicted): its frame is empty
})

SCHEMAS: dict[str, Check] = {
    "hello": _fields({"checkpoint": (_id, REQ), "proto": (_int(1, 1000), REQ), "software": (_str(64), REQ),
                      "t": (_t, REQ)}),
    "alert": _fields({"id": (_id, REQ), "checkpoint": (_id, REQ), "created": (_t, REQ), "priority": (_int(-100, 100), REQ),
                      "data": (_map, REQ), "evidence": (_list_of(_evidence_meta, MAX_EVIDENCE), REQ)}),
    "decision": _fields({"id": (_id, REQ), "checkpoint": (_id, REQ), "created": (_t, REQ),
                         "priority": (_int(-100, 100), REQ), "data": (_map, REQ)}),
    "health": _fields({"checkpoint": (_id, REQ), "t": (_t, REQ), "backlog": (_int(), REQ), "data": (_map, REQ)}),
    "heartbeat": _fields({"checkpoint": (_id, REQ), "t": (_t, REQ), "backlog": (_int(), REQ),
                          "offset": (_opt(_num(-1e9, 1e9)), OPT), "rtt": (_opt(_num(0, 1e6)), OPT)}),
    "pong": _fields({"echo_t": (_t, REQ), "hub_t": (_t, REQ)}),
    "ack": _fields({"ids": (_list_of(_id, MAX_ACK_IDS), REQ),
                    "refused": (_list_of(_fields({"id": (_id, REQ), "reason": (_str(256), REQ)}), MAX_ACK_IDS), REQ)}),
    "downlink": _fields({"kind": (_str(32), REQ), "version": (_int(1), REQ), "doc": (_map, REQ),
                         "sha256": (_str(64, HEX64_RE), REQ)}),
    "downlink_ack": _fields({"checkpoint": (_id, REQ), "kind": (_str(32), REQ), "version": (_int(1), REQ),
                             "ok": (_bool, REQ), "error": (_opt(_str(512)), OPT)}),
}
TYPES = tuple(SCHEMAS)
_TYPES_B = {t.encode(): t for t in TYPES}

# Downlink documents: the shape the protocol guarantees; the agent checks the meaning when applying.
_band = _fields({"start_hz": (_num(0, 1e12), REQ), "stop_hz": (_num(0, 1e12), REQ), "label": (_str(128), OPT),
                 "licensed": (_bool, OPT)})
DOC_SCHEMAS: dict[str, Check] = {
    "watchlist": _fields({"entries": (_list_of(_map, 100_000), REQ), "name": (_str(128), OPT)}),
    "frequency_plan": _fields({"bands": (_list_of(_band, 10_000), REQ), "name": (_str(128), OPT)}),
    "model_announcement": _fields({"name": (_str(128, NAME_RE), REQ), "version": (_str(64), REQ),
                                   "sha256": (_str(64, HEX64_RE), REQ), "url": (_str(1024), OPT),
                                   "size": (_int(0, 1 << 40), OPT)}),
}


def check_doc(kind: str, doc: Any) -> None:
    if kind not in DOC_SCHEMAS:
        raise WireError(f"kind: unknown downlink kind {kind!r}")
    DOC_SCHEMAS[kind](doc, "doc")
    if kind == "frequency_plan":
        for i, b in enumerate(doc["bands"]):
            if b["stop_hz"] <= b["start_hz"]:
                raise WireError(f"doc.bands[{i}]: stop_hz must be above start_hz")


def doc_digest(doc: dict) -> str:
    """sha256 of the document's canonical msgpack (sorted keys), so both ends agree on identity."""
    return hashlib.sha256(packb(_sorted(doc))).hexdigest()


def _sorted(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


def packb(body: dict) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


# --- encode / decode ---------------------------------------------------------------------------
def encode(msg_type: str, body: dict, blobs: list[bytes] | None = None, check_blobs: bool = True) -> list[bytes]:
    """Frames for one message; validates first so we never send what a peer would refuse.

    check_blobs=False skips re-hashing evidence the caller has just verified itself.
    """
    validate(msg_type, body, blobs or [], check_blobs)
    return [MAGIC, msg_type.encode(), packb(body), *(blobs or [])]


def decode(frames: list[bytes]) -> Message:
    """Parse and validate one received message (without any ROUTER identity frame)."""
    if len(frames) < 3:
        raise WireError(f"expected at least 3 frames, got {len(frames)}")
    magic, t, raw = bytes(frames[0]), bytes(frames[1]), frames[2]
    if magic != MAGIC:
        if magic.startswith(b"ZST/"):
            raise WireError(f"unsupported protocol version {magic[4:20]!r}")
        raise WireError("bad magic frame")
    msg_type = _TYPES_B.get(t)
    if msg_type is None:
        raise WireError(f"unknown message type {t[:32]!r}")
    if len(raw) > MAX_BODY:
        raise WireError(f"body larger than {MAX_BODY} bytes")
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise WireError(f"body is not msgpack: {type(e).__name__}") from None
    blobs = [bytes(f) for f in frames[3:]]
    validate(msg_type, body, blobs)
    return Message(msg_type, body, blobs)


def validate(msg_type: str, body: Any, blobs: list[bytes], check_blobs: bool = True) -> None:
    if msg_type not in SCHEMAS:
        raise WireError(f"unknown message type {msg_type!r}")
    SCHEMAS[msg_type](body, "")
    if msg_type == "alert":
        ev = body["evidence"]
        if len(blobs) != len(ev):
            raise WireError(f"alert has {len(ev)} evidence entries but {len(blobs)} evidence frames")
        names = set()
        for i, (meta, blob) in enumerate(zip(ev, blobs, strict=True)):
            if meta["name"] in names:
                raise WireError(f"evidence[{i}].name: duplicate")
            names.add(meta["name"])
            if meta.get("missing"):
                if blob:
                    raise WireError(f"evidence[{i}]: marked missing but has data")
                continue
            if len(blob) != meta["size"]:
                raise WireError(f"evidence[{i}]: size {len(blob)} != declared {meta['size']}")
            if check_blobs and hashlib.sha256(blob).hexdigest() != meta["sha256"]:
                raise WireError(f"evidence[{i}]: sha256 mismatch")
    elif blobs:
        raise WireError(f"{msg_type} carries no evidence frames")
    if msg_type == "downlink":
        check_doc(body["kind"], body["doc"])
        if doc_digest(body["doc"]) != body["sha256"]:
            raise WireError("sha256: does not match the document")
    elif msg_type == "downlink_ack" and body["kind"] not in DOWNLINK_KINDS:
        raise WireError(f"kind: unknown downlink kind {body['kind']!r}")
