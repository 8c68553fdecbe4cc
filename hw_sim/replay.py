"""`zastava sim replay`: bring the border back to the lab.

A SigMF recording (ours or any SigMF tool's) is served over rtl_tcp; a folder of DICOS or PNG
images is served into a spool folder as the scanner's output, at real speed or faster.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading


def run_replay(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    src = args.source
    if src.is_dir():
        from hw_sim.xray.replay import replay_folder

        if args.spool is None:
            raise SystemExit("zastava sim replay: an image folder needs --spool DIR to drop images into")
        print(json.dumps({"ready": True, "devices": {"scanner": {"spool": f"spool://{args.spool.resolve()}"}}}),
              flush=True)
        replay_folder(src, args.spool, args.speed, stop)
        return 0
    from hw_sim.rf.replay import serve_sigmf

    return int(serve_sigmf(src, args.port, args.speed, stop) or 0)
