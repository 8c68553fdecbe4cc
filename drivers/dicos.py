"""Read DICOS/DICOM DX images into the X-ray pixel convention, and pair high/low energies.

DICOS (NEMA's DICOM for security screening) carries a dual-energy bag as two DX instances of the
same series, one per energy (see docs/dicos.md). This module turns one instance into a
DicosImage: uint16 transmission with 65535 = open beam (drivers.base), whatever the file's
photometric interpretation, rescale, bit depth or transfer syntax; and it refuses everything
that is not a single-frame greyscale DX image (a CT volume, a threat detection report, a
structured report, a file without pixel data, a truncated file) with a DicosRefused that says
why. The callers (spool, C-STORE receiver) count refusals and keep going.

Pixel mapping, so that both ends of a DICOS exchange agree:
  value = stored * RescaleSlope + RescaleIntercept (1 and 0 when absent), read as transmission
  on the stored bit depth's scale: T = clip(value / (2**BitsStored - 1), 0, 1); out = T * 65535.
  MONOCHROME1, a Pixel Intensity Relationship Sign of -1, or a Presentation LUT Shape of INVERSE
  each invert the sense (an odd number of them means 'bright = opaque').
  PALETTE COLOR DX images keep their stored values as intensities: the palette is for display.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

import numpy as np

from drivers.base import XRAY_WHITE, XrayFrame

log = logging.getLogger("zastava.drivers.dicos")

DICOS_PREFIX = "1.2.840.10008.5.1.4.1.1.501."
DICOS_DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.501.2.1"
DICOS_DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.501.2.2"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
DX_CLASSES = {
    DICOS_DX_PRESENTATION: "DICOS DX for presentation",
    DICOS_DX_PROCESSING: "DICOS DX for processing",
    DX_PRESENTATION: "DICOM DX for presentation",
    DX_PROCESSING: "DICOM DX for processing",
}
# The DICOS storage classes, named for refusals and for the C-STORE receiver's registration.
DICOS_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.501.1": ("DICOSCTImageStorage", "DICOS CT image"),
    DICOS_DX_PRESENTATION: ("DICOSDigitalXRayImageStorageForPresentation", "DICOS DX for presentation"),
    DICOS_DX_PROCESSING: ("DICOSDigitalXRayImageStorageForProcessing", "DICOS DX for processing"),
    "1.2.840.10008.5.1.4.1.1.501.3": ("DICOSThreatDetectionReportStorage", "DICOS threat detection report"),
    "1.2.840.10008.5.1.4.1.1.501.4": ("DICOS2DAITStorage", "DICOS 2D AIT image"),
    "1.2.840.10008.5.1.4.1.1.501.5": ("DICOS3DAITStorage", "DICOS 3D AIT image"),
    "1.2.840.10008.5.1.4.1.1.501.6": ("DICOSQuadrupoleResonanceStorage", "DICOS quadrupole resonance"),
}

_warned_kinds: set[str] = set()

MAX_FILE_BYTES = 512 << 20
MAX_PIXELS = 64 << 20  # 64 Mpx: a long cargo scan fits; a fuzzed 65535 x 65535 header does not


class DicosRefused(ValueError):
    """An instance this reader will not turn into an image; `reason` is for logs and bad/ notes."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class DicosImage:
    image: np.ndarray  # uint16 transmission, 65535 = open beam
    energy: str | None  # "high", "low", or None when the instance does not say
    bag_id: str | None
    study_uid: str
    series_uid: str
    sop_class: str
    sop_instance: str
    kvp: float | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def pair_key(self) -> tuple[str, str]:
        return (self.study_uid, self.series_uid)


def class_name(uid: str) -> str:
    if uid in DX_CLASSES:
        return DX_CLASSES[uid]
    if uid in DICOS_CLASSES:
        return DICOS_CLASSES[uid][1]
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name if name != uid else f"SOP class {uid}"
    except Exception:
        return f"SOP class {uid}"


def read_dicos(src: str | Path | bytes | BinaryIO, *, max_bytes: int = MAX_FILE_BYTES) -> DicosImage:
    """One DICOS/DICOM file (path, bytes or file object) -> DicosImage, or DicosRefused."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if isinstance(src, str | Path):
        try:
            size = Path(src).stat().st_size
        except OSError as e:
            raise DicosRefused(f"cannot read file: {e.strerror}") from None
        if size > max_bytes:
            raise DicosRefused(f"file of {size} bytes exceeds the {max_bytes}-byte limit")
    elif isinstance(src, bytes | bytearray):
        if len(src) > max_bytes:
            raise DicosRefused(f"dataset of {len(src)} bytes exceeds the {max_bytes}-byte limit")
        src = io.BytesIO(src)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(src)
        except InvalidDicomError as e:
            raise DicosRefused(f"not a DICOM file: {e}") from None
        except Exception as e:  # pydicom raises many types on a damaged file; all mean 'unreadable'
            raise DicosRefused(f"unreadable DICOM: {type(e).__name__}: {e}") from None
        img = _from_dataset(ds)
    _note_warnings(img, caught)
    return img


def from_dataset(ds) -> DicosImage:
    """A pydicom Dataset (e.g. one received by C-STORE) -> DicosImage, or DicosRefused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = _from_dataset(ds)
    _note_warnings(img, caught)
    return img


