"""`zastava`: one command, a subcommand per role.

Each subcommand lives in the module that owns it and exposes `add_arguments(parser)` and
`run(args) -> int`; those modules import their heavy dependencies inside `run`, so
`zastava --help` and `zastava check-config` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from common import logs
from common.configfile import EXIT_CONFIG, ConfigError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("edge_agent.runner", "run the checkpoint agent (devices, detectors, store, console, sync)"),
    "central": ("central.cli", "run central command: the hub that receives alerts, and the dashboard"),
    "sim": ("hw_sim.cli", "run the hardware simulator, write datasets, replay recordings"),
    "demo": ("edge_agent.demo", "run simulator, agent and central together on loopback"),
    "keys": ("sync.keys", "make CURVE key pairs for checkpoints and hubs"),
    "eval": ("edge_agent.evaluate", "measure the detectors on a labelled dataset (the simulator's or your own)"),
    "calibrate": ("edge_agent.calibrate", "choose the X-ray detector's thresholds for a false-alarm budget"),
    "requeue": ("edge_agent.requeue", "put bags a lane set aside (not screened) back into its spool"),
    "check-config": ("edge_agent.check_config", "validate a config file and exit (2 if bad)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zastava",
        description="Zastava: edge software for border checkpoints (X-ray and radio monitoring).",
        epilog="commands:\n" + "\n".join(f"  {n:<14}{h}" for n, (_, h) in SUBCOMMANDS.items())
        + "\n\n'zastava COMMAND --help' explains each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format on stderr")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("command", choices=list(SUBCOMMANDS), metavar="COMMAND", help="see below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    """Only the chosen command's module is imported: one missing optional part never breaks another."""
    module, help_text = SUBCOMMANDS[name]
    mod = importlib.import_module(module)
    p = argparse.ArgumentParser(
        prog=f"zastava {name}",
        description=(mod.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mod.add_arguments(p)
    return p, mod


def main(argv: list[str] | None = None) -> int:
    top = _top_parser().parse_args(argv)
    parser, mod = command_parser(top.command)
    args = parser.parse_args(top.args)
    args.command = top.command
    args.log_format = top.log_format
    logs.setup(top.log_format, top.log_level)
    try:
        return int(mod.run(args) or 0)
    except ConfigError as e:
        print(f"zastava: config refused: {e.path}", file=sys.stderr)
        for p in e.problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except Exception:
        logging.getLogger("zastava").exception("fatal error in '%s'", top.command)
        return 1


if __name__ == "__main__":
    sys.exit(main())
