"""dicos-scp:// against real DICOM peers: a pynetdicom SCU, and dcmtk's storescu when installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import numpy as np
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE

from drivers.dicos import DICOS_DX_PROCESSING, DX_PROCESSING
from drivers.dicos_scp import DicosScpSource, parse_url
from drivers.registry import open_frame_source
from tests.conftest import wait_for
from tests.test_dicos import bag_image, make_dx

DICOS_CT = "1.2.840.10008.5.1.4.1.1.501.1"
DICOM_CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(params=["memory", "inbox"])
def scp(request, tmp_path):
    """The receiver holding images in memory, and writing them to an inbox (as the agent runs it)."""
    opts = {"inbox": tmp_path / "inbox"} if request.param == "inbox" else {}
    src = open_frame_source("dicos-scp://127.0.0.1:0?ae=ZASTAVA", pair_timeout_s=0.5, **opts)
    yield src
    src.close()


class Taker:
    def __init__(self, src):
        self.stop = threading.Event()
        self.frames: list = []
        self.thread = threading.Thread(target=lambda: [self.frames.append(f) for f in src.frames(self.stop)],
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def scu(port: int, contexts: list[tuple[str, str]], called: str = "ZASTAVA"):
    ae = AE(ae_title="SCANNER")
    for uid, ts in contexts:
        ae.add_requested_context(uid, ts)
    return ae.associate("127.0.0.1", port, ae_title=called)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                                RLELossless])
def test_a_pair_pushed_by_pynetdicom_becomes_one_frame(scp, ts):
    t = Taker(scp)
    study, series = generate_uid(), generate_uid()
    hi, lo = bag_image(seed=1), bag_image(seed=2)
    assoc = scu(scp.port, [(DICOS_DX_PROCESSING, ts)])
    try:
        assert assoc.is_established
        for energy, img in (("low", lo), ("high", hi)):
            ds = make_dx(img, energy=energy, study=study, series=series, bag_id="SCP1", ts=ts)
            if ts not in (ExplicitVRLittleEndian, RLELossless):
                ds.file_meta.TransferSyntaxUID = ts
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    try:
        wait_for(lambda: t.frames, what="the paired frame")
        f = t.frames[0]
        assert f.bag_id == "SCP1" and np.array_equal(f.high, hi) and np.array_equal(f.low, lo)
        assert f.source.startswith("dicos-scp://") and f.meta["format"] == "dicos"
        assert scp.stats()["pairs"] == 1 and scp.health().items == 1
    finally:
        t.close()


def test_unsupported_classes_and_transfer_syntaxes_are_rejected_per_context(scp):
    assoc = scu(scp.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian), (DICOM_CT, ExplicitVRLittleEndian),
                           (DX_PROCESSING, JPEG2000Lossless)])
    try:
        assert assoc.is_established
        accepted = {c.abstract_syntax for c in assoc.accepted_contexts}
        rejected = {c.abstract_syntax: c.result for c in assoc.rejected_contexts}
        assert accepted == {DICOS_DX_PROCESSING}
        assert rejected[DICOM_CT] == 0x03  # abstract syntax not supported
        assert rejected[DX_PROCESSING] == 0x04  # transfer syntax not supported
        with pytest.raises(ValueError):
            assoc.send_c_store(make_dx(bag_image(), sop_class=DICOM_CT))
    finally:
        assoc.release()


def test_non_dx_dicos_gets_a_dimse_refusal_with_the_reason(scp):
    assoc = scu(scp.port, [(DICOS_CT, ExplicitVRLittleEndian), (DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
    try:
        st = assoc.send_c_store(make_dx(bag_image(), sop_class=DICOS_CT))
        assert st.Status == 0xC000 and "not a DX image" in st.ErrorComment
        bad = make_dx(bag_image(), energy=None)
        bad.PixelData = bad.PixelData[:-64]  # truncated pixel data
        st = assoc.send_c_store(bad)
        assert st.Status == 0xC000 and "pixel data" in st.ErrorComment
        # the association and the receiver carry on
        assert assoc.send_c_store(make_dx(bag_image(), energy=None)).Status == 0x0000
    finally:
        assoc.release()
    assert scp.stats()["refused"] == 2 and scp.health().errors == 2


def test_size_cap_refuses_and_aborts_a_huge_push():
    src = DicosScpSource("dicos-scp://127.0.0.1:0?ae=ZASTAVA", max_dataset_mb=0.01, max_pdu=16384)
    try:
        assoc = scu(src.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
        st = assoc.send_c_store(make_dx(bag_image(80, 80)))  # 12.8 kB over a 10 kB cap
        assert st.Status == 0xA700
        # far over the cap: cut off while arriving, never held in memory whole
        big = make_dx(np.full((1200, 1200), 30000, np.uint16))
        assoc.send_c_store(big)
        wait_for(lambda: assoc.is_aborted, what="association aborted")
        s = src.stats()
        assert s["too_big"] == 1 and s["aborted"] >= 1
        # a fresh association works
        assoc2 = scu(src.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
        assert assoc2.send_c_store(make_dx(bag_image(16, 16), energy=None)).Status == 0x0000
        assoc2.release()
    finally:
        src.close()


def test_wrong_called_ae_title_is_rejected(scp):
    assoc = scu(scp.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)], called="SOMEONEELSE")
    assert assoc.is_rejected


def test_full_queue_answers_busy_instead_of_dropping():
    src = DicosScpSource("dicos-scp://127.0.0.1:0?ae=ZASTAVA", queue_size=1)
    try:
        assoc = scu(src.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
        assert assoc.send_c_store(make_dx(bag_image(16, 16), energy=None)).Status == 0x0000
        st = assoc.send_c_store(make_dx(bag_image(16, 16), energy=None))
        assert st.Status == 0xA700 and "busy" in st.ErrorComment
        assoc.release()
        t = Taker(src)
        wait_for(lambda: t.frames, what="the queued frame")
        t.close()
        assert src.health().drops == 1
    finally:
        src.close()


def test_lone_energy_goes_out_after_the_pair_timeout(scp):
    t = Taker(scp)
    assoc = scu(scp.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
    assoc.send_c_store(make_dx(bag_image(), energy="low", bag_id="LONE"))
    assoc.release()
    try:
        wait_for(lambda: t.frames, what="the lone low frame")
        assert t.frames[0].meta["energy"] == "low" and "no partner" in t.frames[0].meta["pairing"]
    finally:
        t.close()


def test_url_parsing():
    assert parse_url("dicos-scp://127.0.0.1:11112?ae=ZASTAVA") == ("127.0.0.1", 11112, "ZASTAVA")
    assert parse_url("dicos-scp://") == ("127.0.0.1", 11112, "ZASTAVA")
    with pytest.raises(ValueError, match="ae must be"):
        parse_url("dicos-scp://127.0.0.1:1?ae=THIS_TITLE_IS_FAR_TOO_LONG")


def test_shared_jpeg_lossless_fixture_over_c_store(scp, shared_fixtures):
    import pydicom

    t = Taker(scp)
    ds = pydicom.dcmread(shared_fixtures / "python_DXFiles_SimplePresentationDX.dcs")
    assoc = scu(scp.port, [(ds.SOPClassUID, JPEGLosslessSV1)])
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
        tdr = pydicom.dcmread(shared_fixtures / "python_TDRFiles_SimpleBaggageTDR.dcs")
        assoc2_ctx = [(tdr.SOPClassUID, tdr.file_meta.TransferSyntaxUID)]
    finally:
        assoc.release()
    assoc2 = scu(scp.port, assoc2_ctx)
    try:
        st = assoc2.send_c_store(tdr)
        assert st.Status == 0xC000 and "threat detection report" in st.ErrorComment
    finally:
        assoc2.release()
    try:
        wait_for(lambda: t.frames, what="the JPEG Lossless frame")
        assert t.frames[0].high.shape == (128, 256)
    finally:
        t.close()


def dcmtk_storescu() -> str | None:
    """dcmtk's storescu on PATH; pynetdicom installs a `storescu` too, which is not the independent peer."""
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
        exe = shutil.which("storescu", path=d)
        if exe:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
            if "dcmtk" in out:
                return exe
    return None


