"""DICOS DX files of one bag, the way a dual-energy scanner exports them (see docs/dicos.md).

Each bag is two "DX For Processing" instances, one per energy, in one study and one series.
The attribute set follows what the DICOS toolkit (Stratovan, wrapped by pydicos) writes itself,
so that both pydicom-based readers and the DICOS toolkit read our files. UIDs come from
pydicom's generate_uid with entropy from (seed, bag id): the same seed and bag give the same
UIDs, and so byte-identical files for the same time stamp.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DICOS_DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.501.2.2"
DICOS_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.501.2.1"
DICOS_SOP_CLASSES = (DICOS_DX_FOR_PROCESSING, DICOS_DX_FOR_PRESENTATION)
DICOS_VERSION = "V03"
KVP = {"high": 160.0, "low": 80.0}
TUBE_CURRENT_UA = 1000.0
EFFECTIVE_KEV = {"high": 120.0, "low": 60.0}  # the energies physics.py models
BELT_SPEED_MM_S = 200.0
ENERGIES = ("high", "low")
# An implementation UID for the simulator, stable across runs (derived, not registered).
IMPLEMENTATION_UID = generate_uid(entropy_srcs=["zastava", "hw_sim", "xray", "dicos"])
IMPLEMENTATION_VERSION = "ZASTAVA_SIM_1"


def bag_uids(seed: int, bag_id: str) -> dict[str, str]:
    """Study, series and per-energy SOP instance UIDs of a bag: deterministic for (seed, bag_id)."""
    src = [str(seed), bag_id]
    return {
        "study": generate_uid(entropy_srcs=[*src, "study"]),
        "series": generate_uid(entropy_srcs=[*src, "series"]),
        "high": generate_uid(entropy_srcs=[*src, "high"]),
        "low": generate_uid(entropy_srcs=[*src, "low"]),
    }


def dicos_dataset(
    image: np.ndarray,
    energy: str,
    *,
    bag_id: str,
    t: float,
    seed: int,
    pixel_spacing_mm: tuple[float, float] = (1.5, 1.5),
    station: str = "ZASTAVA-SIM",
    serial: str = "SIM-0001",
) -> Dataset:
    """One energy of one bag as a DICOS DX For Processing dataset (with file meta)."""
    if energy not in ENERGIES:
        raise ValueError(f"energy must be 'high' or 'low', not {energy!r}")
    if image.ndim != 2 or image.dtype != np.uint16:
        raise ValueError(f"a DICOS DX image must be 2-D uint16, got {image.dtype} {image.shape}")
    uids = bag_uids(seed, bag_id)
    when = datetime.fromtimestamp(t, UTC)
    date, time_ = when.strftime("%Y%m%d"), when.strftime("%H%M%S.%f")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DICOS_DX_FOR_PROCESSING
    meta.MediaStorageSOPInstanceUID = uids[energy]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    # DICOS puts its version in the file meta too, at (0002,0004), which DICOM leaves unused.
    meta.add(DataElement(0x00020004, "CS", DICOS_VERSION))

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", energy.upper()]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time_
    ds.SOPClassUID = DICOS_DX_FOR_PROCESSING
    ds.SOPInstanceUID = uids[energy]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time_
    ds.Modality = "XRAY"
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.Manufacturer = "Zastava"
    ds.ManufacturerModelName = "hw_sim dual-energy line scanner"
    ds.InstitutionName = "Zastava simulator"
    ds.InstitutionAddress = "127.0.0.1"  # DICOS "Machine Address"
    ds.StationName = station
    ds.SeriesDescription = f"{energy.upper()} ENERGY"
    # OOI (object of inspection) module: DICOS puts the bag where DICOM puts the patient.
    ds.PatientID = bag_id
    ds.PatientName = bag_id
    ds.IssuerOfPatientID = "ZASTAVA"  # DICOS "OOI ID Assigning Authority"
    ds.TypeOfPatientID = "TEXT"
    ds.PatientSex = "U"
    ds.KVP = KVP[energy]
    ds.XRayTubeCurrentInuA = TUBE_CURRENT_UA
    ds.DeviceSerialNumber = serial
    ds.SoftwareVersions = "zastava-hw_sim"
    ds.DateOfLastCalibration, ds.TimeOfLastCalibration = date, "000000"
    ds.DetectorType = "SCINTILLATOR"
    ds.TableSpeed = BELT_SPEED_MM_S  # DICOS "Belt Speed"
    ds.AcquisitionContextSequence = []
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = bag_id[-16:]
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = 1 if energy == "high" else 2
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.PixelSpacing = [f"{pixel_spacing_mm[0]:.6g}", f"{pixel_spacing_mm[1]:.6g}"]
    ds.PixelSpacingCalibrationDescription = "GEOMETRY"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.DICOSVersion = DICOS_VERSION
    ds.OOIType = "BAGGAGE"
    ds.AcquisitionStatus = "SUCCESSFUL"
    ds.ScanType = "OPERATIONAL"
    ds.BeltHeight = 0.0
    # DICOS attributes whose tags DICOM uses differently or not at all: added by tag and VR.
    ds.add(DataElement(0x00082108, "CS", "LHS"))  # Coordinate System
    ds.add(DataElement(0x00080118, "CS", "MACHINE"))  # Image Origin (DICOM: Mapping Resource UID)
    ds.add(DataElement(0x43000902, "FL", EFFECTIVE_KEV[energy]))  # Effective Energy, keV
    ds.PixelData = np.ascontiguousarray(image, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def encode(ds: Dataset) -> bytes:
    """The Part 10 file bytes of a dataset (preamble, DICM, file meta, body)."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def bag_files(high: np.ndarray, low: np.ndarray, *, bag_id: str, t: float, seed: int,
              pixel_spacing_mm: tuple[float, float] = (1.5, 1.5)) -> dict[str, bytes]:
    """{"<bag_id>_high.dcs": bytes, "<bag_id>_low.dcs": bytes}: what a scanner exports per bag."""
    out = {}
    for energy, img in (("high", high), ("low", low)):
        ds = dicos_dataset(img, energy, bag_id=bag_id, t=t, seed=seed, pixel_spacing_mm=pixel_spacing_mm)
        out[f"{bag_id}_{energy}.dcs"] = encode(ds)
    return out
