"""X-ray ingest benchmark: bags/s through each frame source, beside the bare library doing the
same read in the same run.

  spool DICOS     SpoolSource over N DICOS DX pairs (settle, read, pair, ledger, move to done/)
    bare          pydicom.dcmread + pixel_array of the same 2N files
  spool PNG       SpoolSource over N 16-bit PNG pairs
    bare          cv2.imread(IMREAD_UNCHANGED) of the same 2N files
  C-STORE mem     pynetdicom SCU (another process, as a scanner is) -> DicosScpSource (decode,
                  pair, queue in memory) -> frames()
  C-STORE inbox   the same, as the agent runs it: each image written and fsynced to the inbox
                  before success is answered, then read back through the spool driver
    bare          the same SCU -> a bare pynetdicom SCP whose handler decodes pixel_array only

Images are 512 x 640 uint16 (a hand-luggage scan at ~1.5 mm), written before timing starts.

Usage: python bench/bench_xray_ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from drivers.dicos_scp import TRANSFER_SYNTAXES, DicosScpSource, register_dicos_classes  # noqa: E402
from drivers.spool import SpoolSource  # noqa: E402
from tests.test_dicos import make_dx  # noqa: E402

H, W = 512, 640


def images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        img = np.full((H, W), 60000, np.uint16)
        y, x = rng.integers(0, H - 200), rng.integers(0, W - 300)
        img[y:y + 200, x:x + 300] = rng.integers(2000, 40000, (200, 300), dtype=np.uint16)
        out.append(img)
    return out


def write_dicos(folder: Path, imgs: list[np.ndarray]) -> list[Path]:
    paths = []
    for i in range(0, len(imgs), 2):
        study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        for energy, img in (("high", imgs[i]), ("low", imgs[i + 1])):
            p = folder / f"B{i // 2:05d}_{energy}.dcs"
            make_dx(img, energy=energy, bag_id=f"B{i // 2:05d}", study=study, series=series).save_as(
                p, enforce_file_format=True)
            paths.append(p)
    return paths


def write_png(folder: Path, imgs: list[np.ndarray]) -> list[Path]:
    paths = []
    for i in range(0, len(imgs), 2):
        for energy, img in (("high", imgs[i]), ("low", imgs[i + 1])):
            p = folder / f"B{i // 2:05d}_{energy}.png"
            cv2.imwrite(str(p), img)
            paths.append(p)
    return paths


def drain(src, n_frames: int, timeout: float = 600) -> float:
    """Seconds until n_frames came out of src.frames()."""
    stop = threading.Event()
    got = 0
    t0 = time.perf_counter()
    for _f in src.frames(stop):
        got += 1
        if got >= n_frames or time.perf_counter() - t0 > timeout:
            break
    dt = time.perf_counter() - t0
    stop.set()
    if got < n_frames:
        raise RuntimeError(f"only {got} of {n_frames} frames")
    return dt


def bench_spool(kind: str, imgs: list[np.ndarray]) -> dict:
    n_pairs = len(imgs) // 2
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "spool"
        folder.mkdir()
        paths = write_dicos(folder, imgs) if kind == "dicos" else write_png(folder, imgs)
        # bare first, on the same files (page cache warm for both)
        t0 = time.perf_counter()
        for p in paths:
            if kind == "dicos":
                _ = pydicom.dcmread(p).pixel_array
            else:
                _ = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        bare = time.perf_counter() - t0
        time.sleep(0.05)  # every file older than the settle time below
        src = SpoolSource(f"spool://{folder}", poll_s=0.01, settle_s=0.0, pair_timeout_s=60)
        dt = drain(src, n_pairs)
        src.close()
    return {"source": f"spool {kind.upper()}", "pairs": n_pairs, "pairs_per_s": n_pairs / dt,
            "images_per_s": 2 * n_pairs / dt, "bare": "pydicom.dcmread+pixel_array" if kind == "dicos"
            else "cv2.imread", "bare_images_per_s": len(paths) / bare}


PUSHER = r"""
import sys
import pydicom
from pynetdicom import AE
from drivers.dicos_scp import register_dicos_classes
register_dicos_classes()
port, files = int(sys.argv[1]), sys.argv[2:]
datasets = [pydicom.dcmread(f) for f in files]
ae = AE(ae_title="BENCH")
ae.add_requested_context(datasets[0].SOPClassUID, "1.2.840.10008.1.2.1")
print("ready", flush=True)
sys.stdin.readline()
assoc = ae.associate("127.0.0.1", port, ae_title="ZASTAVA")
if not assoc.is_established:
    sys.exit("association failed")
