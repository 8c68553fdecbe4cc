"""Build a receiver's RadioMonitor from config, preferring what central sent down.

Order of precedence for the frequency plan and the watchlist: the latest version central sent
(stored under <storage.dir>/downlink/ by edge_agent.downlink), then the config's files, then the
shipped defaults (detectors/rf/defaults/).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("zastava.radio")


def downlinked(root: Path, kind: str) -> dict | None:
    p = root / "downlink" / f"{kind}.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())["doc"]
    except (ValueError, KeyError, OSError) as e:
        log.error("ignoring unreadable downlinked %s at %s: %s", kind, p, e)
        return None


def policies(cfg, root: Path):
    from detectors.rf.judge import FrequencyPlan, Watchlist, load_plan, load_watchlist

    doc = downlinked(root, "frequency_plan")
    plan = FrequencyPlan.model_validate(doc) if doc else load_plan(cfg.radio.frequency_plan)
    doc = downlinked(root, "watchlist")
    watch = Watchlist.model_validate(doc) if doc else load_watchlist(cfg.radio.watchlist)
    return plan, watch


def make_monitor(cfg, root: Path):
    from detectors.rf.monitor import RadioMonitor

    plan, watch = policies(cfg, root)
    classifier = cfg.radio.classifier
    if classifier is None:
        shipped = Path(__file__).resolve().parent.parent / "models" / "rf" / "zastava-rf.onnx"
        classifier = shipped if shipped.exists() else None
    if classifier is None:
        log.warning("no RF classifier: emitters are judged by band only (no class-based watchlist matches)")
    return RadioMonitor(plan, watch, classifier_path=classifier)


def make_monitor_for_bench():
    """The monitor a default agent runs (shipped plan, watchlist and classifier), for benchmarks."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(radio=SimpleNamespace(frequency_plan=None, watchlist=None, classifier=None))
    return make_monitor(cfg, Path("/nonexistent"))
