"""Measure a detector on a dataset written by `zastava sim dataset`.

  zastava eval xray --data DIR [--model PATH] [--out DIR] [--json]
  zastava eval rf   --data DIR [--model PATH] [--out DIR] [--json]

Prints a table (or one JSON object with --json) and writes PNG plots into --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=("xray", "rf"), help="which detector to measure")
    p.add_argument("--data", required=True, type=Path, help="dataset folder from `zastava sim dataset`")
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    p.add_argument("--out", type=Path, default=None, help="folder for plots (default: DATA/eval)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def run(args: argparse.Namespace) -> int:
    out = args.out or (args.data / "eval")
    out.mkdir(parents=True, exist_ok=True)
    if args.which == "xray":
        from detectors.xray import evaluate as ev
    else:
        from detectors.rf import evaluate as ev
    result = ev.evaluate(args.data, model=args.model, out_dir=out)
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True))
    else:
        print(ev.format_table(result))
        print(f"plots: {out}")
    return 0
