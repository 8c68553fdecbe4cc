"""Shared test plumbing: run real `zastava` processes, find free ports, wait for conditions."""

from __future__ import annotations

import os
import shutil
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


_LOCKER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("ROLLBACK")
"""


def hold_sqlite_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process holding a SQLite database's write lock (as an engineer's sqlite3 shell or a
    tool would) for `seconds`; returns once the lock is taken. The process exits 0 when it lets go."""
    p = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "locked":
        p.kill()
        raise AssertionError(f"could not lock {path}: {line!r}")
    return p


class NotifyListener:
    """A real sd_notify socket, as systemd gives a Type=notify service: collects (monotonic time,
    message) in a thread of its own. `env` is what the service needs to talk to it."""

    def __init__(self, path: Path, watchdog_s: float = 30.0):
        import threading

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
        self.notes: list[tuple[float, str]] = []
        self._on = threading.Event()
        self._on.set()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while self._on.is_set():
            try:
                self.notes.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def longest_silence(self, t0: float, t1: float) -> float:
        """The longest stretch between t0 and t1 without a WATCHDOG=1 ping."""
        pings = [t for t, m in self.notes if m == "WATCHDOG=1" and t0 <= t <= t1]
        edges = [t0, *pings, t1]
        return max(b - a for a, b in zip(edges, edges[1:], strict=False))

    def close(self) -> None:
        self._on.clear()
        self._thread.join(2)
        self.sock.close()


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


def shift_clock(tmp: Path, shift_s: float) -> tuple[dict, Path]:
    """A wrong wall clock for a child process (tests/shift_clock.c, built here with gcc): returns the
    environment that gives it one `shift_s` seconds off, and the file whose number the test rewrites
    to step that clock (read again within 0.2 s). The monotonic clock is left alone."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (apt-get install gcc): it builds the clock shift tests/shift_clock.c")
    so = tmp / "shift_clock.so"
    if not so.exists():
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(so), str(Path(__file__).parent / "shift_clock.c"),
                        "-ldl"], check=True, capture_output=True)
    f = tmp / "clock_shift_s"
    f.write_text(repr(float(shift_s)))
    return {"LD_PRELOAD": str(so), "SHIFT_CLOCK_FILE": str(f)}, f
