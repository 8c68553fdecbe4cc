"""Threads with a heartbeat, joined by bounded queues that count what they drop.

Threads, not processes, by measurement: the hot loops (numpy FFT, onnxruntime inference,
OpenCV decode) release the GIL, so a radio worker and an X-ray worker run on both cores at
once in one process (bench/bench_agent_pipelines.py prints the figures; docs/design.md says
more). A worker whose heartbeat goes stale is 'hung': the supervisor stops the systemd
watchdog pings and systemd restarts the agent.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger("zastava.pipeline")

# Failures of the machine rather than of the input or of our code: a database another process
# holds locked, a disk that is full or refuses a write. They may pass, so what met one is tried
# again, waiting longer each time, for up to storage.retry_s (xray_lane, radio).
TRANSIENT = (OSError, sqlite3.OperationalError)
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0


def retry_delay(failures: int) -> float:
    """The wait before the next attempt after this many failures: 1, 2, 4 ... s, at most 30."""
    return min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S)


class DropQueue:
    """A bounded queue: a producer that cannot wait (live IQ, live video) drops and counts."""

    def __init__(self, maxsize: int):
        self.q: queue.Queue = queue.Queue(maxsize)
        self.dropped = 0
        self.passed = 0

    def put(self, item, block_s: float = 0.0) -> bool:
        try:
            if block_s > 0:
                self.q.put(item, timeout=block_s)
            else:
                self.q.put_nowait(item)
            self.passed += 1
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def get(self, timeout: float):
        return self.q.get(timeout=timeout)

    def qsize(self) -> int:
        return self.q.qsize()


class Worker:
    """A named loop thread; `step()` is called until stop, and must return within ~1 s."""

    def __init__(self, name: str, step: Callable[[], None], stop: threading.Event, on_error: Callable | None = None):
        self.name = name
        self.step = step
        self.stop = stop
        self.on_error = on_error
        self.beat = time.monotonic()
        self.errors = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Worker:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            self.beat = time.monotonic()
            try:
                self.step()
            except Exception as e:  # a bad item must not end the pipeline: log, count, go on
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("%s: error (%d so far)", self.name, self.errors)
                if self.on_error:
                    self.on_error(e)
                self.stop.wait(0.2)
        self.beat = time.monotonic()

    def age(self) -> float:
        return 0.0 if not self.thread.is_alive() and self.stop.is_set() else time.monotonic() - self.beat

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)


class Receipt:
    """The consumer's word on one handed-over item (pump's handshake): set() when its results are
    committed, set(failure) when they could not be. Either way the pump goes on, and a driver
    that keeps the item's source (a spool) learns which: a bag nobody screened is set aside with
    its reason, never filed as done."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.failure: str | None = None

    def set(self, failure: str | None = None) -> None:
        self.failure = failure
        self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def pump(name: str, iterator_factory: Callable, out: DropQueue, stop: threading.Event, block_s: float,
         handshake: bool = False) -> threading.Thread:
    """Move items from a driver's iterator into a queue in a thread of their own.

    Queue entries are (item, receipt, arrival monotonic time) triples. With `handshake`, the pump
    waits for the consumer's Receipt before it resumes the driver's iterator: a spool driver
    records a file as processed when its iterator is resumed, so this makes 'processed' mean 'its
    alerts are committed' and a crash can only cause a re-read, never a lost bag. A failure the
    consumer reports is sent into the iterator (generator.send) as the value of its `yield`: a
    driver that cares sets the item aside; one that does not ignores it.

    Drivers block inside their iterators (a quiet spool, a socket read), so the source side is
    not watched by the watchdog; the driver's own health reports stalls instead.
    """

    def run() -> None:
        while not stop.is_set():
            try:
                it = iter(iterator_factory(stop))
                send = getattr(it, "send", None)
                failure = None
                while True:
                    try:
                        item = send(failure) if failure is not None and send else next(it)
                    except StopIteration:
                        break
                    failure = None
                    if stop.is_set():
                        break
                    done = Receipt() if handshake else None
                    if out.put((item, done, time.monotonic()), block_s) and done is not None:
                        while not done.wait(0.5):
                            if stop.is_set():
                                return  # not acknowledged: the driver will offer it again
                        failure = done.failure
            except Exception:
                log.exception("%s: driver iterator failed; restarting it", name)
                stop.wait(1.0)
                continue
            if not stop.is_set():
                stop.wait(0.5)

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t
