"""`zastava keys`: key files zmq.auth can read, secret files private, bad names refused."""

from __future__ import annotations

import stat

import zmq
import zmq.auth

from sync.keys import load_pair, make_keypair
from tests.conftest import run_zastava


def test_keys_new_writes_zmq_certificates_with_a_private_secret(tmp_path):
    r = run_zastava("keys", "new", "--name", "checkpoint-01", "--dir", str(tmp_path / "k"))
    assert r.returncode == 0, r.stderr
    pub, sec = tmp_path / "k" / "checkpoint-01.key", tmp_path / "k" / "checkpoint-01.key_secret"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    p1, s1 = zmq.auth.load_certificate(str(pub))
    p2, s2 = zmq.auth.load_certificate(str(sec))
    assert s1 is None and p1 == p2 and s2 is not None and len(s2) == 40
    assert zmq.curve_public(s2) == p2  # the pair really belongs together
    shown = run_zastava("keys", "show", str(pub))
    assert shown.returncode == 0 and shown.stdout.strip() == p1.decode()
    # existing files are never silently replaced
    again = run_zastava("keys", "new", "--name", "checkpoint-01", "--dir", str(tmp_path / "k"))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert zmq.auth.load_certificate(str(sec))[1] == s2


def test_bad_names_and_public_files_are_refused(tmp_path):
    r = run_zastava("keys", "new", "--name", "../evil", "--dir", str(tmp_path))
    assert r.returncode == 2 and "key name" in r.stderr
    pub, _ = make_keypair(tmp_path, "hub")
    try:
        load_pair(pub)
    except ValueError as e:
        assert "no secret key" in str(e)
    else:
        raise AssertionError("a public key file must not load as a pair")
    missing = run_zastava("keys", "show", str(tmp_path / "nope.key"))
    assert missing.returncode == 2
