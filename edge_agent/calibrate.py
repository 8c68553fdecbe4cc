"""Choose the X-ray detector's operating point for a site: the class thresholds (and payload
thresholds) that detect most within a false-alarm budget, on labelled bags.

  zastava calibrate xray --data DIR [--model PATH | --config FILE] [--budget 0.02]
                         [--weights narcotics=2,weapon=2,...] [--json]

DIR is a dataset in the layout `zastava sim dataset xray` writes (labels.jsonl naming 16-bit
PNGs and each bag's objects; bags with no objects are the clean ones): the simulator's, or the
site's own scans labelled the same way. The detector is our model (default) or the one a config
file's [xray_detector] table describes, a user's own YOLO export included (it carries no
calibrated thresholds at all). Prints the chosen thresholds beside the ones in force, each with
the detection rates and false alarms it gives on these bags, and the lines to put in the agent's
config. Nothing is written: a site changes its operating point by editing its config.

Why a site would: the budget is a local decision (a busy crossing opens fewer bags than a quiet
one), and thresholds chosen on the simulator do not carry over exactly to another scanner.
The search is detectors/xray/calibration.py, the one the training recipe uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=("xray",), help="which detector (the X-ray detector)")
    p.add_argument("--data", required=True, type=Path, help="labelled bags (`zastava sim dataset xray` layout)")
    p.add_argument("--model", type=Path, default=None, help="our ONNX model (default: the shipped one)")
    p.add_argument("--config", type=Path, default=None,
                   help="calibrate the detector of this config file's [xray_detector] table instead")
    p.add_argument("--budget", type=float, default=None,
                   help="false alarms per clean bag, all classes together (default 0.02, the recipe's)")
    p.add_argument("--weights", default=None,
                   help="class=weight,... for the detection rates the budget is shared by "
                        "(default narcotics=2,weapon=2,currency=1,concealment=1; other classes 1)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            w = float(value)
        except ValueError:
            w = -1.0
        if not sep or not name.strip() or not w >= 0:
            raise ValueError(f"--weights: expected class=weight (weight >= 0), got {part!r}")
        out[name.strip()] = w
    return out


def run(args: argparse.Namespace) -> int:
    from detectors.xray import calibration as cal
    from detectors.xray import evaluate as ev
    from detectors.xray.detector import load_detector

    budget = cal.FA_BUDGET if args.budget is None else args.budget
    if not 0 <= budget <= 10:
        print(f"zastava calibrate: --budget must be 0..10 false alarms per clean bag, got {budget}", file=sys.stderr)
        return 2
    if args.config is not None and args.model is not None:
        print("zastava calibrate: --config replaces --model; give one", file=sys.stderr)
        return 2
    try:
        weights = _weights(args.weights)
    except ValueError as e:
        print(f"zastava calibrate: {e}", file=sys.stderr)
        return 2
    if args.config is not None:
        from edge_agent.config import xray_detector_from

        det = xray_detector_from(args.config)
    else:
        model = args.model or ev.DEFAULT_MODEL
        if not Path(model).is_file():
            print(f"zastava calibrate: model file not found: {model}", file=sys.stderr)
            return 2
        det = load_detector(model, "zastava", threads=1)
    try:
        result = cal.calibrate_detector(det, list(ev.load_dataset(args.data)), budget, weights)
    except (ValueError, FileNotFoundError) as e:  # the data's problems, said plainly
        print(f"zastava calibrate: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(cal.format_calibration(result))
    return 0
