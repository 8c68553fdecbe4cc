"""The DICOS/DICOM DX reader: real files written with pydicom, the shared fixtures written by an
independent toolkit, and hypothesis feeding random and truncated bytes.

`make_dx` is the test-side writer the other X-ray tests and the benchmark reuse.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from drivers.dicos import (
    DICOS_DX_PRESENTATION,
    DICOS_DX_PROCESSING,
    DX_PROCESSING,
    DicosRefused,
    EnergyPairer,
    frame_from_pair,
    read_dicos,
)


def make_dx(image: np.ndarray, *, energy: str | None = "high", bag_id: str = "BAG1", study: str | None = None,
            series: str | None = None, sop_class: str = DICOS_DX_PROCESSING, ts=ExplicitVRLittleEndian,
            photometric: str = "MONOCHROME2", slope: float | None = None, intercept: float | None = None,
            bits_stored: int = 16, spacing: tuple[float, float] | None = (0.8, 0.8),
            spacing_kw: str = "PixelSpacing", kvp: float | None = None, sop_uid: str | None = None) -> Dataset:
    """A DICOS DX instance as docs/dicos.md says the simulator writes one."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.Modality = "DX"
    ds.PatientID = bag_id
    ds.ImageType = ["ORIGINAL", "PRIMARY", energy.upper()] if energy else ["ORIGINAL", "PRIMARY"]
    if kvp is not None:
        ds.KVP = kvp
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if spacing is not None:
        setattr(ds, spacing_kw, list(spacing))
    ds.PixelData = np.ascontiguousarray(image, dtype="<u2").tobytes()
    if ts == RLELossless:
        ds.compress(RLELossless)
    elif ts != ExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ts
    return ds


def dx_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def bag_image(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((h, w), 60000, np.uint16)
    y0, y1, x0, x1 = h // 6, h * 2 // 3, w // 5, w * 3 // 4
    img[y0:y1, x0:x1] = rng.integers(2000, 30000, (y1 - y0, x1 - x0), dtype=np.uint16)
    return img


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                                RLELossless])
def test_round_trip_every_common_transfer_syntax(tmp_path, ts):
    img = bag_image()
    p = tmp_path / "BAG7_high.dcs"
    make_dx(img, bag_id="BAG7", ts=ts).save_as(p, enforce_file_format=True)
    out = read_dicos(p)
    assert out.image.dtype == np.uint16 and np.array_equal(out.image, img)
    assert out.energy == "high" and out.bag_id == "BAG7" and out.pixel_spacing_mm == (0.8, 0.8)
    assert out.meta["sop_class"] == "DICOS DX for processing"


def test_monochrome1_rescale_bit_depth_and_imager_spacing():
    stored = np.array([[0, 1023], [4095, 2048]], np.uint16)
    img = read_dicos(dx_bytes(make_dx(stored, bits_stored=12, spacing=(0.5, 0.25),
                                      spacing_kw="ImagerPixelSpacing")))
    assert img.image.tolist() == [[0, round(1023 * 65535 / 4095)], [65535, round(2048 * 65535 / 4095)]]
    assert img.pixel_spacing_mm == (0.5, 0.25)
    inv = read_dicos(dx_bytes(make_dx(np.array([[0, 65535]], np.uint16), photometric="MONOCHROME1")))
    assert inv.image.tolist() == [[65535, 0]]  # MONOCHROME1: bright = opaque, so the sense flips
    # rescale is honoured: stored 1000 * 2 + 100 = 2100 on the 16-bit scale
    rs = read_dicos(dx_bytes(make_dx(np.array([[1000, 40000]], np.uint16), slope=2.0, intercept=100.0)))
    assert rs.image.tolist() == [[2100, 65535]] and rs.meta["rescale"] == [2.0, 100.0]


def test_presentation_and_dicom_dx_classes_are_read_and_energy_falls_back():
    img = bag_image(8, 8)
    for cls in (DICOS_DX_PRESENTATION, DX_PROCESSING):
        assert read_dicos(dx_bytes(make_dx(img, sop_class=cls))).image.shape == (8, 8)
    ds = make_dx(img, energy=None, kvp=140)
    out = read_dicos(dx_bytes(ds))
    assert out.energy is None and out.kvp == 140


def test_invalid_uids_warn_but_do_not_fail(caplog):
    out = read_dicos(dx_bytes(make_dx(bag_image(8, 8), sop_uid="01.002.3")))
    assert out.image.shape == (8, 8)
    assert any("01.002.3" in w for w in out.meta["warnings"])


