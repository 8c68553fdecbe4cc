"""An image handed over again after a crash (taken, committed, not yet recorded by its spool) must
get the same alert UUIDs, so the store drops the repeat; a different image never shares them."""

from __future__ import annotations

import threading
import time

import numpy as np

from drivers.spool import SpoolSource
from edge_agent.xray_lane import finding_uuid, frame_key
from tests.test_dicos import bag_image
from tests.test_driver_xray_spool import FAST, dicos_pair, png, write_atomic


def take_one_and_crash(folder) -> object:
    """The first frame, then the generator dies at its yield: the ledger never hears of it."""
    src = SpoolSource(f"spool://{folder}", **FAST)
    gen = src.frames(threading.Event())
    try:
        return next(gen)
    finally:
        gen.close()
        src.close()


def test_a_dicos_pair_read_twice_has_one_identity(tmp_path):
    dicos_pair(tmp_path, "D1", seed=1)
    first = take_one_and_crash(tmp_path)
    time.sleep(0.01)
    again = take_one_and_crash(tmp_path)
    assert first.bag_id == again.bag_id == "D1" and first.t != again.t
    assert frame_key(first) == frame_key(again)
    box = (10, 20, 30, 40)
    assert finding_uuid("CP", "lane1", frame_key(first), "narcotics", box) == \
        finding_uuid("CP", "lane1", frame_key(again), "narcotics", box)


def test_png_pairs_are_known_by_their_pixels_not_their_names(tmp_path):
    def write(seed):
        write_atomic(tmp_path / "B1_high.png", png(bag_image(48, 48, seed=seed)))
        write_atomic(tmp_path / "B1_low.png", png(bag_image(48, 48, seed=seed + 50)))

    write(1)
    first = take_one_and_crash(tmp_path)
    again = take_one_and_crash(tmp_path)
    assert frame_key(first) == frame_key(again)
    # a scanner whose counter restarted writes another bag under the same names: not a repeat
    write(2)
    other = take_one_and_crash(tmp_path)
    assert np.any(other.high != first.high) and frame_key(other) != frame_key(first)
