"""Shared test plumbing: run real `zastava` processes, find free ports, wait for conditions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zastava_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent", *args]


def run_zastava(*args: str, timeout: float = 60, env: dict | None = None, cwd: Path | None = None):
    return subprocess.run(
        zastava_cmd(*args), capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=cwd or REPO,
    )


def wait_for(cond, timeout: float = 20.0, interval: float = 0.05, what: str = "condition", on_timeout=None):
    """Poll until cond() is truthy; on timeout `on_timeout()` may add what a CI log needs to explain it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    extra = f"\n{on_timeout()}" if on_timeout else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){extra}")


@pytest.fixture
def shared_fixtures() -> Path:
    d = SHARED_FIXTURES / "dicos"
    if not d.is_dir():
        pytest.skip(f"shared DICOS fixtures not present at {d} (they live outside the repo)")
    return d


@pytest.fixture(scope="session")
def pg():
    """One real PostgreSQL server (Debian's packages) for the session; skips, saying why, without it."""
    from tests.pg_rig import not_available_reason, shared_server

    why = not_available_reason()
    if why:
        pytest.skip(why)
    return shared_server()
