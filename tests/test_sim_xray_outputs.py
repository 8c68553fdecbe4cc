"""The simulated scanner's outputs, opened with the clients the agent uses: pydicom, pydicos,
pynetdicom (a real association on loopback), OpenCV's VideoCapture, and a spool folder watched
while files land."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AE, evt

from common.configfile import ConfigError, validate_data
from drivers.dicos import DicosRefused, read_dicos
from drivers.imagefiles import read_image_file
from hw_sim.clock import SimClock
from hw_sim.xray import spool
from hw_sim.xray.cstore import CStorePusher, register_dicos_storage
from hw_sim.xray.dicos import DICOS_DX_FOR_PROCESSING, DICOS_SOP_CLASSES, bag_files, dicos_dataset
from hw_sim.xray.display import pseudocolour
from hw_sim.xray.mjpeg import MjpegServer
from hw_sim.xray.replay import replay_folder, scan_folder
from hw_sim.xray.scene import make_bag

T0 = 1_790_000_000.25


@pytest.fixture(scope="module")
def bag():
    return make_bag(np.random.default_rng(21), "narcotics", bag_id="BAG-21")


def _wait(cond, timeout=20.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- DICOS -------------------------------------------------------------------------------------


def test_dicos_files_follow_the_documented_convention(bag, tmp_path):
    files = bag_files(bag.high, bag.low, bag_id=bag.bag_id, t=T0, seed=5)
    assert sorted(files) == ["BAG-21_high.dcs", "BAG-21_low.dcs"]
    dss = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert data[128:132] == b"DICM"
        dss[name] = pydicom.dcmread(tmp_path / name)
    hi, lo = dss["BAG-21_high.dcs"], dss["BAG-21_low.dcs"]
    for ds, energy, img, kvp in ((hi, "HIGH", bag.high, 160), (lo, "LOW", bag.low, 80)):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == DICOS_DX_FOR_PROCESSING == ds.file_meta.MediaStorageSOPClassUID
        assert ds.Modality == "XRAY" and ds.PatientID == "BAG-21"
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", energy]
        assert float(ds.KVP) == kvp
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 0)
        assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == 0
        assert [float(v) for v in ds.PixelSpacing] == [1.5, 1.5]
        assert ds.DICOSVersion == "V03" and ds[0x4010, 0x103A].value == "V03"
        assert ds.PresentationIntentType == "FOR PROCESSING"
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert UID(uid).is_valid
        assert ds.pixel_array.dtype == np.uint16 and np.array_equal(ds.pixel_array, img)
    assert hi.StudyInstanceUID == lo.StudyInstanceUID and hi.SeriesInstanceUID == lo.SeriesInstanceUID
    assert hi.SOPInstanceUID != lo.SOPInstanceUID
    # the agent's own DICOS reader gets the same pixels, energies and bag id back
    for name, img, energy in (("BAG-21_high.dcs", bag.high, "high"), ("BAG-21_low.dcs", bag.low, "low")):
        got = read_dicos(tmp_path / name)
        assert got.energy == energy and got.bag_id == "BAG-21" and np.array_equal(got.image, img)


def test_dicos_bytes_are_deterministic_per_seed(bag):
    a = bag_files(bag.high, bag.low, bag_id=bag.bag_id, t=T0, seed=5)
    b = bag_files(bag.high, bag.low, bag_id=bag.bag_id, t=T0, seed=5)
    c = bag_files(bag.high, bag.low, bag_id=bag.bag_id, t=T0, seed=6)
    assert a == b and a != c


def test_dicos_writer_refuses_bad_images():
    with pytest.raises(ValueError, match="uint16"):
        dicos_dataset(np.zeros((4, 4), np.float32), "high", bag_id="X", t=T0, seed=0)
    with pytest.raises(ValueError, match="energy"):
        dicos_dataset(np.zeros((4, 4), np.uint16), "mid", bag_id="X", t=T0, seed=0)


def test_pydicos_reads_our_dicos(bag, tmp_path):
    pydicos = pytest.importorskip("pydicos", reason="pydicos (DICOS toolkit) does not import here")
    for name, data in bag_files(bag.high, bag.low, bag_id=bag.bag_id, t=T0, seed=5).items():
        (tmp_path / name).write_bytes(data)
        dx = pydicos.DXLoader()
        dx.read(tmp_path / name)  # raises with the toolkit's error log if it refuses the file
        img = bag.high if name.endswith("_high.dcs") else bag.low
        assert np.array_equal(np.asarray(dx.get_data()), img)


# -- C-STORE -----------------------------------------------------------------------------------


class Receiver:
    """A pynetdicom storage SCP on an ephemeral loopback port that keeps what it receives."""

    def __init__(self, ae_title="RECV", port=0):
        register_dicos_storage()
        self.got: list[pydicom.Dataset] = []
        ae = AE(ae_title=ae_title)
        for uid in DICOS_SOP_CLASSES:
            ae.add_supported_context(uid, ExplicitVRLittleEndian)
        self.server = ae.start_server(("127.0.0.1", port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.port = self.server.server_address[1]

    def _on_store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.got.append(ds)
        return 0x0000

    def close(self):
        self.server.shutdown()


def test_cstore_push_reaches_a_real_scp(bag):
    rx = Receiver()
    pusher = CStorePusher("127.0.0.1", rx.port, "RECV")
    try:
        dss = [dicos_dataset(img, e, bag_id=bag.bag_id, t=T0, seed=1) for e, img in (("high", bag.high),
                                                                                    ("low", bag.low))]
        assert pusher.submit(bag.bag_id, dss)
        assert _wait(lambda: pusher.idle() and len(rx.got) == 2)
        assert pusher.stats.as_dict()["pushed"] == 1
        by_energy = {ds.ImageType[2]: ds for ds in rx.got}
        assert np.array_equal(by_energy["HIGH"].pixel_array, bag.high)
        assert np.array_equal(by_energy["LOW"].pixel_array, bag.low)
        assert by_energy["LOW"].PatientID == bag.bag_id
    finally:
        pusher.close()
        rx.close()


def test_cstore_receiver_down_is_counted_and_logged_not_fatal(bag, caplog):
    port = _free_port()
    pusher = CStorePusher("127.0.0.1", port, "RECV", retries=1, retry_delay_s=0.05, timeout_s=2)
    try:
        ds = dicos_dataset(bag.high, "high", bag_id=bag.bag_id, t=T0, seed=1)
        with caplog.at_level("WARNING", logger="zastava.sim.cstore"):
            pusher.submit("B1", [ds])
            assert _wait(pusher.idle)
        st = pusher.stats.as_dict()
        assert st["failed"] == 1 and st["pushed"] == 0 and st["attempts_failed"] == 2
        assert any("receiver down" in r.getMessage() and f"127.0.0.1:{port}" in r.getMessage()
                   for r in caplog.records)
        # the receiver comes up on that port: the next bag goes through
        rx = Receiver(port=port)
        try:
            pusher.submit("B2", [ds])
            assert _wait(lambda: pusher.idle() and len(rx.got) == 1)
            assert pusher.stats.as_dict()["pushed"] == 1
        finally:
            rx.close()
    finally:
        pusher.close()


# -- MJPEG -------------------------------------------------------------------------------------


def test_mjpeg_stream_opens_in_opencv(bag):
    srv = MjpegServer("127.0.0.1", 0, fps=10)
    try:
        assert srv.host == "127.0.0.1"
        disp = pseudocolour(bag.high, bag.low)
        srv.publish(disp)
        cap = cv2.VideoCapture(srv.url)
        try:
            assert cap.isOpened()
            frames = []
            for _ in range(3):
                ok, frame = cap.read()
                assert ok
                frames.append(frame)
        finally:
            cap.release()
        assert frames[-1].shape == disp.shape
        assert np.abs(frames[-1].astype(int) - disp).mean() < 6  # JPEG, not bit-exact
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/snapshot.jpg", timeout=5) as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            snap = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
            assert snap.shape == disp.shape
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/nothing", timeout=5)
        assert e.value.code == 404
    finally:
        srv.close()


# -- spool ---------------------------------------------------------------------------------------


def test_spool_writes_never_expose_partial_files(tmp_path, bag):
    payloads = {f"B{i:03d}_high.png": spool.png_bytes(np.roll(bag.high, i * 7, axis=1)) for i in range(40)}
    seen_bad: list[str] = []
    checked = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            for name in os.listdir(tmp_path):
                if name.startswith("."):
                    continue
                data = (tmp_path / name).read_bytes()
                checked[0] += 1
                if data != payloads[name]:
                    seen_bad.append(name)

    w = threading.Thread(target=watch)
    w.start()
    try:
        for name, data in payloads.items():
            spool.atomic_write(tmp_path, name, data)
    finally:
        done.set()
        w.join()
    assert not seen_bad and checked[0] > 0
    assert sorted(os.listdir(tmp_path)) == sorted(payloads)  # no .part left behind
    with pytest.raises(ValueError):
        spool.atomic_write(tmp_path, ".hidden", b"x")


def test_png_and_tiff_pairs_read_back_with_the_agent_reader(tmp_path, bag):
    for fmt in ("png", "tiff"):
        files = spool.bag_image_files(bag.high, bag.low, bag.bag_id, fmt)
        for name, data in files.items():
            spool.atomic_write(tmp_path, name, data)
            got = read_image_file(tmp_path / name)
            assert got.bag_id == bag.bag_id and got.energy in ("high", "low")
            assert np.array_equal(got.image, bag.high if got.energy == "high" else bag.low)
        assert files == spool.bag_image_files(bag.high, bag.low, bag.bag_id, fmt)  # deterministic


# -- the device ------------------------------------------------------------------------------------


def _section(tmp_path, **kw):
    from hw_sim.xray.device import ScannerSection

    base = {"bag_interval_s": 1.0, "first_bag_s": 0.0, "contraband_share": 0.5, "bag_id_prefix": "T-",
            "outputs": ["spool_dicos", "spool_png", "mjpeg"], "image_rows": 224, "image_cols": 320}
    return validate_data(ScannerSection, {**base, **kw}, "test", tmp_path)


def test_scanner_device_streams_bags_to_every_output(tmp_path):
    """With the real simulated control link: bag-in/out around each image, no bags while stopped."""
    from drivers.scanner_link import open_link
    from hw_sim.scanner_serial import SerialSection
    from hw_sim.scanner_serial import start as start_serial
    from hw_sim.xray.device import start

    clock = SimClock(20.0)
    serial_dev = start_serial(SerialSection(pty=False, status_interval_s=100.0), seed=9, clock=clock,
                              state_dir=tmp_path)
    link = open_link(serial_dev.urls["control"])
    stop = threading.Event()
    events: list = []
    reader = threading.Thread(target=lambda: events.extend(link.events(stop)), daemon=True)
    reader.start()
    assert _wait(lambda: link.health().connected)
    dev = start(_section(tmp_path, scan_s=0.5), seed=9, clock=clock, state_dir=tmp_path, link=serial_dev, stop=stop)
    try:
        assert set(dev.urls) == {"spool_dicos", "spool_png", "mjpeg"}
        assert dev.urls["mjpeg"].startswith("capture:http://127.0.0.1:")
        dicos_dir = Path(dev.urls["spool_dicos"].removeprefix("spool://"))
        assert _wait(lambda: dev.stats()["bags"] >= 4)
        cap = cv2.VideoCapture(dev.urls["mjpeg"].removeprefix("capture:"))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (224, 320, 3)
        assert link.stop_belt("test: stop the belt")
        n = dev.stats()["bags"]
        assert _wait(lambda: dev.stats()["skipped_belt_stopped"] >= 2)
        assert dev.stats()["bags"] <= n + 1  # at most the bag that was under way
    finally:
        dev.close()
        stop.set()
        link.close()
        serial_dev.close()
        reader.join(timeout=10)
    st = dev.stats()
    truth = [json.loads(x) for x in (tmp_path / "ground_truth.jsonl").read_text().splitlines()]
    assert len(truth) == st["bags"] and st["errors"] == 0
    bag_events = [(e.kind, e.bag_id) for e in events if e.kind in ("bag_in", "bag_out")]
    device_t = [e.data["device_t"] for e in events if e.kind in ("bag_in", "bag_out")]
    # the image is out (bag-out) no sooner than scan_s scenario seconds after bag-in
    assert all(t_out - t_in >= 0.49 for t_in, t_out in zip(device_t[::2], device_t[1::2], strict=False))
    for i, rec in enumerate(truth):
        bid = f"T-{i:06d}"
        assert rec["bag_id"] == bid
        assert bag_events[2 * i:2 * i + 2] == [("bag_in", bid), ("bag_out", bid)]
        hi = read_dicos(dicos_dir / f"{bid}_high.dcs")
        assert hi.bag_id == bid and hi.image.shape == (224, 320)
        assert (tmp_path / "spool/png" / f"{bid}_low.png").exists()
        for o in rec["objects"]:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 224
    assert st["per_class"]["clean"] + sum(1 for r in truth if r["objects"]) == len(truth)
    assert not list(dicos_dir.glob(".*"))


def test_scanner_faults_damage_files_and_stall_the_stream(tmp_path, caplog):
    from hw_sim.xray.device import start

    dev = start(_section(tmp_path, outputs=["spool_dicos"], bag_interval_s=2.0, first_bag_s=1.0), seed=2,
                clock=SimClock(4.0), state_dir=tmp_path, link=None, stop=threading.Event())
    try:
        dicos_dir = Path(dev.urls["spool_dicos"].removeprefix("spool://"))
        dev.inject("truncated_image", 0, {"count": 1})
        assert _wait(lambda: dev.stats()["bags"] >= 1)
        dev.inject("corrupt_image", 0, {"count": 1})
        assert _wait(lambda: dev.stats()["bags"] >= 3)
        dev.inject("no_such_fault", 1, {})
        dev.inject("stall", 1000.0, {})
        assert _wait(lambda: dev.stats()["skipped_stall"] >= 2)
        n = dev.stats()["bags"]
        time.sleep(0.3)
        assert dev.stats()["bags"] == n
    finally:
        dev.close()
    st = dev.stats()
    assert st["files_damaged"] == 4 and st["errors"] == 1
    truth = [json.loads(x) for x in (tmp_path / "ground_truth.jsonl").read_text().splitlines()]
    damaged = {r["bag_id"]: r["damaged"] for r in truth}
    how = list(damaged.values())
    # the first bag was truncated; the corrupt fault hit exactly one later bag (which one depends on
    # whether the next bag was already being made when it was injected)
    assert how[0] == "truncate" and how.count("truncate") == 1 and how[1:].count("corrupt") == 1
    for bid, how in damaged.items():
        for energy in ("high", "low"):
            path = dicos_dir / f"{bid}_{energy}.dcs"
            if how is None:
                read_dicos(path)
            else:
                with pytest.raises(DicosRefused):
                    read_dicos(path)


def test_scanner_section_refuses_bad_keys(tmp_path):
    from hw_sim.xray.device import ScannerSection

    for bad, key in (({"outputs": ["fax"]}, "outputs"), ({"class_mix": {"gold": 1}}, "class_mix"),
                     ({"contraband_share": 2}, "contraband_share"), ({"colour": "red"}, "colour")):
        with pytest.raises(ConfigError) as e:
            validate_data(ScannerSection, bad, "scenario.toml", tmp_path)
        assert key in str(e.value)


# -- replay ------------------------------------------------------------------------------------------


def test_replay_serves_a_folder_in_time_order(tmp_path, bag):
    src, dst = tmp_path / "field", tmp_path / "spool"
    src.mkdir()
    for i, t in enumerate((T0 + 20, T0, T0 + 10)):
        for name, data in bag_files(bag.high, bag.low, bag_id=f"F{i}", t=t, seed=1).items():
            (src / name).write_bytes(data)
    for name, data in spool.bag_image_files(bag.high, bag.low, "P9", "png").items():
        (src / name).write_bytes(data)
        os.utime(src / name, (T0 + 30, T0 + 30))
    (src / "notes.txt").write_text("not an image")
    order = [b.files[0].name.split("_")[0] for b in scan_folder(src)]
    assert order == ["F1", "F2", "F0", "P9"]
    stop = threading.Event()
    t = time.monotonic()
    assert replay_folder(src, dst, speed=100.0, stop=stop) == 4
    assert 0.25 < time.monotonic() - t < 5  # 30 s of field time at 100x
    assert sorted(os.listdir(dst)) == sorted(p.name for p in src.iterdir() if p.suffix != ".txt")
    for p in dst.iterdir():
        assert p.read_bytes() == (src / p.name).read_bytes()
    stop.set()
    assert replay_folder(src, tmp_path / "again", speed=1.0, stop=stop) == 0  # stopped: serves nothing
    with pytest.raises(ValueError):
        replay_folder(tmp_path / "missing", dst)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blobs=st.lists(st.binary(min_size=0, max_size=600), min_size=1, max_size=4),
       names=st.lists(st.sampled_from(["a_high.dcs", "a_low.dcs", "b.dcm", "c_high.png", "d.tif", "e.dicom"]),
                      min_size=1, max_size=4, unique=True))
def test_replay_copes_with_garbage_files(tmp_path_factory, blobs, names):
    """Damaged files from the field are replayed as they are (the agent must refuse them), never a crash."""
    src = tmp_path_factory.mktemp("garbage")
    dst = tmp_path_factory.mktemp("spool")
    for name, blob in zip(names, blobs * 4, strict=False):
        (src / name).write_bytes(b"DICM" + blob if name.endswith(".dcs") else blob)
    written = {p.name for p in src.iterdir()}
    served = replay_folder(src, dst, speed=0)
    assert served >= 1 and {p.name for p in dst.iterdir()} == written


def _zastava(*args, timeout=120):
    exe = Path(sys.executable).with_name("zastava")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)


def test_cli_dataset_writes_labels_with_a_progress_bar(tmp_path):
    r = _zastava("sim", "dataset", "xray", "--count", "3", "--seed", "7", "--out", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    assert "3/3" in r.stderr
    lines = (tmp_path / "ds/labels.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["bag_id"] == "DS7-000000"
    assert json.loads((tmp_path / "ds/dataset.json").read_text())["seed"] == 7


def test_cli_replay_serves_a_folder_and_says_where(tmp_path, bag):
    src = tmp_path / "field"
    src.mkdir()
    for name, data in spool.bag_image_files(bag.high, bag.low, "R1", "png").items():
        (src / name).write_bytes(data)
    r = _zastava("sim", "replay", str(src), "--spool", str(tmp_path / "out"), "--speed", "0")
    assert r.returncode == 0, r.stderr
    ready = json.loads(r.stdout.splitlines()[0])
    assert ready["ready"] and ready["devices"]["scanner"]["spool"] == f"spool://{(tmp_path / 'out').resolve()}"
    assert sorted(os.listdir(tmp_path / "out")) == ["R1_high.png", "R1_low.png"]


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-70000, 70000), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.sampled_from(["spool_dicos", "mjpeg", "fax", 3]), max_size=3),
                    st.dictionaries(st.sampled_from(["narcotics", "weapon", "gold"]), st.floats(-1, 2), max_size=3))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["bag_interval_s", "contraband_share", "class_mix", "outputs", "mjpeg_port",
                                        "cstore_ae", "image_rows", "spool_dicos_dir", "nonsense"]), _VALUES, max_size=5))
def test_scanner_section_fuzz_gives_a_section_or_a_config_error(data):
    from hw_sim.xray.device import ScannerSection

    try:
        sec = validate_data(ScannerSection, data, "scenario.toml", Path("/tmp"))
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) for p in e.problems)
        return
    assert sec.bag_interval_s > 0 and 0 <= sec.contraband_share <= 1
    assert set(sec.outputs) <= {"spool_dicos", "spool_png", "spool_tiff", "cstore", "mjpeg"}


def test_scanner_feeds_the_agents_cstore_receiver_and_spool_reader(tmp_path):
    """End to end over the real contract: the scanner pushes to the agent's dicos-scp:// receiver and
    drops DICOS into the folder the agent's spool:// source watches; both yield each bag's pair with
    the bag id and pixels the ground truth log names."""
    from drivers.registry import open_frame_source
    from hw_sim.xray.dataset import bag_rng
    from hw_sim.xray.device import start
    from hw_sim.xray.scene import choose_contraband

    scp = open_frame_source("dicos-scp://127.0.0.1:0?ae=LANE1")
    sec = _section(tmp_path, outputs=["cstore", "spool_dicos"], cstore_port=scp.port, cstore_ae="LANE1",
                   bag_interval_s=2.0, contraband_share=0.5)
    stop = threading.Event()
    dev = start(sec, seed=31, clock=SimClock(10.0), state_dir=tmp_path, link=None, stop=stop)
    got: dict[str, list] = {"scp": [], "spool": []}
    readers = []
    spool_src = None
    try:
        spool_src = open_frame_source(dev.urls["spool_dicos"], poll_s=0.1, settle_s=0.0, after="keep")
        for name, src in (("scp", scp), ("spool", spool_src)):
            t = threading.Thread(target=lambda n=name, s=src: [got[n].append(f) for f in s.frames(stop)], daemon=True)
            t.start()
            readers.append(t)
        assert _wait(lambda: len(got["scp"]) >= 3 and len(got["spool"]) >= 3, timeout=60)
    finally:
        stop.set()
        dev.close()
        for t in readers:
            t.join(timeout=10)
        scp.close()
        if spool_src is not None:
            spool_src.close()
    assert dev.stats()["cstore"]["failed"] == 0
    for frames in got.values():
        for f in frames[:3]:
            index = int(f.bag_id.removeprefix("T-"))
            rng = bag_rng(31, index)  # the bag regenerated from (seed, index) is the one that arrived
            bag = make_bag(rng, choose_contraband(rng, 0.5), bag_id=f.bag_id, shape=(224, 320))
            assert np.array_equal(f.high, bag.high) and np.array_equal(f.low, bag.low)


def test_mjpeg_stream_feeds_the_agents_capture_source(bag):
    from drivers.registry import open_frame_source

    srv = MjpegServer("127.0.0.1", 0, fps=10)
    srv.publish(pseudocolour(bag.high, bag.low))
    src = open_frame_source(f"capture:{srv.url}")
    stop = threading.Event()
    frames = []
    try:
        for f in src.frames(stop):
            frames.append(f)
            if len(frames) >= 2:
                break
    finally:
        stop.set()
        src.close()
        srv.close()
    assert frames[-1].high.shape == bag.high.shape and frames[-1].high.dtype == np.uint16