STORESCU = dcmtk_storescu()


@pytest.mark.skipif(STORESCU is None, reason="dcmtk's storescu is not installed (Debian package dcmtk; "
                                             "`make system-deps` installs it)")
def test_dcmtk_storescu_pushes_a_pair(scp, tmp_path):
    t = Taker(scp)
    study, series = generate_uid(), generate_uid()
    hi, lo = bag_image(seed=3), bag_image(seed=4)
    for energy, img in (("high", hi), ("low", lo)):
        make_dx(img, energy=energy, study=study, series=series, bag_id="DCMTK1").save_as(
            tmp_path / f"DCMTK1_{energy}.dcs", enforce_file_format=True)
    ct = make_dx(bag_image(), sop_class=DICOS_CT)
    ct.save_as(tmp_path / "ct.dcs", enforce_file_format=True)
    r = subprocess.run([STORESCU, "-R", "-aet", "SCANNER", "-aec", "ZASTAVA", "127.0.0.1", str(scp.port),
                        str(tmp_path / "DCMTK1_high.dcs"), str(tmp_path / "DCMTK1_low.dcs"), str(tmp_path / "ct.dcs")],
                       capture_output=True, text=True, timeout=30)
    assert "0006:0208" not in r.stderr  # every context was accepted
    assert "C000" in r.stderr.upper() or r.returncode != 0  # the CT was refused, and storescu said so
    try:
        wait_for(lambda: t.frames, what="dcmtk's pair")
        f = t.frames[0]
        assert f.bag_id == "DCMTK1" and np.array_equal(f.high, hi) and np.array_equal(f.low, lo)
    finally:
        t.close()


