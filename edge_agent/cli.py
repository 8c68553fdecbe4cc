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
    "eval": ("edge_agent.evaluate", "measure the detectors on a simulator dataset"),
    "check-config": ("edge_agent.check_config", "validate a config file and exit (2 if bad)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zastava",
        description="Zastava: edge software for border checkpoints (X-ray and radio monitoring).",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format on stderr")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    mod = importlib.import_module(args._module)
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
        logging.getLogger("zastava").exception("fatal error in '%s'", args.command)
        return 1


if __name__ == "__main__":
    sys.exit(main())
