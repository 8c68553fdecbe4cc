"""16-bit PNG/TIFF reading (OpenCV, tifffile): the convention, refusals, and fuzzed bytes."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.imagefiles import ImageRefused, parse_name, read_image_file
from tests.test_dicos import bag_image


def png_bytes(img) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def tiff_bytes(img) -> bytes:
    b = io.BytesIO()
    tifffile.imwrite(b, img)
    return b.getvalue()


def test_names():
    assert parse_name("BAG-17_high.png") == ("BAG-17", "high")
    assert parse_name("x_LOW.TIFF") == ("x", "low")
    assert parse_name("bag_2024_high.dcs") == ("bag_2024", "high")
    assert parse_name("single.tif") == ("single", None)
    assert parse_name("_high.png") == ("_high", None)


def test_16bit_png_and_tiff_are_read_as_is(tmp_path):
    img = bag_image()
    (tmp_path / "A_high.png").write_bytes(png_bytes(img))
    (tmp_path / "A_low.tif").write_bytes(tiff_bytes(img))
    a = read_image_file(tmp_path / "A_high.png")
    b = read_image_file(tmp_path / "A_low.tif")
    assert np.array_equal(a.image, img) and np.array_equal(b.image, img)
    assert (a.bag_id, a.energy, b.energy) == ("A", "high", "low")
    assert a.image.dtype == np.uint16


def test_8bit_float_and_grey_as_colour_are_converted_with_a_note():
    e8 = read_image_file("x.png", png_bytes(np.array([[0, 255]], np.uint8)))
    assert e8.image.tolist() == [[0, 65535]] and "8-bit" in e8.meta["note"]
    fl = read_image_file("x.tif", tiff_bytes(np.array([[0.0, 0.5, 1.0]], np.float32)))
    assert fl.image.tolist() == [[0, 32768, 65535]]
    g = bag_image(8, 8)
    grey3 = read_image_file("x.png", png_bytes(np.dstack([g, g, g])))
    assert np.array_equal(grey3.image, g) and "one channel" in grey3.meta["note"]


@pytest.mark.parametrize("name, data, reason", [
    ("c.png", png_bytes(np.dstack([bag_image(8, 8, 1), bag_image(8, 8, 2), bag_image(8, 8, 3)])), "colour image"),
    ("t.png", png_bytes(bag_image())[:200], "corrupt or truncated PNG"),
    ("n.png", b"GIF89a....", "not a PNG"),
    ("t.tif", tiff_bytes(bag_image())[:100], "corrupt or truncated TIFF"),
    ("i.tif", tiff_bytes(np.array([[1, -1]], np.int32)), "pixel type"),
    ("m.tif", b"", "corrupt or truncated TIFF"),
    ("x.bmp", b"BM", "not a PNG or TIFF"),
])
def test_refusals(name, data, reason):
    with pytest.raises(ImageRefused) as ei:
        read_image_file(name, data)
    assert reason in ei.value.reason


GOOD_PNG = png_bytes(bag_image(16, 16))
GOOD_TIFF = tiff_bytes(bag_image(16, 16))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([("a.png", GOOD_PNG), ("a.tif", GOOD_TIFF)]), st.data())
def test_fuzzed_files_are_refused_or_read(named, data):
    name, good = named
    blob = bytearray(good[: data.draw(st.integers(0, len(good)))])
    for _ in range(data.draw(st.integers(0, 4))):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        out = read_image_file(name, bytes(blob))
    except ImageRefused as e:
        assert e.reason
        return
    assert out.image.dtype == np.uint16 and out.image.ndim == 2