def _note_warnings(img: DicosImage, caught: list) -> None:
    msgs = sorted({str(w.message).split(" Please see")[0] for w in caught})
    if msgs:
        # e.g. the leading-zero UIDs some toolkits write: readable, so warn rather than refuse.
        # A scanner that always writes them would fill the log, so each kind of warning is logged
        # at WARNING once per process and at DEBUG after that; meta always carries them all.
        img.meta["warnings"] = msgs
        kinds = {m.split(":")[0] for m in msgs}
        new = kinds - _warned_kinds
        _warned_kinds.update(new)
        level = logging.WARNING if new else logging.DEBUG
        log.log(level, "DICOS %s: %s", img.sop_instance or "?", "; ".join(msgs))


def _str(ds, keyword: str) -> str:
    v = ds.get(keyword)
    return "" if v is None else str(v).strip()


def _float(ds, keyword: str) -> float | None:
    try:
        v = ds.get(keyword)
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def energy_of(ds) -> str | None:
    """'high'/'low' from Image Type (value 3 by our convention, any value as a fallback)."""
    try:
        vals = [str(v).upper().strip() for v in (ds.get("ImageType") or [])]
    except TypeError:
        return None
    ordered = ([vals[2]] if len(vals) > 2 else []) + vals
    for v in ordered:
        if v in ("HIGH", "HIGH ENERGY", "HIGH_ENERGY", "HE"):
            return "high"
        if v in ("LOW", "LOW ENERGY", "LOW_ENERGY", "LE"):
            return "low"
    return None


def _from_dataset(ds) -> DicosImage:
    try:
        return _convert(ds)
    except DicosRefused:
        raise
    except Exception as e:  # a damaged element anywhere: refuse, never crash the caller
        raise DicosRefused(f"unreadable DICOM: {type(e).__name__}: {e}") from None


