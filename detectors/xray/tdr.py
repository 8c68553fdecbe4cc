"""Findings as a DICOS Threat Detection Report (TDR), so that DICOS-aware consoles read our results.

One TDR per scanned bag (the DICOS "object of inspection"), SOP class
1.2.840.10008.5.1.4.1.1.501.3, TDR type MACHINE, written with pydicom. It lives in the image's
study and references the DICOS DX image it was computed from, both at the top (Referenced Study
Sequence, as the Stratovan toolkit writes it) and in every threat's PTO representation. Each
finding becomes one potential threat object (PTO) with:

- a 2-D region of interest on the DX image: base (x, y, 0), extents (w, h, 1) and a bitmap of the
  box (all ones: we detect boxes, not masks), plus its bounding polygon (the four corners, x y z);
- an assessment: threat category (CONTRABAND for narcotics and currency, PI - prohibited item -
  for weapons, ANOMALY for structural concealment), a description, the flag (HIGH_THREAT for a
  weapon, THREAT otherwise) and the probability (the detector's score).

The layout mirrors the TDRs of an independent DICOS implementation (the Stratovan toolkit via
pyDICOS); tests read ours back with that implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DcmSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from detectors.xray import THREAT_CATEGORIES
from detectors.xray.detector import XrayFinding

TDR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.501.3"
DX_PROCESSING_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.501.2.2"
CATEGORY = {"narcotics": "CONTRABAND", "currency": "CONTRABAND", "weapon": "PI", "concealment": "ANOMALY"}
DESCRIPTION = {"narcotics": "Narcotics", "currency": "Currency", "weapon": "Weapon",
               "concealment": "Structural concealment"}
# PTO processing start/end (DT) and total time (FL): DICOS tags pydicom's dictionary lacks;
# the Stratovan toolkit writes them for every threat.
PTO_START, PTO_END, PTO_TOTAL_MS = 0x40101080, 0x40101081, 0x40101082


@dataclass
class ImageRef:
    """The DICOS image the findings were computed on."""

    sop_instance_uid: str
    study_instance_uid: str
    ooi_id: str  # the bag id (DICOS object of inspection id, PatientID)
    sop_class_uid: str = DX_PROCESSING_SOP_CLASS
    frame_of_reference_uid: str | None = None

    @staticmethod
    def from_dataset(ds: Dataset) -> ImageRef:
        """Take the reference from a DICOS DX image read with pydicom."""
        return ImageRef(str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.get("PatientID", "") or ""),
                        str(ds.SOPClassUID), str(ds.FrameOfReferenceUID) if "FrameOfReferenceUID" in ds else None)


@dataclass
class Station:
    """Where the report was made: the checkpoint and lane (DICOS machine location and id)."""

    station: str = "zastava"  # machine id: checkpoint/lane
    location: str = "unknown"
    address: str = "unknown"
    serial: str = "unknown"


def _dt(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S.%f") + "+0000"


def _reference(ref: ImageRef) -> Dataset:
    r = Dataset()
    r.ReferencedSOPClassUID = ref.sop_class_uid
    r.ReferencedSOPInstanceUID = ref.sop_instance_uid
    return r


def _pto(k: int, f: XrayFinding, ref: ImageRef, when: str, alarm_threshold: float,
         categories: dict[str, str]) -> Dataset:
    x1, y1, x2, y2 = (int(v) for v in f.box)
    w, h = max(1, x2 - x1), max(1, y2 - y1)
    roi = Dataset()
    roi.ThreatROIBase = [float(x1), float(y1), 0.0]
    roi.ThreatROIExtents = [float(w), float(h), 1.0]
    bits = np.packbits(np.ones(w * h, np.uint8), bitorder="little").tobytes()
    roi.ThreatROIBitmap = bits + (b"\0" if len(bits) % 2 else b"")  # OB values have even length
    rep = Dataset()
    rep.ReferencedInstanceSequence = DcmSequence([_reference(ref)])
    rep.ThreatROIVoxelSequence = DcmSequence([roi])
    rep.BoundingPolygon = [float(v) for v in (x1, y1, 0, x2, y1, 0, x2, y2, 0, x1, y2, 0)]
    a = Dataset()
    a.ThreatCategory = categories.get(f.cls, "ANOMALY")
    desc = DESCRIPTION.get(f.cls, f.cls)
    desc += f"; material {f.material}, Zeff {f.zeff:.1f}"
    if f.concealed:
        desc += f"; concealed: {f.concealment_reason or 'inside another object'}"
    a.ThreatCategoryDescription = desc
    a.ATDAbilityAssessment = "NO_INTERFERENCE"
    if f.score < alarm_threshold:
        a.ATDAssessmentFlag = "NO_THREAT"
    else:
        a.ATDAssessmentFlag = "HIGH_THREAT" if f.cls == "weapon" else "THREAT"
    a.ATDAssessmentProbability = float(f.score)
    t = Dataset()
    t.PotentialThreatObjectID = k
    t.PTORepresentationSequence = DcmSequence([rep])
    t.ATDAssessmentSequence = DcmSequence([a])
    t.add_new(PTO_START, "DT", when)
    t.add_new(PTO_END, "DT", when)
    t.add_new(PTO_TOTAL_MS, "FL", 0.0)
    return t


def build_tdr(findings: Sequence[XrayFinding], ref: ImageRef, *, algorithm: str = "Zastava X-ray",
              version: str = "1", processing_ms: float = 0.0, when: datetime | None = None,
              alarm_threshold: float = 0.0, manufacturer: str = "Zastava",
              station: Station | None = None, categories: dict[str, str] | None = None) -> Dataset:
    """The TDR as a pydicom Dataset (with file meta), ready for `save_tdr` or a C-STORE.

    `categories`: threat category per class name (THREAT_CATEGORIES), laid over CATEGORY; a class
    named in neither is an ANOMALY.

    Findings below `alarm_threshold` are reported with flag NO_THREAT and do not raise the alarm
    (the detector normally hands over only findings above their thresholds: all of them alarm).
    """
    when = when or datetime.now(UTC)
    station = station or Station()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TDR_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.add_new(0x00020004, "CS", "V03")  # DICOS version in the file meta (DICOS readers require it)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = TDR_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S.%f")
    ds.InstanceCreationDate = ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.InstanceCreationTime = ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.Modality = "TDR"
    # The general-equipment attributes DICOS makes mandatory: who produced the report, where.
    ds.Manufacturer = manufacturer
    ds.InstitutionName = station.location
    ds.InstitutionAddress = station.address
    ds.StationName = station.station
    ds.ManufacturerModelName = algorithm
    ds.DeviceSerialNumber = station.serial
    ds.SoftwareVersions = version
    ds.DateOfLastCalibration = date
    ds.TimeOfLastCalibration = time
    ds.ReferencedStudySequence = DcmSequence([_reference(ref)])
    ds.PatientID = ref.ooi_id or "unknown"
    ds.IssuerOfPatientID = station.station  # OOI ID assigning authority
    ds.TypeOfPatientID = "TEXT"
    ds.StudyInstanceUID = ref.study_instance_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = ref.ooi_id[:16] or "unknown"  # DICOS Scan ID (SH: 16 characters)
    ds.FrameOfReferenceUID = ref.frame_of_reference_uid or generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 1
    stamp = _dt(when)
    unknown = {c: v for c, v in (categories or {}).items() if v not in THREAT_CATEGORIES}
    if unknown:
        raise ValueError(f"threat categories must be among {THREAT_CATEGORIES}, got {unknown}")
    cats = {**CATEGORY, **(categories or {})}
    threats = [_pto(k + 1, f, ref, stamp, alarm_threshold, cats) for k, f in enumerate(findings)]
    if threats:
        ds.ThreatSequence = DcmSequence(threats)
    alarms = sum(1 for f in findings if f.score >= alarm_threshold)
    ds.AbortFlag = "SUCCESS"
    ds.TDRType = "MACHINE"
    ds.ThreatDetectionAlgorithmAndVersion = [algorithm, version]
    ds.AlarmDecisionTime = stamp
    ds.AlarmDecision = "ALARM" if alarms else "CLEAR"
    ds.NumberOfTotalObjects = len(threats)
    ds.NumberOfAlarmObjects = alarms
    ds.DICOSVersion = "V03"
    ds.OOIType = "BAGGAGE"
    ds.AcquisitionStatus = "SUCCESSFUL"
    ds.ScanType = "OPERATIONAL"
    ds.TotalProcessingTime = float(processing_ms)
    ds.AdditionalScreeningPerformed = "NO"
    # pydicom's dictionary says DS, the DICOS toolkit reads FD (and refuses a scale <= 0): write FD.
    ds.add_new(0x40101075, "FD", 1.0)
    return ds


def save_tdr(ds: Dataset, path: Path) -> Path:
    """Write the TDR as a DICOM Part 10 file (preamble + file meta), atomically (temp + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return path


def write_tdr(findings: Sequence[XrayFinding], ref: ImageRef, path: Path, **kw) -> Path:
    """build_tdr + save_tdr."""
    return save_tdr(build_tdr(findings, ref, **kw), path)
