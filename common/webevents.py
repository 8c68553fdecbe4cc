"""Server-Sent Events fan-out shared by the officer console and the command dashboard.

Producers are plain threads (the console's event pump, the dashboard's store poller); consumers are
SSE responses running on uvicorn's asyncio loop. `publish` hands each event to every subscriber's
asyncio.Queue with `loop.call_soon_threadsafe`, so a browser gets an event as soon as it exists (no
polling interval) and no worker thread is parked per open browser. A browser that falls behind loses
its oldest events, never slows the producer or the other browsers; `close()` ends every stream so the
web server can shut down at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator


class _Sub:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int):
        self.loop = loop
        self.q: asyncio.Queue = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, ev: dict | None) -> None:  # runs on the subscriber's loop
        if self.q.full():
            self.q.get_nowait()
            self.dropped += 1
        self.q.put_nowait(ev)


class Fanout:
    def __init__(self, maxsize: int = 512):
        self.maxsize = maxsize
        self._subs: list[_Sub] = []
        self._lock = threading.Lock()
        self.closed = False
        self.published = 0

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._subs)

    @property
    def dropped(self) -> int:
        with self._lock:
            return sum(s.dropped for s in self._subs)

    def publish(self, kind: str, data: dict) -> None:
        """Thread-safe; returns at once."""
        ev = {"type": kind, **data}
        self.published += 1
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(s.put, ev)
            except RuntimeError:  # that subscriber's loop is closed: it is going away
                pass

    def close(self) -> None:
        self.closed = True
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(s.put, None)
            except RuntimeError:
                pass

    async def stream(self, keepalive_s: float = 15.0) -> AsyncIterator[str]:
        """SSE text for one browser; ends when the fan-out closes (Starlette cancels it on disconnect)."""
        sub = _Sub(asyncio.get_running_loop(), self.maxsize)
        with self._lock:
            self._subs.append(sub)
        try:
            yield "retry: 2000\n\n"
            while not self.closed:
                try:
                    ev = await asyncio.wait_for(sub.q.get(), keepalive_s)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if ev is None:
                    break
                yield f"event: {ev['type']}\ndata: {json.dumps(ev, default=str)}\n\n"
        finally:
            with self._lock:
                if sub in self._subs:
                    self._subs.remove(sub)
