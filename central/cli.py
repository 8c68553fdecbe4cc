"""Central command: the hub that receives alerts from checkpoints, and downlink documents.

  zastava central --config central.toml                 run the hub (systemd Type=notify)
  zastava central send --config central.toml --kind watchlist --file wl.json --to CP-01,CP-02
  zastava central status --config central.toml          checkpoints: last seen, backlog, skew (a clock
                                                        2 s or more off is named: CLOCK N days behind)
  zastava central archive --config central.toml --older-than-days 90 --to DIR [--gzip]
                                                        alerts + evidence older than N days -> CSV + DIR

Keys: put a checkpoint's public key file in [hub] checkpoints_dir as <checkpoint-id>.key to admit
it; delete the file to revoke it. The hub re-reads the folder every reload_s seconds and at once
on SIGHUP; no restart is needed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="run", choices=("run", "send", "status", "archive"),
                   help="run the hub (default), send a downlink document, show checkpoint status, or archive"
                        " old alerts")
    p.add_argument("--config", required=True, type=Path, help="central.toml")
    p.add_argument("--kind", choices=("watchlist", "frequency_plan", "model_announcement"), help="send: document kind")
    p.add_argument("--file", type=Path, help="send: the document, a JSON file")
    p.add_argument("--to", help="send: comma-separated checkpoint ids; archive: the archive folder")
    p.add_argument("--older-than-days", type=float, help="archive: alerts older than this many days")
    p.add_argument("--gzip", action="store_true", help="archive: write .csv.gz instead of .csv")


def run(args: argparse.Namespace) -> int:
    from central.config import load

    cfg = load(args.config)
    if args.action == "send":
        return _send(cfg, args)
    if args.action == "status":
        return _status(cfg)
    if args.action == "archive":
        return _archive(cfg, args)
    return _serve(cfg)


def queue_downlink(store_url: str, kind: str, doc: dict, targets: list[str]) -> int:
    """Python API (the dashboard calls this or the store's method): queue a document; returns its version.

    The running hub notices the new version within a second and sends it to connected targets;
    the others get it when they reconnect.
    """
    from central.store import open_store

    store = open_store(store_url)
    try:
        return store.queue_downlink(kind, doc, targets)
    finally:
        store.close()


def _send(cfg, args: argparse.Namespace) -> int:
    if not (args.kind and args.file and args.to):
        print("zastava central send: --kind, --file and --to are required", file=sys.stderr)
        return 2
    try:
        doc = json.loads(args.file.read_text())
    except (OSError, ValueError) as e:
        print(f"zastava central send: {args.file}: {e}", file=sys.stderr)
        return 2
    targets = [t.strip() for t in args.to.split(",") if t.strip()]
    try:
        v = queue_downlink(cfg.hub.store, args.kind, doc, targets)
    except ValueError as e:  # includes sync.wire.WireError: the document's shape is wrong
        print(f"zastava central send: refused: {e}", file=sys.stderr)
        return 2
    print(f"queued {args.kind} v{v} for {', '.join(targets)}")
    return 0


def _clock_warning(skew: float | None) -> str:
    """A checkpoint clock 2 s or more off central's, said in words (its alerts are placed by central's
    clock: central.store.central_time)."""
    if skew is None or abs(skew) < 2:
        return ""
    size = f"{abs(skew) / 86400:.1f} days" if abs(skew) >= 172800 else f"{abs(skew):.0f} s"
    return f"   CLOCK {size} {'behind' if skew > 0 else 'ahead of'} central"


def _status(cfg) -> int:
    from central.store import open_store

    store = open_store(cfg.hub.store)
    try:
        now = time.time()
        print(f"{'checkpoint':<20} {'last seen':>10} {'backlog':>8} {'skew s':>9} {'alerts':>8}")
        for c in store.checkpoints():
            ago = f"{now - c.last_seen:.0f}s ago" if c.last_seen else "never"
            skew = f"{c.clock_skew_s:+.3f}" if c.clock_skew_s is not None else "-"
            print(f"{c.id:<20} {ago:>10} {c.backlog if c.backlog is not None else '-':>8} {skew:>9} {c.alerts:>8}"
                  + _clock_warning(c.clock_skew_s))
    finally:
        store.close()
    return 0


def _archive(cfg, args: argparse.Namespace) -> int:
    """Retention (central/retention.py): safe to run from cron/a systemd timer while the hubs run."""
    import dataclasses
    import logging

    from central.retention import ArchiveError, archive

    if args.older_than_days is None or not args.to:
        print("zastava central archive: --older-than-days and --to are required", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rep = archive(cfg.hub.store, cfg.hub.data_dir, Path(args.to), args.older_than_days, compress=args.gzip)
    except (ArchiveError, ValueError, OSError) as e:
        print(f"zastava central archive: {e}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(rep)))
    return 1 if rep.bad_pending else 0


def _serve(cfg) -> int:
    import logging

    from central.hub import Hub

    log = logging.getLogger("zastava.central")
    hub = Hub.from_config(cfg.hub)
    hub.start()
    signal.signal(signal.SIGTERM, lambda *_: hub.stop())
    signal.signal(signal.SIGINT, lambda *_: hub.stop())
    signal.signal(signal.SIGHUP, lambda *_: hub.request_reload())
    t = threading.Thread(target=hub.run, name="hub", daemon=True)
    t.start()
    dashboard = _start_dashboard(cfg)
    print(json.dumps({"ready": True, "endpoint": hub.endpoint}), flush=True)
    while t.is_alive():
        t.join(0.5)
    if dashboard is not None:
        dashboard.stop(timeout=1.5)
    hub.close()
    log.info("hub stopped: %s; durable writes: %s", dict(hub.stats),
             {k: round(v, 3) for k, v in hub.timing.items()})
    return 0


def _start_dashboard(cfg):
    """The command dashboard (central/dashboard), served only when central.toml has a [dashboard] section."""
    if "dashboard" not in cfg.model_fields_set:
        return None
    from central.dashboard.server import start_dashboard
    from central.store import open_store

    return start_dashboard(cfg.dashboard, open_store(cfg.hub.store), Path(cfg.hub.data_dir))
