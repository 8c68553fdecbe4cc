"""Serve a folder of real scanner images into a spool folder, as the scanner exported them.

Field engineers bring DICOS files or PNG/TIFF pairs back from a checkpoint; replaying them into
a spool folder lets the agent see them exactly as it would at the border. Files of one bag
(`<bag>_high.*` and `<bag>_low.*`, or DICOS instances with the same Series Instance UID) are
dropped together, atomically (see spool.py). Bags keep their original spacing in time, taken
from the DICOS acquisition/content time or else the file's modification time, divided by
`speed` (0 = as fast as possible) and capped at `max_gap_s` so a night's pause is not replayed.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hw_sim.xray.spool import atomic_write_many

log = logging.getLogger("zastava.sim.replay")

DICOS_SUFFIXES = (".dcs", ".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class ReplayBag:
    key: str
    t: float
    files: list[Path] = field(default_factory=list)


def _dicos_info(path: Path) -> tuple[str | None, float | None]:
    """(series UID, acquisition time) of a DICOS/DICOM file, or Nones if the header is unreadable."""
    import pydicom

    try:
        with warnings.catch_warnings():  # a damaged header's warnings are noise here: we only want times
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as e:  # a damaged file is still replayed (the agent must cope), just untimed
        log.info("replay: %s has no readable DICOM header (%s); timed by mtime", path.name, e)
        return None, None
    series = str(getattr(ds, "SeriesInstanceUID", "") or "") or None
    for d_kw, t_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"),
                       ("StudyDate", "StudyTime")):
        d, t = str(getattr(ds, d_kw, "") or ""), str(getattr(ds, t_kw, "") or "")
        if len(d) == 8 and len(t) >= 6:
            try:
                frac = float("0" + t[6:]) if len(t) > 6 else 0.0
                when = datetime.strptime(d + t[:6], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
                return series, when.timestamp() + frac
            except ValueError:
                continue
    return series, None


def _bag_key(path: Path) -> str:
    stem = path.stem
    for suffix in ("_high", "_low", "_HIGH", "_LOW"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def scan_folder(folder: Path) -> list[ReplayBag]:
    """The bags of a folder in time order (visible DICOS/PNG/TIFF files only, not recursive)."""
    bags: dict[str, ReplayBag] = {}
    for p in sorted(Path(folder).iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        suffix = p.suffix.lower()
        t: float | None = None
        key = _bag_key(p)
        if suffix in DICOS_SUFFIXES:
            series, t = _dicos_info(p)
            key = series or key
        elif suffix not in IMAGE_SUFFIXES:
            continue
        if t is None:
            t = p.stat().st_mtime
        bag = bags.setdefault(key, ReplayBag(key, t))
        bag.t = min(bag.t, t)
        bag.files.append(p)
    return sorted(bags.values(), key=lambda b: (b.t, b.key))


def replay_folder(folder: Path, spool_dir: Path, speed: float = 1.0, stop: threading.Event | None = None,
                  *, max_gap_s: float = 30.0, loop: bool = False) -> int:
    """Copy the folder's bags into `spool_dir` at `speed` x their original pace; returns bags served."""
    if speed < 0:
        raise ValueError("speed must be >= 0 (0 = as fast as possible)")
    folder, spool_dir = Path(folder), Path(spool_dir)
    if not folder.is_dir():
        raise ValueError(f"replay: {folder} is not a folder")
    spool_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    bags = scan_folder(folder)
    if not bags:
        log.warning("replay: no DICOS, PNG or TIFF images in %s", folder)
        return 0
    log.info("replay: %d bags from %s into %s at %gx", len(bags), folder, spool_dir, speed)
    served = 0
    while not stop.is_set():
        prev_t: float | None = None
        for bag in bags:
            if prev_t is not None and speed > 0:
                gap = min(max(bag.t - prev_t, 0.0), max_gap_s) / speed
                if stop.wait(gap):
                    return served
            if stop.is_set():
                return served
            prev_t = bag.t
            try:
                atomic_write_many(spool_dir, {p.name: p.read_bytes() for p in bag.files})
            except OSError as e:
                log.error("replay: cannot copy %s into %s: %s", [p.name for p in bag.files], spool_dir, e)
            served += 1
        if not loop:
            break
    return served
