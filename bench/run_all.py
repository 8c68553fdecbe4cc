"""Run every benchmark under bench/ and print one summary table.

Each bench/bench_*.py prints its own table and writes bench/results/<name>.json; this runner
runs them one after another (never in parallel: they measure the same two cores) and lists
what each wrote. Pass --quick for short runs, or names to run only some: run_all.py sync rf.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")]
    # bench_sync first: creating files on ext4 slows down for minutes after the other benches
    # delete their temp folders (see create_probe in bench_sync.py), and it creates tens of thousands
    scripts = sorted(HERE.glob("bench_*.py"), key=lambda p: (p.stem != "bench_sync", p.stem))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    if not scripts:
        print("no benchmarks found", file=sys.stderr)
        return 1
    rows, failed = [], 0
    for s in scripts:
        t0 = time.monotonic()
        print(f"\n=== {s.stem} ===", flush=True)
        r = subprocess.run([sys.executable, str(s)] + (["--quick"] if quick else []), cwd=HERE.parent)
        dt = time.monotonic() - t0
        out = HERE / "results" / f"{s.stem.removeprefix('bench_')}.json"
        ok = r.returncode == 0 and out.exists()
        failed += not ok
        status = "ok" if ok else f"FAILED (exit {r.returncode})"
        if ok and "skipped" in json.loads(out.read_text()):  # a bench whose extra is not installed says so
            status = "skipped"
        rows.append((s.stem, status, f"{dt:.0f}s", out.name if out.exists() else "-"))
    print("\nbenchmark                      status        time   results")
    for name, st, dt, res in rows:
        print(f"{name:<30} {st:<13} {dt:>5}  {res}")
    summary = {name: st for name, st, _, _ in rows}
    (HERE / "results" / "summary.json").write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