@pytest.mark.parametrize("case, reason", [
    ("ct", "DICOS CT image is not a DX image"),
    ("sr", "is not a DX image"),
    ("no_pixels", "without pixel data"),
    ("multiframe", "multi-frame"),
    ("rgb", "not greyscale"),
    ("truncated", "pixel data"),
    ("not_dicom", "not a DICOM file"),
    ("too_big", "exceeds"),
])
def test_refusals_say_why(case, reason):
    img = bag_image(16, 16)
    kw: dict = {}
    ds = make_dx(img)
    if case == "ct":
        ds = make_dx(img, sop_class="1.2.840.10008.5.1.4.1.1.501.1")
    elif case == "sr":
        ds = make_dx(img, sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    elif case == "no_pixels":
        del ds.PixelData
    elif case == "multiframe":
        ds.NumberOfFrames = 2
    elif case == "rgb":
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
    data = dx_bytes(ds)
    if case == "truncated":
        data = data[:-100]
    elif case == "not_dicom":
        data = b"\x89PNG\r\n\x1a\n" + bytes(300)
    elif case == "too_big":
        kw["max_bytes"] = 100
    with pytest.raises(DicosRefused) as ei:
        read_dicos(data, **kw)
    assert reason in ei.value.reason


def test_pairing_high_low_timeout_and_repeats():
    pr: EnergyPairer = EnergyPairer(timeout_s=5.0, max_pending=2)
    assert pr.add("s1", "high", "H1", 0.0) == []
    [p] = pr.add("s1", "low", "L1", 1.0)
    assert (p.high, p.low, p.note) == ("H1", "L1", None)
    assert pr.add("s2", "low", "L2", 2.0) == []
    assert pr.expire(6.9) == []
    [p] = pr.expire(7.0)
    assert p.high is None and p.low == "L2" and "no partner within 5s" in p.note
    pr.add("s3", "high", "H3", 0.0)
    [p] = pr.add("s3", "high", "H3b", 0.1)
    assert p.high == "H3" and "same energy" in p.note
    pr.add("s4", "high", "H4", 0.2)
    [p] = pr.add("s5", "high", "H5", 0.3)  # a third waiting bag pushes out the oldest
    assert p.high == "H3b" and "more than 2" in p.note
    [p] = pr.add("s6", None, "X", 0.4)
    assert p.high == "X" and p.note == "single energy"
    pr.add("k", None, "A", 0.0, rank=80)
    [p] = pr.add("k", None, "B", 0.0, rank=140)
    assert (p.high, p.low) == ("B", "A") and "kVp" in p.note


def test_frame_from_pair_builds_a_dual_energy_frame():
    study, series = generate_uid(), generate_uid()
    hi = read_dicos(dx_bytes(make_dx(bag_image(seed=1), energy="high", study=study, series=series, bag_id="B9")))
    lo = read_dicos(dx_bytes(make_dx(bag_image(seed=2), energy="low", study=study, series=series, bag_id="B9")))
    pr: EnergyPairer = EnergyPairer()
    assert pr.add(lo.pair_key, lo.energy, lo, 0.0) == []
    [pair] = pr.add(hi.pair_key, hi.energy, hi, 0.0)
    f = frame_from_pair(pair, "spool:///x", 123.0)
    assert f.bag_id == "B9" and np.array_equal(f.high, hi.image) and np.array_equal(f.low, lo.image)
    assert f.pixel_spacing_mm == (0.8, 0.8) and f.meta["series_uid"] == series


# -- the independent implementation's files (../shared/fixtures/dicos) ---------------------------

DX_FIXTURES = ["python_DXFiles_SimpleProcessingDX.dcs", "python_DXFiles_SimplePresentationDX.dcs",
               "python_DXFiles_SimpleColorPaletteDX.dcs"]
REFUSED_FIXTURES = ["python_SimpleCT_SimpleCT0000.dcs", "python_TDRFiles_SimpleBaggageTDR.dcs",
                    "python_TDRFiles_MultiplePTOsTDR.dcs", "python_TDRFiles_SimpleBaggageNoThreatTDR.dcs",
                    "python_CTwithTDR_TDR.dcs"]


@pytest.mark.parametrize("name", DX_FIXTURES)
def test_shared_dx_fixtures_are_read(shared_fixtures: Path, name):
    img = read_dicos(shared_fixtures / name)
    assert img.image.shape == (128, 256) and img.image.dtype == np.uint16
    assert img.image.max() > 0
    assert any("Invalid value for VR UI" in w for w in img.meta["warnings"])  # warned, not refused


def test_shared_jpeg_lossless_matches_the_uncompressed_one(shared_fixtures: Path):
    # the presentation file is JPEG Lossless, the processing one plain: same test pattern
    a = read_dicos(shared_fixtures / "python_DXFiles_SimpleProcessingDX.dcs").image
    b = read_dicos(shared_fixtures / "python_DXFiles_SimplePresentationDX.dcs").image
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", REFUSED_FIXTURES)
def test_shared_ct_and_tdr_fixtures_are_refused(shared_fixtures: Path, name):
    with pytest.raises(DicosRefused) as ei:
        read_dicos(shared_fixtures / name)
    assert "is not a DX image" in ei.value.reason
    assert ("CT image" in ei.value.reason) or ("threat detection report" in ei.value.reason)


# -- fuzzing -----------------------------------------------------------------------------------

GOOD = dx_bytes(make_dx(bag_image(24, 32)))
GOOD_RLE = dx_bytes(make_dx(bag_image(24, 32), ts=RLELossless))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_are_refused_not_crashed(data):
    with pytest.raises(DicosRefused):
        read_dicos(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([GOOD, GOOD_RLE]), st.data())
def test_truncated_or_corrupted_files_are_refused_or_read_whole(good, data):
    cut = data.draw(st.integers(0, len(good)))
    blob = bytearray(good[:cut])
    n_flips = data.draw(st.integers(0, 3))
    for _ in range(n_flips):
        if blob:
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
    try:
        img = read_dicos(bytes(blob))
    except DicosRefused as e:
        assert e.reason
        return
    # whatever was read is a well-formed image in the convention
    assert img.image.dtype == np.uint16 and img.image.ndim == 2