def test_c_echo_is_answered(scp):
    assoc = scu(scp.port, [("1.2.840.10008.1.1", ExplicitVRLittleEndian)])
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_garbage_on_the_dicom_port_does_not_hurt_the_receiver(scp):
    import os
    import socket

    for junk in (os.urandom(3000), b"\x01\x00" + b"\xff" * 64, b"GET / HTTP/1.0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(2)
            try:
                s.recv(100)  # an A-ABORT or a closed connection, whatever the peer makes of it
            except OSError:
                pass
    assoc = scu(scp.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
    try:
        assert assoc.send_c_store(make_dx(bag_image(16, 16), energy=None)).Status == 0x0000
    finally:
        assoc.release()


def test_a_taken_port_is_retried_not_raised():
    import socket

    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    src = DicosScpSource(f"dicos-scp://127.0.0.1:{port}?ae=ZASTAVA")
    try:
        h = src.health()
        assert not h.connected and "cannot listen" in h.last_error
        t = Taker(src)
        holder.close()  # the old process lets go of the port
        wait_for(lambda: src.server is not None, timeout=20, what="listening after the port came free")
        assoc = scu(port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
        assert assoc.send_c_store(make_dx(bag_image(16, 16), energy=None)).Status == 0x0000
        assoc.release()
        wait_for(lambda: t.frames, what="the frame")
        t.close()
    finally:
        holder.close()
        src.close()


def push_pair(port: int, bag: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    study, series = generate_uid(), generate_uid()
    hi, lo = bag_image(seed=seed), bag_image(seed=seed + 1)
    assoc = scu(port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
    try:
        for energy, img in (("high", hi), ("low", lo)):
            ds = make_dx(img, energy=energy, study=study, series=series, bag_id=bag)
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    return hi, lo


def test_an_inbox_keeps_acknowledged_images_until_they_are_screened(tmp_path):
    """Success to the scanner means the image is on disk: a receiver that stops (a crash) before
    handing the bag over loses nothing, the next one on the same inbox screens it, and only then
    are the images deleted from the inbox."""
    inbox = tmp_path / "inbox"
    first = DicosScpSource("dicos-scp://127.0.0.1:0?ae=ZASTAVA", inbox=inbox, pair_timeout_s=0.5)
    try:
        hi, lo = push_pair(first.port, "KEPT")
        assert len(list(inbox.glob("*.dcs"))) == 2, "both images written before success was answered"
        assert first.stats()["queued"] == 2
    finally:
        first.close()  # never handed over: as if the agent had died here
    again = open_frame_source(f"dicos-scp://127.0.0.1:0?ae=ZASTAVA&inbox={inbox}", pair_timeout_s=0.5)
    t = Taker(again)
    try:
        wait_for(lambda: t.frames, what="the bag received before the crash")
        f = t.frames[0]
        assert f.bag_id == "KEPT" and np.array_equal(f.high, hi) and np.array_equal(f.low, lo)
        assert f.source.startswith("dicos-scp://") and again.stats()["pairs"] == 1
        wait_for(lambda: not list(inbox.glob("*.dcs")), what="the screened images deleted from the inbox")
        push_pair(again.port, "NEXT", seed=5)
        wait_for(lambda: len(t.frames) == 2, what="a bag pushed to the new receiver")
        assert [f.bag_id for f in t.frames] == ["KEPT", "NEXT"]
    finally:
        t.close()
        again.close()


def test_an_inbox_sets_aside_a_bag_the_consumer_could_not_screen(tmp_path):
    inbox = tmp_path / "inbox"
    src = DicosScpSource("dicos-scp://127.0.0.1:0?ae=ZASTAVA", inbox=inbox, pair_timeout_s=0.5)
    stop = threading.Event()
    gen = src.frames(stop)
    got = []

    def consume():  # the pump's handshake, by hand: take the frame, then report that it failed
        got.append(next(gen))
        try:
            gen.send("OSError: disk full")
        except StopIteration:
            pass

    th = threading.Thread(target=consume, daemon=True)
    th.start()
    try:
        push_pair(src.port, "FAILS")
        wait_for(lambda: len(list((inbox / "bad").glob("*.dcs"))) == 2, what="the bag set aside")
        reasons = {p.read_text().strip() for p in (inbox / "bad").glob("*.reason.txt")}
        assert reasons == {"not screened: OSError: disk full"}
        assert got[0].bag_id == "FAILS" and not list(inbox.glob("*.dcs"))
    finally:
        stop.set()
        th.join(5)
        src.close()


def test_an_image_the_inbox_cannot_keep_is_not_acknowledged(tmp_path):
    """Success only for what is on disk: when the inbox cannot take an image (here its name is
    taken by a folder; a full disk fails the same way) the scanner hears 0xA700 and keeps it; its
    retry succeeds once the fault is cleared, and no temporary file is left either way."""
    inbox = tmp_path / "inbox"
    src = DicosScpSource("dicos-scp://127.0.0.1:0?ae=ZASTAVA", inbox=inbox)
    uid = generate_uid()
    (inbox / f"{uid}.dcs" / "taken").mkdir(parents=True)
    assoc = scu(src.port, [(DICOS_DX_PROCESSING, ExplicitVRLittleEndian)])
    try:
        st = assoc.send_c_store(make_dx(bag_image(), energy=None, bag_id="RETRY", sop_uid=uid))
        assert st.Status == 0xA700 and "retry later" in st.ErrorComment
        assert "cannot write to the inbox" in src.health().last_error
        shutil.rmtree(inbox / f"{uid}.dcs")
        assert assoc.send_c_store(make_dx(bag_image(), energy=None, bag_id="RETRY", sop_uid=uid)).Status == 0x0000
    finally:
        assoc.release()
        src.close()
    assert [p.name for p in inbox.iterdir() if not p.name.startswith(".zastava")] == [f"{uid}.dcs"]