def _convert(ds) -> DicosImage:
    sop_class = _str(ds, "SOPClassUID")
    if not sop_class:
        meta = getattr(ds, "file_meta", None)
        sop_class = _str(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    if not sop_class:
        raise DicosRefused("no SOP Class UID: cannot tell what this object is")
    if sop_class not in DX_CLASSES:
        raise DicosRefused(f"{class_name(sop_class)} is not a DX image (only DICOS/DICOM DX are read)")
    if "PixelData" not in ds:
        raise DicosRefused(f"{class_name(sop_class)} without pixel data")
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows <= 0 or cols <= 0:
        raise DicosRefused(f"bad image size {rows} x {cols}")
    if rows * cols > MAX_PIXELS:
        raise DicosRefused(f"image of {rows} x {cols} exceeds the {MAX_PIXELS}-pixel limit")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise DicosRefused(f"multi-frame image ({frames} frames): a DX bag image has one")
    spp = int(ds.get("SamplesPerPixel") or 1)
    photometric = _str(ds, "PhotometricInterpretation").upper() or "MONOCHROME2"
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        raise DicosRefused(f"{photometric} with {spp} samples per pixel is not greyscale transmission")
    try:
        arr = ds.pixel_array
    except Exception as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
        raise DicosRefused(f"cannot decode pixel data ({class_name(str(ts))}): {type(e).__name__}: {e}") from None
    if arr.shape != (rows, cols):
        raise DicosRefused(f"pixel data of shape {arr.shape}, expected ({rows}, {cols})")
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if not 1 <= bits <= 16:
        raise DicosRefused(f"BitsStored {bits}: only 1..16-bit images are transmission data")
    slope = _float(ds, "RescaleSlope")
    intercept = _float(ds, "RescaleIntercept")
    invert = photometric == "MONOCHROME1"
    if _float(ds, "PixelIntensityRelationshipSign") == -1:
        invert = not invert
    if _str(ds, "PresentationLUTShape").upper() == "INVERSE":
        invert = not invert
    image = to_transmission(arr, bits, slope if slope is not None else 1.0,
                            intercept if intercept is not None else 0.0, invert)
    spacing = None
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        v = ds.get(kw)
        if v is not None and len(v) == 2:
            try:
                spacing = (float(v[0]), float(v[1]))
                break
            except (TypeError, ValueError):
                pass
    meta = {"sop_class": class_name(sop_class), "photometric": photometric, "bits_stored": bits}
    if slope not in (None, 1.0) or intercept not in (None, 0.0):
        meta["rescale"] = [slope, intercept]
    if photometric == "PALETTE COLOR":
        meta["note"] = "palette colour DX: stored values used as intensities, palette ignored"
    return DicosImage(
        image=image, energy=energy_of(ds), bag_id=_str(ds, "PatientID") or None,
        study_uid=_str(ds, "StudyInstanceUID"), series_uid=_str(ds, "SeriesInstanceUID"),
        sop_class=sop_class, sop_instance=_str(ds, "SOPInstanceUID"), kvp=_float(ds, "KVP"),
        pixel_spacing_mm=spacing, meta=meta,
    )


def to_transmission(arr: np.ndarray, bits: int, slope: float, intercept: float, invert: bool) -> np.ndarray:
    """Stored pixels -> uint16 transmission (see the module docstring for the mapping)."""
    full = float((1 << bits) - 1)
    if slope == 1.0 and intercept == 0.0 and bits == 16 and arr.dtype == np.uint16:
        out = arr  # the common case: already the convention, no float round trip
    else:
        v = arr.astype(np.float32) * slope + intercept
        out = np.clip(np.rint(v * (XRAY_WHITE / full)), 0, XRAY_WHITE).astype(np.uint16)
    if invert:
        out = XRAY_WHITE - out
    return np.ascontiguousarray(out, dtype=np.uint16)


# -- pairing ---------------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass
class Pair(Generic[T]):
    """What the pairer releases: both energies, or one with `note` saying why it is alone."""

    key: object
    high: T | None
    low: T | None
    note: str | None = None


class EnergyPairer(Generic[T]):
    """Waits a bounded time for the other energy of a bag; then lets the one it has go alone.

    Bounded in both time (`timeout_s`) and count (`max_pending` keys; the oldest is released
    first), so a scanner that only ever sends one energy cannot make it hold images forever.
    Two items of the same energy under one key: the first is released alone (a re-scan).
    `energy` None with a `rank` (kVp) waits too, and of two such the higher rank is high.
    """

    def __init__(self, timeout_s: float = 10.0, max_pending: int = 64):
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self.pending: OrderedDict[object, list[tuple[str | None, float | None, T, float]]] = OrderedDict()

    def add(self, key, energy: str | None, item: T, now: float, rank: float | None = None) -> list[Pair[T]]:
        out: list[Pair[T]] = []
        if energy is None and rank is None:
            return [Pair(key, item, None, "single energy")]
        waiting = self.pending.get(key)
        if waiting:
            e0, r0, other, _ = waiting[0]
            partner = self._match(e0, r0, other, energy, rank, item, key)
            if partner is not None:
                del self.pending[key]
                return [partner]
            # same energy again, or no way to tell them apart: the older one goes alone
            del self.pending[key]
            out.append(self._alone(key, e0, other, "another image of the same energy came first"))
        self.pending[key] = [(energy, rank, item, now)]
        while len(self.pending) > self.max_pending:
            k, [(e, _r, it, _t)] = self.pending.popitem(last=False)
            out.append(self._alone(k, e, it, f"more than {self.max_pending} bags waiting for a partner"))
        return out

    def _match(self, e0, r0, a, e1, r1, b, key) -> Pair[T] | None:
        if e0 and e1 and e0 != e1:
            return Pair(key, a if e0 == "high" else b, b if e0 == "high" else a)
        if e0 is None and e1 is None and r0 is not None and r1 is not None and r0 != r1:
            return Pair(key, a if r0 > r1 else b, b if r0 > r1 else a, "energies told apart by kVp")
        return None

    def _alone(self, key, energy: str | None, item: T, why: str) -> Pair[T]:
        if energy == "low":
            return Pair(key, None, item, f"low energy alone: {why}")
        return Pair(key, item, None, f"alone: {why}")

    def expire(self, now: float) -> list[Pair[T]]:
        out = []
        for key in [k for k, v in self.pending.items() if now - v[0][3] >= self.timeout_s]:
            [(e, _r, it, _t)] = self.pending.pop(key)
            out.append(self._alone(key, e, it, f"no partner within {self.timeout_s:g}s"))
        return out

    def drain(self) -> list[Pair[T]]:
        return self.expire(float("inf"))


def frame_from_pair(pair: Pair[DicosImage], source: str, t: float,
                    extra: Callable[[DicosImage], dict] | None = None) -> XrayFrame:
    """An XrayFrame from released DICOS images; a lone low image travels as `high` (noted)."""
    main = pair.high if pair.high is not None else pair.low
    low = pair.low if pair.high is not None else None
    if low is not None and low.image.shape != main.image.shape:
        meta_note = f"low image {low.image.shape} does not match high {main.image.shape}: dropped"
        log.warning("DICOS bag %s: %s", main.bag_id, meta_note)
        low = None
        pair.note = meta_note
    meta = {"format": "dicos", "sop_class": main.meta.get("sop_class"), "sop_class_uid": main.sop_class,
            "study_uid": main.study_uid, "series_uid": main.series_uid,
            "instances": [i.sop_instance for i in (pair.high, pair.low) if i]}
    if pair.high is None:
        meta["energy"] = "low"
    if pair.note:
        meta["pairing"] = pair.note
    for img in (pair.high, pair.low):
        if img is not None:
            for k in ("warnings", "note", "rescale"):
                if k in img.meta:
                    meta.setdefault(k, img.meta[k])
    if extra:
        meta.update(extra(main))
    return XrayFrame(high=main.image, low=low.image if low is not None else None, source=source, t=t,
                     bag_id=main.bag_id, pixel_spacing_mm=main.pixel_spacing_mm, meta=meta)
