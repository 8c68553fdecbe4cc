"""A TCP relay in front of central command whose outages a scenario schedules.

The checkpoint's uplink is the one 'device' the simulator cannot emulate by itself, so the
scenario puts this relay between the agent and the hub: during an outage every relayed
connection is cut and new ones are refused, as when a checkpoint's link goes down.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading

from pydantic import Field

from common.configfile import Strict
from hw_sim.clock import SimClock

log = logging.getLogger("zastava.sim.link")


class Outage(Strict):
    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)


class LinkProxySection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, lt=65536, description="0 = ephemeral")
    target: str = Field("127.0.0.1:7100", description="central hub host:port")
    outages: list[Outage] = []


class LinkProxy:
    def __init__(self, section: LinkProxySection, clock: SimClock, stop: threading.Event):
        self.section = section
        self.clock = clock
        self.stop = stop
        th, _, tp = section.target.rpartition(":")
        self.target = (th, int(tp))
        self.lsock = socket.create_server((section.host, section.port))
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.urls = {"endpoint": f"tcp://{section.host}:{self.port}"}
        self.down = threading.Event()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.counters = {"connections": 0, "refused": 0, "cut": 0, "bytes_up": 0, "bytes_down": 0}
        self._closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="sim-linkproxy", daemon=True)
        self.thread.start()
        for o in section.outages:
            threading.Thread(target=self._scheduled, args=(o,), daemon=True).start()

    def _scheduled(self, o: Outage) -> None:
        if self.clock.sleep_until(o.at_s, self._closed):
            self.inject("outage", o.duration_s, {})

    def inject(self, kind: str, duration_s: float, params: dict) -> None:
        if kind != "outage":
            log.warning("central_link: unknown fault %r", kind)
            return
        log.info("central link DOWN for %gs (scenario time)", duration_s)
        self.down.set()
        self._cut_all()

        def restore():
            self.clock.sleep(duration_s, self._closed)
            self.down.clear()
            log.info("central link UP")

        threading.Thread(target=restore, daemon=True).start()

    def _cut_all(self) -> None:
        with self.lock:
            for a, b in self.pairs:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass
                self.counters["cut"] += 1
            self.pairs.clear()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.lsock, selectors.EVENT_READ, None)
        while not self._closed.is_set():
            for key, _ in sel.select(timeout=0.2):
                if key.data is None:
                    try:
                        client, _ = self.lsock.accept()
                    except OSError:
                        continue
                    if self.down.is_set():
                        self.counters["refused"] += 1
                        client.close()
                        continue
                    try:
                        upstream = socket.create_connection(self.target, timeout=2)
                    except OSError as e:
                        log.info("central link: hub %s unreachable: %s", self.section.target, e)
                        client.close()
                        continue
                    self.counters["connections"] += 1
                    for s in (client, upstream):
                        s.setblocking(False)
                    with self.lock:
                        self.pairs.append((client, upstream))
                    sel.register(client, selectors.EVENT_READ, (upstream, "bytes_up"))
                    sel.register(upstream, selectors.EVENT_READ, (client, "bytes_down"))
                else:
                    src = key.fileobj
                    dst, counter = key.data
                    try:
                        data = src.recv(65536)
                        if data:
                            dst.sendall(data)
                            self.counters[counter] += len(data)
                            continue
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        pass
                    self._drop(sel, src, dst)
            # unregister sockets closed by an outage
            for key in list(sel.get_map().values()):
                if key.data is not None and key.fileobj.fileno() < 0:
                    sel.unregister(key.fileobj)
        sel.close()

    def _drop(self, sel, a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.close()
            except OSError:
                pass
        with self.lock:
            self.pairs = [p for p in self.pairs if a not in p]

    def stats(self) -> dict:
        return dict(self.counters, down=self.down.is_set())

    def close(self) -> None:
        self._closed.set()
        self.thread.join(timeout=2)
        self._cut_all()
        self.lsock.close()


def start(section: LinkProxySection, *, clock: SimClock, stop: threading.Event) -> LinkProxy:
    return LinkProxy(section, clock, stop)
