"""Put bags a lane set aside back into its spool (or C-STORE inbox) to be screened again.

    zastava requeue /var/spool/zastava/lane1            # every bag set aside as 'not screened'
    zastava requeue /var/spool/zastava/lane1 B123 B124  # these bags only (file names or bag ids)
    zastava requeue /var/spool/zastava/lane1 --all      # unreadable files too (after a fix)
    zastava requeue /var/spool/zastava/lane1 --dry-run  # say what would move, move nothing

A bag the lane could not screen (a full disk, a detector that refused its images) is set aside
in the folder's bad/ with `<file>.reason.txt` (docs/dicos.md). Once the fault is cleared, this
moves its files back and gives them the current time stamp: the spool's ledger knows each file by
name, size and time stamp, so a file moved back unchanged would count as handled and be skipped.
The running agent picks them up at its next scan. Files that were unreadable, or whose images the
detector refused, stay unless named or --all asks for them: as they are, they would only be
refused again.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The reasons the spool records (drivers/spool.py: "not screened: " + what the lane said;
# edge_agent/xray_lane.py: "refused by the detector: ..." when the images themselves are unusable)
NOT_SCREENED = "not screened:"
REFUSED = "not screened: refused by the detector"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, help="the spool folder (or C-STORE inbox) whose bad/ to requeue from")
    p.add_argument("names", nargs="*", help="bag ids (a spool's <bag>_high/_low files) or file names (a C-STORE "
                   "inbox names its files by SOP instance UID) to requeue; default: every bag not screened")
    p.add_argument("--all", action="store_true", help="unreadable files too, not only bags that were not screened")
    p.add_argument("--dry-run", action="store_true", help="print what would be requeued, move nothing")


def original_name(name: str) -> str:
    """The name a file had in the spool: bad/ adds `.1`, `.2`... when the name was taken there."""
    stem, dot, n = name.rpartition(".")
    return stem if dot and n.isdigit() and stem else name


def candidates(bad: Path, names: list[str], everything: bool) -> list[tuple[Path, str]]:
    """(file in bad/, its reason) for each file to requeue, oldest first."""
    out = []
    for p in sorted(bad.iterdir(), key=lambda q: q.stat().st_mtime_ns):
        if not p.is_file() or p.name.endswith(".reason.txt") or p.name.startswith("."):
            continue
        try:
            reason = p.with_name(p.name + ".reason.txt").read_text().strip()
        except OSError:
            reason = ""
        orig = original_name(p.name)
        if names and not any(orig == n or orig.startswith(f"{n}_") or p.name == n for n in names):
            continue
        if not names and not everything and (not reason.startswith(NOT_SCREENED) or reason.startswith(REFUSED)):
            continue  # by default only what a fault of ours left unscreened: the rest would fail again
        out.append((p, reason))
    return out


def run(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    bad = folder / "bad"
    if not folder.is_dir():
        print(f"zastava requeue: {folder} is not a folder", file=sys.stderr)
        return 2
    if not bad.is_dir():
        print(f"{folder}: nothing set aside (no bad/ folder)")
        return 0
    moved = skipped = 0
    for p, reason in candidates(bad, args.names, args.all):
        dest = folder / original_name(p.name)
        if dest.exists():
            print(f"skipped {p.name}: {dest.name} is already waiting in the spool")
            skipped += 1
            continue
        print(f"{'would requeue' if args.dry_run else 'requeued'} {p.name} ({reason or 'no reason recorded'})")
        moved += 1
        if args.dry_run:
            continue
        os.replace(p, dest)  # whole, in one step: the spool never sees half a file
        os.utime(dest)  # a new time stamp: a new file version, unknown to the ledger
        p.with_name(p.name + ".reason.txt").unlink(missing_ok=True)
    print(f"{folder}: {moved} file(s) {'would be requeued' if args.dry_run else 'requeued'}, {skipped} skipped")
    return 0
