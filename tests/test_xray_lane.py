"""The X-ray lane's own rules. An image handed over again after a crash (taken, committed, not yet
recorded by its spool) must get the same alert UUIDs, so the store drops the repeat; a different
image never shares them. The evidence JPEG's caption can be read on any bag."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from drivers.spool import SpoolSource
from edge_agent.xray_lane import finding_uuid, frame_key, render_evidence
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


def test_the_evidence_caption_is_readable_on_the_open_beam():
    """Around a bag the pseudo-colour image is white (open beam): the caption must not vanish there."""
    white = np.full((448, 640, 3), 255, np.uint8)
    a = render_evidence(white, [], "lane1", "BAG-1", 1_795_747_539.0)
    b = render_evidence(white, [], "lane1", "BAG-1", 1_795_747_545.0)
    assert a != b, "the time stamp shows in the image"
    band = cv2.cvtColor(cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)[-22:, :200]
    assert (band < 60).mean() > 0.3 and (band > 200).mean() > 0.05, "light text on a dark band"


def test_a_dicos_bag_gets_a_tdr_referencing_its_image_and_others_get_none(tmp_path):
    """The report pairs with its image on a DICOS console: same study, the high-energy instance
    referenced, the bag as the object of inspection; CLEAR without findings. A frame whose UIDs are
    not DICOM UIDs gets no report (the lane counts it and alerts as usual), a PNG bag none at all."""
    import io

    import pydicom

    from detectors.xray.detector import XrayFinding
    from edge_agent.xray_lane import tdr_for

    (tmp_path / "d").mkdir()
    (tmp_path / "p").mkdir()
    dicos_pair(tmp_path / "d", "D7", seed=3)
    frame = take_one_and_crash(tmp_path / "d")
    clear = pydicom.dcmread(io.BytesIO(tdr_for(frame, "D7", [], 12.5, "CP-1", "lane1")))
    assert clear.AlarmDecision == "CLEAR" and clear.NumberOfTotalObjects == 0 and clear.PatientID == "D7"
    assert clear.StudyInstanceUID == frame.meta["study_uid"] and clear.StationName == "CP-1/lane1"
    assert clear.ReferencedStudySequence[0].ReferencedSOPInstanceUID == frame.meta["instances"][0]
    assert clear.TotalProcessingTime == 12.5
    alarm = pydicom.dcmread(io.BytesIO(tdr_for(frame, "D7", [XrayFinding("weapon", 0.8, (3, 4, 20, 30))], 1.0,
                                               "CP-1", "lane1")))
    assert alarm.AlarmDecision == "ALARM" and list(alarm.ThreatSequence[0].PTORepresentationSequence[0]
                                                   .BoundingPolygon)[:2] == [3.0, 4.0]
    frame.meta["study_uid"] = "not a uid"
    with pytest.raises(ValueError, match="not valid DICOM UIDs"):
        tdr_for(frame, "D7", [], 1.0, "CP-1", "lane1")
    write_atomic(tmp_path / "p" / "B1_high.png", png(bag_image(48, 48, seed=1)))
    write_atomic(tmp_path / "p" / "B1_low.png", png(bag_image(48, 48, seed=9)))
    assert tdr_for(take_one_and_crash(tmp_path / "p"), "B1", [], 1.0, "CP-1", "lane1") is None
