"""The hardware simulator, as its own process.

  zastava sim run --scenario FILE [--speed X] [--seed S]   serve the scenario's devices
  zastava sim dataset xray|rf --count N --seed S --out DIR  write a labelled dataset
  zastava sim replay ...                                    serve recordings (SigMF, image folders)

`run` prints one JSON line on stdout once every device listens, naming each device's URL, so
that scripts and tests can connect without guessing ports.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    r = sub.add_parser("run", help="serve the simulated devices of a scenario")
    r.add_argument("--scenario", required=True, type=Path, help="scenario TOML (see hw_sim/scenarios/)")
    r.add_argument("--speed", type=float, default=None, help="time scale (1 = real time); overrides the file")
    r.add_argument("--seed", type=int, default=None, help="random seed; overrides the file")
    r.add_argument("--state-dir", type=Path, default=None, help="where spool folders and ptys live")
    r.add_argument("--central-target", default=None, metavar="HOST:PORT",
                   help="where the [central_link] relay forwards to (overrides the file)")
    d = sub.add_parser("dataset", help="write N labelled images or IQ snippets")
    d.add_argument("kind", choices=("xray", "rf"))
    d.add_argument("--count", type=int, required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rp = sub.add_parser("replay", help="serve recordings: a SigMF file over rtl_tcp or an image folder")
    rp.add_argument("source", type=Path, help="a .sigmf-meta file or a folder of DICOS/PNG images")
    rp.add_argument("--port", type=int, default=1234, help="rtl_tcp port for a SigMF recording")
    rp.add_argument("--spool", type=Path, default=None, help="spool folder to drop images into")
    rp.add_argument("--speed", type=float, default=1.0)


def run(args: argparse.Namespace) -> int:
    if args.sim_command == "dataset":
        if args.kind == "xray":
            from hw_sim.xray.dataset import write_dataset
        else:
            from hw_sim.rf.dataset import write_dataset
        write_dataset(args.out, count=args.count, seed=args.seed, progress=not args.no_progress)
        return 0
    if args.sim_command == "replay":
        from hw_sim.replay import run_replay

        return run_replay(args)
    from hw_sim.runner import run_scenario

    return run_scenario(args.scenario, speed=args.speed, seed=args.seed, state_dir=args.state_dir,
                        central_target=args.central_target)
