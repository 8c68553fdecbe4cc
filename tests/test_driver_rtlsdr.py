"""rtlsdr:// without a dongle: URL forms, and the clear message when librtlsdr or the dongle is missing."""

from __future__ import annotations

import threading

import pytest

from drivers.registry import open_iq_source
from drivers.rtlsdr_usb import RtlSdrSource, check_library, parse_url


def test_url_forms():
    assert parse_url("rtlsdr://0") == (0, None, {})
    assert parse_url("rtlsdr://3?gain=20") == (3, None, {"gain": "20"})
    assert parse_url("rtlsdr://serial=00000001") == (None, "00000001", {})
    assert parse_url("rtlsdr://?serial=ABC&ppm=5") == (None, "ABC", {"ppm": "5"})
    with pytest.raises(ValueError, match="unknown rtlsdr"):
        parse_url("rtlsdr://0?gian=1")
    with pytest.raises(ValueError, match="index or serial"):
        parse_url("rtlsdr://first")
    src = open_iq_source("rtlsdr://0?gain=30&ppm=-2", center_hz=433.92e6)
    assert isinstance(src, RtlSdrSource) and src.gain_db == 30.0 and src.ppm == -2


def test_missing_library_or_dongle_is_a_clear_counted_message():
    src = open_iq_source("rtlsdr://serial=00000001", center_hz=433.92e6, backoff_base_s=0.01, backoff_cap_s=0.05)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert list(src.blocks(stop)) == []  # no exception escapes, nothing invented
    h = src.health()
    assert h.errors >= 2 and not h.connected
    if check_library() is not None:
        # this machine has no librtlsdr: the operator is told both ways to get it
        assert "librtlsdr0" in h.last_error and "pyrtlsdrlib" in h.last_error
    else:
        assert "no RTL-SDR dongle" in h.last_error and "00000001" in h.last_error
