"""Durable-file plumbing shared by every part that writes files it must not lose."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a folder's entries (files created, renamed or removed in it) durable: POSIX needs an
    fsync of the folder itself for that, the files' own fsyncs do not cover their names."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync_dir: bool = False) -> None:
    """Write a whole file or none: to a dotfile beside it, fsynced, then renamed over the name (a
    reader never sees half a file, a crash leaves the old one or the new one). sync_dir also makes
    the name durable (fsync_dir), for writes that are acknowledged to someone as kept. A write that
    fails (disk full, the name taken by a folder) leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def _load_syncfs():
    """libc's syncfs(2) (Linux), or None. Python's os module has sync() but not syncfs()."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()


def has_syncfs() -> bool:
    return _SYNCFS is not None


def syncfs(fd: int, what: str = "") -> None:
    """Make everything written on the filesystem of the open file or folder `fd` durable with one
    call: file data, new names and renames alike, in one journal commit. For a batch of hundreds
    of new files this is several times cheaper than an fsync per file plus the folder's
    (bench/bench_sync.py), because each of those forces its own journal commit.

    Errors: since Linux 5.8, syncfs reports writeback errors (EIO, ENOSPC) that happened on the
    filesystem *since `fd` was opened*, so open it before writing the files it must cover.
    Raises OSError on failure."""
    if _SYNCFS is None:
        raise OSError("syncfs is not available on this platform")
    if _SYNCFS(fd) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"syncfs({what or fd}): {os.strerror(e)}")
