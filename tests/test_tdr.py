"""DICOS Threat Detection Reports: written with pydicom, read back with pydicom and with pyDICOS
(the Stratovan toolkit, an independent DICOS implementation)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from detectors.xray.detector import XrayFinding, load_detector
from detectors.xray.tdr import TDR_SOP_CLASS, ImageRef, Station, build_tdr, write_tdr

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "dicos"

FINDINGS = [
    XrayFinding("narcotics", 0.91, (100, 50, 200, 150), "organic", 6.8, True, "under dense clutter"),
    XrayFinding("weapon", 0.77, (300, 40, 390, 100), "metal", 26.0, False, None),
    XrayFinding("concealment", 0.6, (20, 300, 600, 330), "organic", 7.0, True, "structural"),
]


@pytest.fixture
def ref():
    return ImageRef(generate_uid(), generate_uid(), "BAG-0001")


def test_tdr_read_back_with_pydicom(tmp_path, ref):
    when = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    p = write_tdr(FINDINGS, ref, tmp_path / "bag.dcs", when=when, station=Station("CP7/lane1"))
    ds = pydicom.dcmread(p)
    assert ds.SOPClassUID == TDR_SOP_CLASS == ds.file_meta.MediaStorageSOPClassUID
    assert ds.TDRType == "MACHINE" and ds.AlarmDecision == "ALARM" and ds.Modality == "TDR"
    assert ds.StudyInstanceUID == ref.study_instance_uid and ds.PatientID == "BAG-0001"
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ref.sop_instance_uid
    assert ds.NumberOfTotalObjects == ds.NumberOfAlarmObjects == 3
    threats = ds.ThreatSequence
    cats = [t.ATDAssessmentSequence[0].ThreatCategory for t in threats]
    assert cats == ["CONTRABAND", "PI", "ANOMALY"]
    flags = [t.ATDAssessmentSequence[0].ATDAssessmentFlag for t in threats]
    assert flags == ["THREAT", "HIGH_THREAT", "THREAT"]
    rep = threats[0].PTORepresentationSequence[0]
    assert rep.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ref.sop_instance_uid
    assert list(rep.BoundingPolygon) == [100, 50, 0, 200, 50, 0, 200, 150, 0, 100, 150, 0]
    roi = rep.ThreatROIVoxelSequence[0]
    assert list(roi.ThreatROIBase) == [100, 50, 0] and list(roi.ThreatROIExtents) == [100, 100, 1]
    assert threats[0].ATDAssessmentSequence[0].ATDAssessmentProbability == pytest.approx(0.91)
    assert "concealed: under dense clutter" in threats[0].ATDAssessmentSequence[0].ThreatCategoryDescription


def test_no_findings_is_clear(tmp_path, ref):
    ds = pydicom.dcmread(write_tdr([], ref, tmp_path / "clean.dcs"))
    assert ds.AlarmDecision == "CLEAR" and ds.NumberOfTotalObjects == 0 and "ThreatSequence" not in ds


def test_below_alarm_threshold_reported_without_alarm(ref):
    ds = build_tdr([FINDINGS[2]], ref, alarm_threshold=0.7)
    assert ds.AlarmDecision == "CLEAR" and ds.NumberOfAlarmObjects == 0
    assert ds.ThreatSequence[0].ATDAssessmentSequence[0].ATDAssessmentFlag == "NO_THREAT"


def _pydicos():
    try:
        import pydicos
    except Exception as e:  # a wheel for this platform only (Linux x86-64); say why we skip
        pytest.skip(f"pydicos cannot be imported here: {e}")
    return pydicos


def test_tdr_read_back_with_pydicos(tmp_path, ref):
    pydicos = _pydicos()
    p = write_tdr(FINDINGS, ref, tmp_path / "bag.dcs")
    d = pydicos.TDRLoader(str(p)).get_data()
    assert str(d["AlarmDecision"]).endswith("enumAlarm")
    assert str(d["TDRType"]).endswith("enumMachine")
    assert d["OOIID"] == "BAG-0001"
    ptos = d["PTOs"]
    assert [p["ID"] for p in ptos] == [1, 2, 3]
    first = ptos[0]
    assert (first["Base"]["x"], first["Base"]["y"]) == (100, 50)
    assert (first["Extent"]["x"], first["Extent"]["y"]) == (100, 100)
    assert [(v["x"], v["y"]) for v in first["Polygon"]] == [(100, 50), (200, 50), (200, 150), (100, 150)]
    assert first["Bitmap"].shape == (1, 100, 100) and first["Bitmap"].all()
    assert str(first["Assessment"]["category"]).endswith("enumContraband")
    assert str(ptos[1]["Assessment"]["category"]).endswith("enumProhibitedItem")
    assert str(ptos[1]["Assessment"]["flag"]).endswith("enumHighThreat")
    assert str(ptos[2]["Assessment"]["category"]).endswith("enumAnomaly")
    assert first["Assessment"]["probability"] == pytest.approx(0.91, abs=1e-6)


def test_clear_tdr_read_with_pydicos(tmp_path, ref):
    pydicos = _pydicos()
    d = pydicos.TDRLoader(str(write_tdr([], ref, tmp_path / "c.dcs"))).get_data()
    assert str(d["AlarmDecision"]).endswith("enumClear") and d["PTOs"] == []


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/dicos is not present")
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the fixtures' UIDs have leading zeros
def test_reference_from_a_dicos_dx_image_and_toolkit_tdr_layout(tmp_path):
    """Reference a DX image written by the toolkit, and check ours has every top-level attribute
    the toolkit's own TDR has."""
    dx = pydicom.dcmread(FIXTURES / "python_DXFiles_SimpleProcessingDX.dcs")
    theirs = pydicom.dcmread(FIXTURES / "python_TDRFiles_SimpleBaggageTDR.dcs", stop_before_pixels=True)
    ref = ImageRef.from_dataset(dx)
    high = dx.pixel_array.astype(np.uint16)
    det = load_detector("physics", thresholds={"narcotics": 0.0, "weapon": 0.0, "currency": 0.0,
                                               "concealment": 0.0})
    found = det.detect(high, None)
    ours = pydicom.dcmread(write_tdr(found, ref, tmp_path / "dx.dcs"))
    assert ours.StudyInstanceUID == dx.StudyInstanceUID
    missing = {e.keyword or str(e.tag) for e in theirs if e.tag not in ours and e.tag.group != 0x7FE0}
    assert missing <= {"ReferencedStudySequence", "OtherPatientIDsSequence", "PatientSex",
                       "InstitutionalDepartmentName", "AlgorithmRoutingCodeSequence",
                       "(4010,1064)"} | ({"ThreatSequence"} if not found else set())


