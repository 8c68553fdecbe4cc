"""How far this box's clock can be trusted, stamped on every alert.

A checkpoint box may run for weeks without a time server (a remote crossing, a link that is down)
and boot with a reset real-time clock. An alert's time is evidence, and central command sorts and
filters by it: an alert stamped three years in the past is, on the dashboard, an alert nobody
sees. So each alert carries two things besides its time:

- `clock`: what the kernel says of its own clock, the way `timedatectl` reads it (adjtimex(2):
  "ntp-synced" when a time daemon disciplines it and its maximum error is under 16 s, else
  "unsynced"). Python's standard library has no adjtimex; it is one read-only libc call.
- `clock_offset_s`: central's clock minus ours, as the link last measured it (NTP-style, from the
  heartbeat's pong; sync/sender.py), carried forward over any step of our clock since: the link
  records our wall clock minus the monotonic clock when it measured, and a step of the wall clock
  changes that difference by exactly the step. None when the link has not measured within a day.

Here rather than in edge_agent/ because the link (sync/sender.py) records the measurements.
Central places the alert at `t + clock_offset_s` where the offset is a second or more
(central/store.py, `central_time`), and keeps the edge's own `t` beside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import time

TIME_ERROR = 5  # adjtimex's return when the clock is not synchronised
STA_UNSYNC = 0x0040
MAX_ERROR_US = 16_000_000  # the kernel's ceiling on maxerror: it grows to this once nothing disciplines it
MAX_OFFSET_AGE_S = 86400.0  # past this the link's measurement is too old to carry (drift ~1 s a day at 10 ppm)

_libc = None


def kernel_synced() -> tuple[bool, float | None]:
    """(synchronised, maximum error in seconds) of the system clock; (False, None) where it cannot
    be read (not Linux)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, with room to spare; modes = 0: read only
        state = _libc.adjtimex(buf)
    except (OSError, AttributeError):
        return False, None
    if state < 0:
        return False, None
    # LP64 layout (x86_64, aarch64): int modes (+4 padding), long offset, freq, maxerror, esterror, int status
    _modes, _offset, _freq, maxerror, _esterror, status = struct.unpack_from("i4xqqqqi", buf.raw, 0)
    synced = state != TIME_ERROR and not status & STA_UNSYNC and maxerror < MAX_ERROR_US
    return synced, maxerror / 1e6


_boot_id: str | None = None


def boot_id() -> str | None:
    """This boot's id: monotonic times compare only within one boot."""
    global _boot_id
    if _boot_id is None:
        try:
            _boot_id = open("/proc/sys/kernel/random/boot_id").read().strip()
        except OSError:
            return None
    return _boot_id


def wall_minus_mono() -> float:
    """Our wall clock minus the monotonic one now: a step of the wall clock changes it by the step."""
    return time.time() - time.monotonic()


def reference() -> dict:
    """Where our wall clock stands against the monotonic one now. Two references of one boot tell
    how far the wall clock was stepped between them: the difference of their `wall_minus_mono_s`."""
    return reference_from(wall_minus_mono())


def reference_from(wall_minus_mono: float) -> dict:
    """The reference of a moment of this boot whose wall-minus-monotonic difference was kept (a
    frame's or an IQ block's arrival, `drivers.base`); its age is taken as nil, which the day's
    limit in `offset_at` allows."""
    return {"boot_id": boot_id(), "mono_s": round(time.monotonic(), 6), "wall_minus_mono_s": round(wall_minus_mono, 6)}


def link_measure(offset_s: float, rtt_s: float) -> dict:
    """What the link records when it measures central's clock against ours (the sender calls this
    the moment a pong arrives)."""
    return {**reference(), "offset_s": offset_s, "rtt_s": rtt_s}


def offset_at(measure: dict | None, ref: dict | None) -> float | None:
    """Central minus our clock at the moment `ref` was taken, from a measurement of the same boot
    taken before or after it (within a day: past that the two clocks' drift counts): the measured
    offset less the step our wall clock took from `ref` to the measurement."""
    if not measure or not ref or ref.get("boot_id") is None or ref.get("boot_id") != measure.get("boot_id"):
        return None
    if abs(ref["mono_s"] - measure["mono_s"]) > MAX_OFFSET_AGE_S:
        return None
    return measure["offset_s"] - (ref["wall_minus_mono_s"] - measure["wall_minus_mono_s"])


def offset_now(measure: dict | None) -> float | None:
    return offset_at(measure, reference())


def offset_fields(measure: dict | None, ref: dict) -> dict:
    """An alert's `clock_offset_s`, and `clock_offset_err_s`: half the round trip of the measurement,
    the most an NTP-style estimate can be off by on a link slower one way than the other (central
    corrects only past it)."""
    off = offset_at(measure, ref)
    if off is None:
        return {"clock_offset_s": None, "clock_offset_err_s": None}
    return {"clock_offset_s": round(off, 3), "clock_offset_err_s": round(measure["rtt_s"] / 2, 3)}


def stamp(measure: dict | None, ref: dict | None = None) -> dict:
    """The clock fields of an alert whose time was read at `ref` (default: now): `clock`, the offset
    where the link has measured one (`offset_fields`), and `clock_ref`, from which the link can work
    the offset out later where it has not measured yet (`fill_offset`)."""
    synced, _ = kernel_synced()
    ref = ref or reference()
    return {"clock": "ntp-synced" if synced else "unsynced", **offset_fields(measure, ref), "clock_ref": ref}


def fill_offset(body: dict, measure: dict | None) -> dict:
    """An alert made before the link measured central's clock gets its offset when it is sent, from
    its `clock_ref` and the link's measurement, if both are of this boot; else it goes as it is."""
    if body.get("clock_offset_s") is not None or not isinstance(body.get("clock_ref"), dict):
        return body
    try:
        fields = offset_fields(measure, body["clock_ref"])
    except (KeyError, TypeError):  # a reference of another software version: leave it
        return body
    return body if fields["clock_offset_s"] is None else {**body, **fields}
