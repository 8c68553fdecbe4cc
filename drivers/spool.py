"""`spool:///path`: pick up the images a scanner drops into a folder, each file exactly once.

What a checkpoint's scanner export looks like: DICOS/DICOM files (`.dcs`, `.dcm`, `.dicom`, or
no suffix with the DICM preamble) and 16-bit PNG/TIFF pairs (`<bag>_high.png`/`<bag>_low.png`),
written by another program at any pace, possibly while we are down.

Crash safety, in order of the steps:
  * partial writes are not read: dotfiles and `*.part` are skipped (writers rename when done),
    and any other file must keep the same size and mtime for `settle_s` before it is opened;
  * a file counts as processed once its frame has been taken by the consumer (the generator is
    resumed after the yield); only then is it recorded in the ledger, a small SQLite file in the
    spool folder (`.zastava-spool.sqlite`), and then moved to `done/` (or deleted, or left).
    A crash before the record re-reads the file on restart (at-least-once, never lost); a crash
    between the record and the move is finished at the next start (never twice);
  * a file that cannot be read goes to `bad/` with `<name>.reason.txt` beside it, and is
    counted; it never stops the source. So does a bag the consumer could not screen (it sends
    the reason back into the generator as the value of the yield): it is not filed in `done/`
    as if it had been; `zastava requeue` (edge_agent/requeue.py) puts it back to be screened.
Pairs wait up to `pair_timeout_s` for their partner, then go out single-energy with a note in
meta (not set aside: a bag screened on one energy is better than a bag not screened at all).

Options in the URL's query (`spool:///var/spool/zastava/xray?after=delete`): `after` = move (to
`done/`, the default), delete or keep; `done_days` = how long screened files stay in `done/`
(default 7; the agent keeps its own raw frame and TDR of each bag). A box that runs for months
must not fill its disk with a scanner's images: done/ is pruned with the ledger, hourly and at
each start. `bad/` is never pruned: what is there waits for an engineer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from drivers.base import HealthMixin, XrayFrame, backoff_delays
from drivers.dicos import DicosImage, DicosRefused, EnergyPairer, Pair, frame_from_pair, read_dicos
from drivers.imagefiles import IMAGE_SUFFIXES, ImageFile, ImageRefused, parse_name, read_image_file
from drivers.registry import register
from drivers.url_options import check_after, spool_options

log = logging.getLogger("zastava.drivers.spool")

DICOS_SUFFIXES = {".dcs", ".dcm", ".dicom"}
LEDGER_NAME = ".zastava-spool.sqlite"


@dataclass
class Entry:
    """One spool file read and waiting (alone or for its partner) to be handed over."""

    name: str
    size: int
    mtime_ns: int
    decoded: DicosImage | ImageFile


def spool_path(url: str) -> Path:
    parts = urlsplit(url)
    path = unquote(parts.netloc + parts.path)
    if not path:
        raise ValueError(f"{url}: spool:// needs a folder, e.g. spool:///var/spool/zastava/xray")
    return Path(path)


class Ledger:
    """Which files were handed over (or set aside): survives restarts, one row per file version."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (the case that matters: the agent restarted
        # by its watchdog); a power cut may lose the last records, which can only make a file be
        # read again, never lost, since the record is written before the file is moved away.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS files (name TEXT NOT NULL, size INTEGER NOT NULL, "
                        "mtime_ns INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, t REAL NOT NULL, "
                        "finished INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, size, mtime_ns))")

    def status(self, name: str, size: int, mtime_ns: int) -> tuple[str, int, str | None] | None:
        """(status, finished, reason) of one file version, or None if never recorded."""
        row = self.db.execute("SELECT status, finished, reason FROM files WHERE name=? AND size=? AND mtime_ns=?",
                              (name, size, mtime_ns)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def record(self, entries: list[tuple[str, int, int]], status: str, reason: str | None = None) -> None:
        now = time.time()
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO files (name, size, mtime_ns, status, reason, t, finished) "
                                "VALUES (?, ?, ?, ?, ?, ?, 0)", [(*e, status, reason, now) for e in entries])

    def finished(self, name: str, size: int, mtime_ns: int) -> None:
        self.db.execute("UPDATE files SET finished=1 WHERE name=? AND size=? AND mtime_ns=?", (name, size, mtime_ns))

    def unfinished(self) -> list[tuple[str, int, int, str, str | None]]:
        return self.db.execute("SELECT name, size, mtime_ns, status, reason FROM files WHERE finished=0").fetchall()

    def prune(self, present: set[str], older_than_s: float) -> None:
        """Forget finished rows of files gone from the folder; they cannot come back as they were."""
        cutoff = time.time() - older_than_s
        rows = self.db.execute("SELECT name FROM files WHERE finished=1 AND t < ?", (cutoff,)).fetchall()
        gone = [(r[0],) for r in rows if r[0] not in present]
        with self.db:
            self.db.executemany("DELETE FROM files WHERE name=? AND finished=1", gone)

    def close(self) -> None:
        self.db.close()