for ds in datasets:
    st = assoc.send_c_store(ds)
    if st.get("Status") != 0:
        sys.exit(f"C-STORE failed: {st}")
assoc.release()
print("done", flush=True)
"""


def start_pusher(port: int, files: list[Path]):
    """The scanner is another process: so is our SCU, which also keeps it off the receiver's GIL."""
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", PUSHER, str(port), *map(str, files)], cwd=HERE.parent,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("pusher failed to start")
    return p


def go(p) -> None:
    p.stdin.write("go\n")
    p.stdin.flush()


def finish(p) -> None:
    out, _ = p.communicate(timeout=600)
    if p.returncode != 0 or "done" not in out:
        raise RuntimeError(f"pusher exited {p.returncode}")


def bench_cstore(imgs: list[np.ndarray]) -> dict:
    from pynetdicom import AE, evt

    with tempfile.TemporaryDirectory() as d:
        files = write_dicos(Path(d), imgs)
        n_pairs = len(files) // 2

        # bare: a pynetdicom SCP that only decodes the pixels (it too must be told the DICOS UIDs)
        register_dicos_classes()
        done = threading.Event()
        count = [0]

        def on_store(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            _ = ds.pixel_array
            count[0] += 1
            if count[0] == len(files):
                done.set()
            return 0x0000

        ae = AE(ae_title="ZASTAVA")
        ae.add_supported_context(pydicom.dcmread(files[0]).SOPClassUID, TRANSFER_SYNTAXES)
        ae.maximum_pdu_size = 65536
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        p = start_pusher(server.server_address[1], files)
        t0 = time.perf_counter()
        go(p)
        done.wait(600)
        bare = time.perf_counter() - t0
        finish(p)
        server.shutdown()

        rows = []
        for name, inbox in (("C-STORE mem", None), ("C-STORE inbox", Path(d) / "inbox")):
            src = DicosScpSource("dicos-scp://127.0.0.1:0?ae=ZASTAVA", queue_size=max(64, 2 * n_pairs + 2),
                                 inbox=inbox)
            p = start_pusher(src.port, files)
            t0 = time.perf_counter()
            go(p)
            dt = drain(src, n_pairs)
            finish(p)
            src.close()
            rows.append({"source": name, "pairs": n_pairs, "pairs_per_s": n_pairs / dt,
                         "images_per_s": 2 * n_pairs / dt, "bare": "pynetdicom SCP + pixel_array",
                         "bare_images_per_s": len(files) / bare})
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    args = ap.parse_args(argv)
    n_pairs = 20 if args.quick else 150
    imgs = images(2 * n_pairs)
    rows = []
    for fn, arg in ((bench_spool, "dicos"), (bench_spool, "png"), (bench_cstore, None)):
        t0 = time.perf_counter()
        got = fn(arg, imgs) if arg else fn(imgs)
        rows.extend(got if isinstance(got, list) else [got])
        print(f"  {rows[-1]['source']}: {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"\nX-ray ingest, {n_pairs} bags of 2 x {H} x {W} uint16 ({'quick' if args.quick else 'full'} run)")
    print(f"{'source':<14} {'bags/s':>8} {'images/s':>9}   {'bare library':<30} {'images/s':>9} {'ours/bare':>9}")
    for r in rows:
        r["ratio"] = r["images_per_s"] / r["bare_images_per_s"]
        print(f"{r['source']:<14} {r['pairs_per_s']:>8.1f} {r['images_per_s']:>9.1f}   {r['bare']:<30} "
              f"{r['bare_images_per_s']:>9.1f} {r['ratio']:>9.2f}")
    out = HERE / "results" / "xray_ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "image": [H, W], "bags": n_pairs,
                               "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
                               "rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                                        for r in rows]}, indent=2))
    print(f"wrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