def test_a_users_classes_get_the_categories_the_config_gives_them(tmp_path, ref):
    """A user's own model says "knife" and "pills": the config maps them to DICOS categories, which
    the independent toolkit reads back as such; an unmapped class stays an ANOMALY, and a word
    that is not a DICOS category is refused rather than written as an unknown one."""
    from detectors.xray.tdr import THREAT_CATEGORIES
    from edge_agent.config import XrayDetectorConfig

    pydicos = _pydicos()
    found = [XrayFinding("knife", 0.9, (10, 10, 60, 40)), XrayFinding("pills", 0.8, (100, 100, 140, 130)),
             XrayFinding("thing", 0.7, (200, 200, 220, 220)), XrayFinding("narcotics", 0.6, (300, 10, 350, 60))]
    cats = {"knife": "PI", "pills": "PHARMACEUTICAL"}
    d = pydicos.TDRLoader(str(write_tdr(found, ref, tmp_path / "u.dcs", categories=cats))).get_data()
    got = [str(p["Assessment"]["category"]).rsplit(".", 1)[-1] for p in d["PTOs"]]
    assert got == ["enumProhibitedItem", "enumPharmaceutical", "enumAnomaly", "enumContraband"]
    with pytest.raises(ValueError, match="threat categories must be among"):
        build_tdr(found, ref, categories={"knife": "WEAPONS"})
    # the config accepts exactly the terms the reports may carry
    allowed = XrayDetectorConfig.model_fields["threat_categories"].annotation.__args__[1].__args__
    assert set(allowed) == set(THREAT_CATEGORIES)
