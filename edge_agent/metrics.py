"""Prometheus metrics of the running agent, from the same state the console shows."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("zastava.metrics")


class AgentCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict]):
        self.snapshot = snapshot

    def collect(self):
        s = self.snapshot()
        up = GaugeMetricFamily("zastava_device_up", "1 if the device is connected", labels=["device", "role"])
        items = CounterMetricFamily("zastava_device_items", "frames or IQ blocks received", labels=["device"])
        errs = CounterMetricFamily("zastava_device_errors", "bad input and I/O errors", labels=["device"])
        drops = CounterMetricFamily("zastava_device_drops", "items the driver dropped", labels=["device"])
        recon = CounterMetricFamily("zastava_device_reconnects", "reconnections", labels=["device"])
        for dev, h in s["devices"].items():
            up.add_metric([dev, h.get("role", "")], 1.0 if h.get("connected") else 0.0)
            items.add_metric([dev], h.get("items", 0))
            errs.add_metric([dev], h.get("errors", 0))
            drops.add_metric([dev], h.get("drops", 0))
            recon.add_metric([dev], h.get("reconnects", 0))
        yield from (up, items, errs, drops, recon)
        pc = CounterMetricFamily("zastava_pipeline_total", "pipeline counters", labels=["pipeline", "counter"])
        pg = GaugeMetricFamily("zastava_pipeline_gauge", "pipeline gauges", labels=["pipeline", "gauge"])
        for pid, rep in s["pipelines"].items():
            for k, v in rep.items():
                if not isinstance(v, int | float) or isinstance(v, bool) or v is None:
                    continue
                if k in ("queue",) or k.startswith("latency") or k.endswith("_age_s"):
                    pg.add_metric([pid, k], float(v))
                else:
                    pc.add_metric([pid, k], float(v))
        yield from (pc, pg)
        disk = s.get("storage") or {}
        if "free_bytes" in disk:
            yield GaugeMetricFamily("zastava_disk_free_bytes", "free on storage.dir's file system",
                                    value=float(disk["free_bytes"]))
            yield GaugeMetricFamily("zastava_disk_min_free_bytes", "storage.min_free_mb: retention keeps this free",
                                    value=float(disk["min_free_bytes"]))
            yield CounterMetricFamily("zastava_disk_deleted_for_room", "files the supervisor deleted to keep the "
                                      "floor (the lanes' own: the pipelines' deleted_for_disk)",
                                      value=float(disk.get("deleted_for_disk", 0)))
        c = s.get("clock") or {}
        if c:
            yield GaugeMetricFamily("zastava_clock_synced", "1 if the kernel says a time daemon keeps the clock",
                                    value=1.0 if c.get("synced") else 0.0)
            if c.get("offset_s") is not None:
                yield GaugeMetricFamily("zastava_clock_offset_seconds", "central's clock minus this box's, as the "
                                        "link last measured it", value=float(c["offset_s"]))
        link = s["link"]
        yield GaugeMetricFamily("zastava_central_connected", "1 if the link to central is up",
                                value=1.0 if link.get("connected") else 0.0)
        yield GaugeMetricFamily("zastava_outbox_backlog", "messages not yet acknowledged by central",
                                value=float(s.get("backlog", 0)))
        yield GaugeMetricFamily("zastava_uptime_seconds", "agent uptime", value=s["uptime_s"])


def serve(bind: str, snapshot: Callable[[], dict]):
    host, _, port = bind.rpartition(":")
    REGISTRY.register(AgentCollector(snapshot))
    server, thread = start_http_server(int(port), addr=host)
    log.info("metrics on http://%s/metrics", bind)
    return server
