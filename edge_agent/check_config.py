"""Validate a config file and exit: 0 if it can be used, 2 with one line per bad key if not.

Use it before (re)starting the agent at a checkpoint; the agent runs the same checks at start,
loading the X-ray model too when lanes are configured (a model file of the wrong layout, class
count or verifier is refused here as at start).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="path to zastava.toml")
    p.add_argument("--central", action="store_true", help="the file is a central command config")


def run(args: argparse.Namespace) -> int:
    if args.central:
        from central.config import load
    else:
        from edge_agent.config import load
    cfg = load(args.config)
    if not args.central and cfg.lanes:
        cfg.xray_detector.load(str(args.config))
    print(f"{args.config}: OK ({type(cfg).__name__})")
    return 0
