"""`zastava requeue`: bags a lane could not screen go back into the spool and are screened again;
what would only fail again stays in bad/ unless asked for."""

from __future__ import annotations

import threading

from drivers.spool import SpoolSource
from tests.conftest import run_zastava, wait_for
from tests.test_driver_xray_spool import FAST, dicos_pair


def test_requeue_puts_unscreened_bags_back_and_the_spool_reads_them_again(tmp_path):
    dicos_pair(tmp_path, "D1", seed=1)
    dicos_pair(tmp_path, "D2", seed=2)
    (tmp_path / "junk.dcs").write_bytes(b"not DICOS at all")
    src = SpoolSource(f"spool://{tmp_path}", **FAST)
    stop = threading.Event()
    gen = src.frames(stop)
    got = []

    def consume(outcomes):  # the lane's side of the handshake: D1 fails once, the rest succeed
        try:
            frame = next(gen)
            while True:
                got.append(frame.bag_id)
                frame = gen.send(outcomes.pop(frame.bag_id, None))
        except StopIteration:  # stopped
            pass

    th = threading.Thread(target=consume, args=({"D1": "OSError: [Errno 28] No space left on device"},), daemon=True)
    th.start()
    try:
        wait_for(lambda: len(list(tmp_path.glob("bad/*.reason.txt"))) == 3 and len(list(tmp_path.glob("done/*"))) == 2,
                 what="D1 and the junk set aside, D2 done")
        dry = run_zastava("requeue", str(tmp_path), "--dry-run")
        assert dry.returncode == 0 and "2 file(s) would be requeued" in dry.stdout, dry.stdout + dry.stderr
        assert "D1_high.dcs (not screened: OSError: [Errno 28] No space left on device)" in dry.stdout
        assert "junk" not in dry.stdout and len(list(tmp_path.glob("bad/*.dcs"))) == 3
        out = run_zastava("requeue", str(tmp_path))
        assert out.returncode == 0 and "2 file(s) requeued" in out.stdout, out.stdout + out.stderr
        assert sorted(p.name for p in tmp_path.glob("bad/*")) == ["junk.dcs", "junk.dcs.reason.txt"]
        # the same files, moved back: a new version for the ledger, so they are read and handed over again
        wait_for(lambda: got.count("D1") == 2 and (tmp_path / "done" / "D1_low.dcs").exists(),
                 what="D1 read again and filed as done")
        named = run_zastava("requeue", str(tmp_path), "junk.dcs")  # named: requeued whatever its reason
        assert "1 file(s) requeued" in named.stdout
        wait_for(lambda: (tmp_path / "bad" / "junk.dcs.reason.txt").exists(), what="the junk refused again")
    finally:
        stop.set()
        src.close()
    assert sorted(got) == ["D1", "D1", "D2"]


def test_requeue_restores_names_skips_what_is_waiting_and_refuses_no_folder(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, reason in (("X_high.dcs.1", "not screened: OSError: boom"), ("Y_high.dcs", "not screened: OSError: boom"),
                         ("Z_high.dcs", "not screened: refused by the detector: high: image too small")):
        (bad / name).write_bytes(b"x")
        (bad / f"{name}.reason.txt").write_text(reason + "\n")
    (tmp_path / "Y_high.dcs").write_bytes(b"waiting")  # the same name already back in the spool
    out = run_zastava("requeue", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "X_high.dcs").exists() and not (bad / "X_high.dcs.1").exists()
    assert "skipped Y_high.dcs" in out.stdout and (bad / "Y_high.dcs").exists()
    assert (bad / "Z_high.dcs").exists(), "refused images stay unless --all"
    assert "1 file(s) requeued, 1 skipped" in out.stdout
    assert "Z_high.dcs" in run_zastava("requeue", str(tmp_path), "--all").stdout
    missing = run_zastava("requeue", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
