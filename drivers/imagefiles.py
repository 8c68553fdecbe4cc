"""16-bit PNG and TIFF X-ray images (OpenCV, tifffile) into the transmission convention.

Scanners that do not speak DICOS export each energy as a 16-bit greyscale file; the convention
(docs/dicos.md) names them `<bagid>_high.png` / `<bagid>_low.png` (TIFF likewise), and a file
without the suffix is a single-energy image. Files are read from bytes we read ourselves, so
that a size cap applies before any decoder runs and non-ASCII paths work with OpenCV.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivers.base import XRAY_WHITE

PNG_SUFFIXES = {".png"}
TIFF_SUFFIXES = {".tif", ".tiff"}
IMAGE_SUFFIXES = PNG_SUFFIXES | TIFF_SUFFIXES
MAX_FILE_BYTES = 512 << 20
MAX_PIXELS = 64 << 20

_ENERGY = re.compile(r"^(?P<bag>.+)_(?P<energy>high|low)$", re.IGNORECASE)


class ImageRefused(ValueError):
    """A file this reader will not turn into an image; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ImageFile:
    image: np.ndarray  # uint16 transmission, 65535 = open beam
    energy: str | None
    bag_id: str
    meta: dict = field(default_factory=dict)


def parse_name(name: str) -> tuple[str, str | None]:
    """'BAG17_high.png' -> ('BAG17', 'high'); 'BAG17.png' -> ('BAG17', None)."""
    stem = Path(name).name
    for suf in sorted(IMAGE_SUFFIXES | {".dcs", ".dcm", ".dicom"}, key=len, reverse=True):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
            break
    m = _ENERGY.match(stem)
    if m:
        return m.group("bag"), m.group("energy").lower()
    return stem, None


def read_image_file(path: str | Path, data: bytes | None = None, *, max_bytes: int = MAX_FILE_BYTES) -> ImageFile:
    """Read a PNG/TIFF file (or its bytes, named by `path`) -> ImageFile, or ImageRefused."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageRefused(f"'{suffix or '(none)'}' is not a PNG or TIFF file name")
    if data is None:
        try:
            if p.stat().st_size > max_bytes:
                raise ImageRefused(f"file of {p.stat().st_size} bytes exceeds the {max_bytes}-byte limit")
            data = p.read_bytes()
        except OSError as e:
            raise ImageRefused(f"cannot read file: {e.strerror}") from None
    if len(data) > max_bytes:
        raise ImageRefused(f"file of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    arr = _decode_png(data) if suffix in PNG_SUFFIXES else _decode_tiff(data)
    image, meta = to_transmission(arr)
    bag, energy = parse_name(p.name)
    meta["format"] = "png" if suffix in PNG_SUFFIXES else "tiff"
    return ImageFile(image=image, energy=energy, bag_id=bag, meta=meta)


def _decode_png(data: bytes) -> np.ndarray:
    import cv2

    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ImageRefused("not a PNG file (bad signature)")
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ImageRefused(f"corrupt PNG: {e}") from None
    if arr is None:
        raise ImageRefused("corrupt or truncated PNG (OpenCV could not decode it)")
    return arr


def _decode_tiff(data: bytes) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tf:
            if len(tf.pages) != 1:
                raise ImageRefused(f"TIFF with {len(tf.pages)} pages: one image per file expected")
            page = tf.pages[0]
            shape = getattr(page, "shape", ())
            if int(np.prod(shape or (0,))) > MAX_PIXELS * 4:
                raise ImageRefused(f"TIFF image of shape {shape} exceeds the pixel limit")
            return page.asarray()
    except ImageRefused:
        raise
    except Exception as e:  # tifffile raises many types on damaged files; all mean 'unreadable'
        raise ImageRefused(f"corrupt or truncated TIFF: {type(e).__name__}: {e}") from None


def to_transmission(arr: np.ndarray) -> tuple[np.ndarray, dict]:
    """Decoded pixels -> (uint16 transmission, notes). Colour is refused: it is not a measurement."""
    meta: dict = {}
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        if arr.shape[2] in (3, 4) and all(np.array_equal(arr[..., 0], arr[..., i]) for i in (1, 2)):
            arr = arr[..., 0]
            meta["note"] = "grey stored as colour: one channel used"
        else:
            raise ImageRefused(f"colour image of shape {arr.shape}: transmission images are greyscale")
    if arr.ndim != 2 or arr.size == 0:
        raise ImageRefused(f"image of shape {arr.shape}: a 2-D greyscale image expected")
    if arr.size > MAX_PIXELS:
        raise ImageRefused(f"image of {arr.size} pixels exceeds the {MAX_PIXELS}-pixel limit")
    if arr.dtype == np.uint16:
        out = arr
    elif arr.dtype == np.uint8:
        out = arr.astype(np.uint16) * 257
        meta["note"] = "8-bit image scaled to 16 bits: it carries 256 grey levels only"
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ImageRefused("floating-point image with NaN or infinite values")
        out = np.clip(np.rint(arr * XRAY_WHITE), 0, XRAY_WHITE).astype(np.uint16)
        meta["note"] = "floating-point image read as transmission in [0, 1]"
    else:
        raise ImageRefused(f"pixel type {arr.dtype}: 8/16-bit unsigned or float expected")
    return np.ascontiguousarray(out), meta
