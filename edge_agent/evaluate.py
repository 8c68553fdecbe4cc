"""Measure a detector on a dataset written by `zastava sim dataset`.

  zastava eval xray --data DIR [--model PATH | --config FILE] [--out DIR] [--json]
  zastava eval rf   --data DIR [--model PATH] [--out DIR] [--json]

Prints a table (or one JSON object with --json) and writes PNG plots into --out.

--config measures the X-ray detector a config file's [xray_detector] table describes, at the
operating point the agent would run it with: a user's own YOLO or end-to-end export with its
class names, or our model under a site's thresholds (from `zastava calibrate xray`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=("xray", "rf"), help="which detector to measure")
    p.add_argument("--data", required=True, type=Path, help="dataset folder from `zastava sim dataset`")
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--config", type=Path, default=None,
                   help="xray: measure the detector of this config file's [xray_detector] table instead")
    p.add_argument("--out", type=Path, default=None, help="folder for plots (default: DATA/eval)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def run(args: argparse.Namespace) -> int:
    out = args.out or (args.data / "eval")
    out.mkdir(parents=True, exist_ok=True)
    if args.config is not None and (args.which != "xray" or args.model is not None):
        print("zastava eval: --config is for xray, and replaces --model", file=sys.stderr)
        return 2
    if args.which == "xray":
        from detectors.xray import evaluate as ev
    else:
        from detectors.rf import evaluate as ev
    if args.config is not None:
        from edge_agent.config import xray_detector_from

        result = ev.evaluate(args.data, out_dir=out, detector=xray_detector_from(args.config))
    else:
        result = ev.evaluate(args.data, model=args.model, out_dir=out)
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True))
    else:
        print(ev.format_table(result))
        print(f"plots: {out}")
    return 0