class SpoolSource(HealthMixin):
    """A folder watched by polling (portable to NFS/SMB mounts, where inotify sees nothing)."""

    def __init__(self, url: str, *, poll_s: float = 0.5, settle_s: float = 1.0, pair_timeout_s: float = 10.0,
                 after: str = "move", max_pending: int = 64, prune_after_s: float = 7 * 86400,
                 done_days: float = 7.0):
        self.url = url
        self.dir = spool_path(url)
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.after = check_after(url, after)
        self.prune_after_s = prune_after_s
        self.done_days = done_days
        self.pairer: EnergyPairer[Entry] = EnergyPairer(pair_timeout_s, max_pending)
        self._init_health(url, "xray")
        self.counters = {"files": 0, "bad": 0, "failed": 0, "frames": 0, "pairs": 0, "singles": 0, "duplicates": 0,
                         "pruned": 0}
        self.ledger: Ledger | None = None
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, stable since)
        self._held: set[str] = set()
        self._finished: set[tuple[str, int, int]] = set()  # ledger rows known finished (after=keep)
        self._closed = threading.Event()
        self._running = False
        self._started_once = False
        self._last_prune = 0.0

    # -- folder plumbing -----------------------------------------------------------------------
    def _start(self) -> None:
        """Open the ledger and finish what a crash interrupted (moves after a recorded hand-over)."""
        if not self._started_once:
            # created on the first start only: after that a missing folder is an unmounted share
            # or a removed disk, and creating it would write the spool onto the wrong filesystem
            self.dir.mkdir(parents=True, exist_ok=True)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"spool folder {self.dir} is missing")
        self.ledger = Ledger(self.dir / LEDGER_NAME)
        self._started_once = True
        for name, size, mtime_ns, status, reason in self.ledger.unfinished():
            p = self.dir / name
            try:
                st = p.stat()
            except FileNotFoundError:
                self.ledger.finished(name, size, mtime_ns)
                continue
            if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                log.info("%s: finishing '%s' (%s) left by the last run", self.url, name, status)
                self._finish(name, size, mtime_ns, status, reason)
        self._prune()

    def _prune(self) -> None:
        """Keep the ledger small on a box that runs for months (hourly, and at each start)."""
        self._last_prune = time.monotonic()
        try:
            present = {e.name for e in os.scandir(self.dir)}
            self.ledger.prune(present, self.prune_after_s)
        except (OSError, sqlite3.Error) as e:
            log.warning("%s: pruning the ledger failed: %s", self.url, e)
        self._prune_done()

    def _prune_done(self) -> None:
        """Delete screened files in done/ older than done_days (by their time stamp, which the
        move keeps: the scanner's write time)."""
        done = self.dir / "done"
        cutoff = time.time() - self.done_days * 86400
        removed = 0
        try:
            entries = list(os.scandir(done))
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("%s: cannot list done/ to prune it: %s", self.url, e)
            return
        for e in entries:
            try:
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(e.path)
                    removed += 1
            except OSError as err:
                log.warning("%s: cannot prune done/%s: %s", self.url, e.name, err)
        if removed:
            self.counters["pruned"] += removed
            log.info("%s: pruned %d screened file(s) older than %g days from done/", self.url, removed,
                     self.done_days)

    def _finish(self, name: str, size: int, mtime_ns: int, status: str, reason: str | None) -> None:
        src = self.dir / name
        try:
            if status == "bad":
                dest = _free_name(self.dir / "bad", name)
                dest.parent.mkdir(exist_ok=True)
                # the reason first: a crash in between leaves a reason without its file, which the
                # next start completes, rather than a bad file nobody can explain
                dest.with_name(dest.name + ".reason.txt").write_text((reason or "unknown") + "\n")
                os.replace(src, dest)
            elif self.after == "move":
                dest = _free_name(self.dir / "done", name)
                dest.parent.mkdir(exist_ok=True)
                os.replace(src, dest)
            elif self.after == "delete":
                src.unlink(missing_ok=True)
        except OSError as e:
            # the ledger already says it was handled, so it is never read again; leave it where it
            # is rather than retry (and count) the same failure on every poll
            self._error(f"cannot move '{name}' aside, left in the spool: {e}")
        self.ledger.finished(name, size, mtime_ns)

    def _scan(self, now: float) -> list[tuple[str, int, int]]:
        """Settled files not yet handed over, oldest first."""
        ready = []
        names = set()
        for e in os.scandir(self.dir):
            name = e.name
            if name.startswith(".") or name.endswith((".part", ".reason.txt")):
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue  # gone between listing and stat: a writer renaming it
            names.add(name)
            if name in self._held:
                continue
            key = (st.st_size, st.st_mtime_ns)
            prev = self._seen.get(name)
            if prev is None or prev[:2] != key:
                self._seen[name] = (*key, now)
                continue
            if now - prev[2] < self.settle_s:
                continue
            if (name, *key) in self._finished:
                continue  # after=keep: handed over before, still here by design
            known = self.ledger.status(name, *key)
            if known is not None:
                if known[1]:
                    self._finished.add((name, *key))
                # recorded but still here: the move was interrupted; finish it, never re-read
                if not known[1]:
                    self._finish(name, *key, known[0], known[2])
                continue
            ready.append((st.st_mtime_ns, name, *key))
        for name in list(self._seen):
            if name not in names:
                del self._seen[name]
        if self._finished:
            self._finished = {k for k in self._finished if k[0] in names}
        return [(n, s, m) for _, n, s, m in sorted(ready)]

    def _read(self, name: str, size: int, mtime_ns: int) -> Entry | None:
        p = self.dir / name
        suffix = p.suffix.lower()
        try:
            if suffix in IMAGE_SUFFIXES:
                decoded: DicosImage | ImageFile = read_image_file(p)
            elif suffix in DICOS_SUFFIXES or (suffix == "" and _has_dicm(p)):
                decoded = read_dicos(p)
            else:
                raise ImageRefused(f"'{name}' is neither DICOS/DICOM nor a PNG/TIFF image")
        except (DicosRefused, ImageRefused) as e:
            self._set_aside(name, size, mtime_ns, e.reason)
            return None
        except Exception as e:  # a decoder bug must not stop the spool: set the file aside, loudly
            log.exception("%s: unexpected failure reading '%s'", self.url, name)
            self._set_aside(name, size, mtime_ns, f"internal error: {type(e).__name__}: {e}")
            return None
        self.counters["files"] += 1
        return Entry(name, size, mtime_ns, decoded)

    def _set_aside(self, name: str, size: int, mtime_ns: int, reason: str) -> None:
        self.counters["bad"] += 1
        self._error(f"{name}: {reason}")
        log.warning("%s: '%s' set aside in bad/: %s", self.url, name, reason)
        self.ledger.record([(name, size, mtime_ns)], "bad", reason)
        self._finish(name, size, mtime_ns, "bad", reason)

    # -- frames -----------------------------------------------------------------------------------
    def _pair(self, entry: Entry, now: float) -> list[Pair[Entry]]:
        d = entry.decoded
        if isinstance(d, DicosImage):
            # energy from Image Type; else from the file name's _high/_low; else kVp decides
            energy = d.energy or parse_name(entry.name)[1]
            return self.pairer.add(("dicos", d.pair_key), energy, entry, now, rank=d.kvp)
        return self.pairer.add(("image", d.bag_id), d.energy, entry, now)

    def _frame(self, pair: Pair[Entry]) -> XrayFrame:
        hi, lo = pair.high, pair.low
        main = hi if hi is not None else lo
        files = [e.name for e in (hi, lo) if e is not None]
        if isinstance(main.decoded, DicosImage):
            dpair = Pair(pair.key, hi.decoded if hi else None, lo.decoded if lo else None, pair.note)
            frame = frame_from_pair(dpair, self.url, time.time())
        else:
            low_img = lo.decoded.image if (hi is not None and lo is not None) else None
            if low_img is not None and low_img.shape != main.decoded.image.shape:
                pair.note = f"low image {low_img.shape} does not match high {main.decoded.image.shape}: dropped"
                low_img = None
            meta = {"format": main.decoded.meta.get("format")}
            meta.update({k: v for k, v in main.decoded.meta.items() if k == "note"})
            if hi is None:
                meta["energy"] = "low"
            if pair.note:
                meta["pairing"] = pair.note
            frame = XrayFrame(high=main.decoded.image, low=low_img, source=self.url, t=time.time(),
                              bag_id=main.decoded.bag_id, meta=meta)
        frame.meta["files"] = files
        return frame

    def _hand_over(self, pairs: list[Pair[Entry]]) -> Iterator[XrayFrame]:
        for pair in pairs:
            entries = [e for e in (pair.high, pair.low) if e is not None]
            try:
                frame = self._frame(pair)
            except Exception as e:
                log.exception("%s: building a frame from %s", self.url, [e.name for e in entries])
                for en in entries:
                    self._held.discard(en.name)
                    self._set_aside(en.name, en.size, en.mtime_ns, f"internal error: {e}")
                continue
            both = pair.high is not None and pair.low is not None
            self.counters["pairs" if both else "singles"] += 1
            self.counters["frames"] += 1
            self._got_data()
            failure = yield frame
            # the consumer has the frame: only now is it processed (see the module docstring)
            if failure:  # the consumer could not screen it (it said why): set aside, not done
                log.error("%s: %s NOT screened, set aside in bad/: %s", self.url, [e.name for e in entries], failure)
                self.counters["failed"] += 1
                for en in entries:
                    self._held.discard(en.name)
                    self._set_aside(en.name, en.size, en.mtime_ns, f"not screened: {failure}")
                continue
            self.ledger.record([(en.name, en.size, en.mtime_ns) for en in entries], "done")
            for en in entries:
                self._held.discard(en.name)
                self._finish(en.name, en.size, en.mtime_ns, "done", None)

    def frames(self, stop: threading.Event) -> Iterator[XrayFrame]:
        self._running = True
        try:
            yield from self._frames(stop)
        finally:
            self._running = False
            # what waits for a partner was never recorded: the next run reads it again
            self.pairer.drain()
            self._held.clear()
            if self.ledger is not None:
                self.ledger.close()
                self.ledger = None

    def _frames(self, stop: threading.Event) -> Iterator[XrayFrame]:
        delays = backoff_delays(self.poll_s, 30.0)
        while not stop.is_set() and not self._closed.is_set():
            try:
                if self.ledger is None:
                    self._start()
                    self._set_state("ok", True)
                ready = self._scan(time.monotonic())
            except (OSError, sqlite3.Error) as e:
                self._error(f"spool folder {self.dir} unusable: {e}", state="disconnected")
                self._set_state("disconnected", False)
                if self.ledger is not None:
                    self.ledger.close()
                    self.ledger = None
                    self._count("reconnects")
                self._held.clear()
                self.pairer.drain()  # re-read after recovery: nothing of theirs was recorded
                if stop.wait(next(delays)):
                    return
                continue
            delays = backoff_delays(self.poll_s, 30.0)
            if time.monotonic() - self._last_prune > 3600:
                self._prune()
            for name, size, mtime_ns in ready:
                if stop.is_set():
                    break
                entry = self._read(name, size, mtime_ns)
                if entry is None:
                    continue
                self._held.add(name)
                yield from self._hand_over(self._pair(entry, time.monotonic()))
            yield from self._hand_over(self.pairer.expire(time.monotonic()))
            if not ready:
                stop.wait(self.poll_s)

    def stats(self) -> dict:
        return dict(self.counters, waiting_for_partner=len(self.pairer.pending))

    def close(self) -> None:
        """Stops frames() at its next step; it closes the ledger itself (it may be using it now)."""
        self._closed.set()
        if not self._running and self.ledger is not None:
            self.ledger.close()
            self.ledger = None


def _has_dicm(p: Path) -> bool:
    try:
        with p.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _free_name(folder: Path, name: str) -> Path:
    dest = folder / name
    i = 1
    while dest.exists():
        dest = folder / f"{name}.{i}"
        i += 1
    return dest


@register("xray", "spool")
def open_spool(url: str, **opts) -> SpoolSource:
    return SpoolSource(url, **{**spool_options(url), **opts})
