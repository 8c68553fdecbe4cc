"""Durable-file plumbing shared by every part that writes files it must not lose."""

from __future__ import annotations

import os


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a folder's entries (files created, renamed or removed in it) durable: POSIX needs an
    fsync of the folder itself for that, the files' own fsyncs do not cover their names."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
