"""Make and inspect CurveZMQ key pairs for checkpoints and hubs.

  zastava keys new --name checkpoint-01 --dir DIR   -> DIR/checkpoint-01.key (public, give to central)
                                                       DIR/checkpoint-01.key_secret (mode 0600, stays)
  zastava keys show FILE                            -> the Z85 public key in a key file

Files are zmq.auth certificate files (the same format as zmq.auth.create_certificates), so
pyzmq's loaders and any other ZeroMQ tooling read them. The hub admits a checkpoint by finding
its public key file, named after the checkpoint id, in its checkpoints directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sync.wire import ID_RE


def make_keypair(directory: str | Path, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret in `directory`; returns (public, secret) paths.

    The secret file is created 0600 from the start (umask 077 during creation), so there is no
    moment when another user could read it.
    """
    import zmq.auth

    if not ID_RE.match(name):
        raise ValueError(f"key name {name!r}: use letters, digits, '.', '_', ':' or '-' (it is the checkpoint id)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    pub, sec = d / f"{name}.key", d / f"{name}.key_secret"
    if not overwrite and (pub.exists() or sec.exists()):
        raise FileExistsError(f"{pub} or {sec} already exists (use --force to replace)")
    old = os.umask(0o077)
    try:
        pub_s, sec_s = zmq.auth.create_certificates(str(d), name)
    finally:
        os.umask(old)
    os.chmod(sec_s, 0o600)
    os.chmod(pub_s, 0o644)
    return Path(pub_s), Path(sec_s)


def load_public(path: str | Path) -> bytes:
    """The Z85 public key in a key file (public or secret file)."""
    import zmq.auth

    pub, _ = zmq.auth.load_certificate(str(path))
    return pub


def load_pair(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a secret key file; ValueError if it holds no secret key."""
    import zmq.auth

    p = Path(path)
    pub, sec = zmq.auth.load_certificate(str(p))
    if sec is None:
        raise ValueError(f"{p}: holds no secret key (use the .key_secret file)")
    return pub, sec


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    n = sub.add_parser("new", help="make a key pair")
    n.add_argument("--name", required=True, help="checkpoint id or hub name")
    n.add_argument("--dir", required=True, type=Path, help="folder to write the two files into")
    n.add_argument("--force", action="store_true", help="replace existing files")
    s = sub.add_parser("show", help="print the public key of a key file")
    s.add_argument("file", type=Path)


def run(args: argparse.Namespace) -> int:
    if args.action == "new":
        try:
            pub, sec = make_keypair(args.dir, args.name, overwrite=args.force)
        except (ValueError, FileExistsError) as e:
            print(f"zastava keys: {e}", file=sys.stderr)
            return 2
        print(f"public key: {pub}  (copy to the hub's checkpoints directory / the agents' config)")
        print(f"secret key: {sec}  (mode 0600; never leaves this machine)")
        return 0
    try:
        print(load_public(args.file).decode())
    except (OSError, ValueError) as e:
        print(f"zastava keys: {args.file}: {e}", file=sys.stderr)
        return 2
    return 0
