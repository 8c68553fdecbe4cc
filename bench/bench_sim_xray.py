"""Simulated X-ray scanner benchmark: bags/s of the scene generator and of each image writer,
beside the bare library doing the same work on the same arrays in the same run.

  make_bag           scene + dual-energy physics + noise, 448 x 640, mixed contraband (50 %)
    bare: render     only numpy exp + cv2.GaussianBlur + rng.poisson for both energies (the floor
                     a physics-based generator cannot go under with numpy's Poisson sampler)
  write PNG pair     spool.png_bytes x2 + atomic_write_many (dotfiles, fsync, rename, dir fsync)
    bare             cv2.imencode('.png') x2 (no file), and cv2.imencode + write() + fsync
  write DICOS pair   dicos_dataset + encode x2 + atomic_write
    bare             pydicom: a minimal Dataset with the same pixels, dcmwrite to BytesIO x2
  operator display   pseudocolour + JPEG encode (what the MJPEG stream costs per bag)
    bare             cv2.applyColorMap + cv2.imencode('.jpg') on the same image

Usage: python bench/bench_sim_xray.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hw_sim.xray import spool  # noqa: E402
from hw_sim.xray.dataset import bag_rng  # noqa: E402
from hw_sim.xray.dicos import dicos_dataset, encode  # noqa: E402
from hw_sim.xray.display import pseudocolour  # noqa: E402
from hw_sim.xray.scene import choose_contraband, make_bag  # noqa: E402


def rate(fn, n: int) -> float:
    """Calls per second of fn over n calls (after one warm-up call)."""
    fn(0)
    t = time.perf_counter()
    for i in range(n):
        fn(i + 1)
    return n / (time.perf_counter() - t)


def bare_render(layers_att: np.ndarray, rng: np.random.Generator) -> None:
    for i0 in (9000.0, 6000.0):
        t = cv2.GaussianBlur(np.exp(-layers_att), (0, 0), 0.7)
        rng.poisson(t * i0).astype(np.uint16)


def bare_dicom(img: np.ndarray) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.501.2.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = img.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    args = ap.parse_args()
    n_bags = 15 if args.quick else 120
    n_io = 20 if args.quick else 150

    bags = [make_bag(bag_rng(1, i), choose_contraband(bag_rng(1, i), 0.5)) for i in range(8)]
    att = -np.log(np.maximum(bags[0].high, 1).astype(np.float32) / 65535)
    rows: list[tuple[str, str, float]] = []

    rows.append(("make_bag (scene+physics+noise)", "zastava",
                 rate(lambda i: make_bag(bag_rng(2, i), choose_contraband(bag_rng(2, i), 0.5)), n_bags)))
    rng = np.random.default_rng(0)
    rows.append(("make_bag (scene+physics+noise)", "bare render: exp+blur+poisson",
                 rate(lambda i: bare_render(att, rng), n_bags)))

    with tempfile.TemporaryDirectory(prefix="bench-sim-xray-") as tmp:
        d = Path(tmp)

        def ours_png(i):
            b = bags[i % len(bags)]
            spool.atomic_write_many(d, spool.bag_image_files(b.high, b.low, f"P{i}", "png"))

        def ours_png_mem(i):
            b = bags[i % len(bags)]
            spool.bag_image_files(b.high, b.low, f"P{i}", "png")

        def bare_png(i):
            b = bags[i % len(bags)]
            cv2.imencode(".png", b.high)
            cv2.imencode(".png", b.low)

        def bare_png_write(i):
            b = bags[i % len(bags)]
            for e, img in (("h", b.high), ("l", b.low)):
                with open(d / f"bare{i}{e}.png", "wb") as f:
                    f.write(cv2.imencode(".png", img)[1].tobytes())
                    f.flush()
                    os.fsync(f.fileno())

        def ours_dicos(i):
            b = bags[i % len(bags)]
            spool.atomic_write_many(d, {f"D{i}_{e}.dcs": encode(dicos_dataset(img, e, bag_id=f"D{i}", t=1.7e9, seed=1))
                                        for e, img in (("high", b.high), ("low", b.low))})

        def ours_dicos_mem(i):
            b = bags[i % len(bags)]
            for e, img in (("high", b.high), ("low", b.low)):
                encode(dicos_dataset(img, e, bag_id=f"D{i}", t=1.7e9, seed=1))

        def bare_dicos(i):
            b = bags[i % len(bags)]
            bare_dicom(b.high)
            bare_dicom(b.low)

        rows.append(("write PNG pair", "zastava (encode+atomic fsync)", rate(ours_png, n_io)))
        rows.append(("write PNG pair", "bare imencode+write+fsync", rate(bare_png_write, n_io)))
        rows.append(("write PNG pair", "zastava (encode only)", rate(ours_png_mem, n_io)))
        rows.append(("write PNG pair", "bare cv2.imencode x2 (default)", rate(bare_png, n_io)))
        rows.append(("write DICOS pair", "zastava (encode+atomic fsync)", rate(ours_dicos, n_io)))
        rows.append(("write DICOS pair", "zastava (encode only)", rate(ours_dicos_mem, n_io)))
        rows.append(("write DICOS pair", "bare pydicom dcmwrite x2", rate(bare_dicos, n_io)))

    def ours_display(i):
        b = bags[i % len(bags)]
        cv2.imencode(".jpg", pseudocolour(b.high, b.low), [cv2.IMWRITE_JPEG_QUALITY, 85])

    def bare_display(i):
        b = bags[i % len(bags)]
        cv2.imencode(".jpg", cv2.applyColorMap((b.high >> 8).astype(np.uint8), cv2.COLORMAP_JET),
                     [cv2.IMWRITE_JPEG_QUALITY, 85])

    rows.append(("operator display frame", "zastava pseudocolour+jpeg", rate(ours_display, n_io)))
    rows.append(("operator display frame", "bare applyColorMap+jpeg", rate(bare_display, n_io)))

    print(f"{'what':<32} {'implementation':<32} {'bags/s':>8}")
    for what, impl, r in rows:
        print(f"{what:<32} {impl:<32} {r:8.1f}")
    out = {
        "bench": "sim_xray", "quick": args.quick, "image_shape": list(bags[0].high.shape),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "n_bags": n_bags, "n_io": n_io,
        "rows": [{"what": w, "impl": i, "bags_per_s": round(r, 2)} for w, i, r in rows],
    }
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    (res / "sim_xray.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {res / 'sim_xray.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
