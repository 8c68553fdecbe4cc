"""Retention at central: alerts older than N days go to CSV files and their evidence to an archive folder,
and only then leave the store. Works on both stores (SQLite and PostgreSQL), while hubs keep running.

    zastava central archive --config central.toml --older-than-days 90 --to /srv/zastava-archive [--gzip]

Why CSV and not Parquet: CSV needs no new dependency (pyarrow is a ~40 MB wheel that nothing else
at central uses), any tool reads it (PostgreSQL COPY, sqlite3 .import, pandas, a spreadsheet), and
it is written as a stream. The alert body stays the JSON text the store holds; evidence and decisions
are JSON lists in their own columns. `--gzip` writes .csv.gz (stdlib gzip) because the JSON bodies
compress well. The archive is a plain directory; an object store can be used by mounting it or by
syncing that directory (rclone, s3 sync): a directory is what this module writes.

What counts as old: the alert's own time (the edge's clock; its commit time if it had none) is older
than N days, AND central received it more than `received_grace_days` ago (default 1). The second
condition makes sure an alert is never archived while its sender could still be waiting for the ack
(a resend after archiving would be stored again as new), and keeps an alert from a long-offline
checkpoint visible at central for at least that long after it arrives.

Crash safety, per batch (a journal that is rolled forward):
  1. evidence files are hard-linked into the archive (copied and fsynced across filesystems), and
     the archive folders fsynced;
  2. the CSV is written to a temp file, fsynced, renamed to <name>.pending, and the folder fsynced:
     from here the export is durable;
  3. the rows are deleted in one transaction (the store's durable commit);
  4. the source evidence files are removed, and <name>.pending is renamed to <name>.
A crash before 2 leaves the rows in place (the next run exports them again); after 2, the next run
finds the .pending file first and finishes 3 and 4 for exactly its alerts, so every alert ends up in
exactly one archive file. A .pending file that cannot be read is reported, counted and left alone.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from central.store import HubStore, open_store
from common.durable import fsync_dir

log = logging.getLogger("zastava.central.retention")

COLUMNS = ["uuid", "checkpoint", "t", "kind", "severity", "score", "source", "created", "received", "data",
           "evidence", "decisions"]
PENDING = ".pending"
DAY = 86400.0


class ArchiveError(RuntimeError):
    """An archive file or the archive folder is not usable; the message says which and why."""


@dataclass
class ArchiveReport:
    alerts: int = 0
    decisions: int = 0
    evidence_files: int = 0
    evidence_lost: int = 0  # listed in the store but not on disk (recorded as lost in the CSV)
    recovered: int = 0  # batches finished from a .pending file left by an interrupted run (their alerts
    # and decisions are counted above: they leave the store in this run)
    bad_pending: int = 0  # .pending files that could not be read (left in place)
    files: list[str] = field(default_factory=list)


# --- the store side: two small adapters over the stores' own transaction helpers ---------------------
class _Side:
    """SQL the two databases both accept, except placeholders and list parameters. Runs through the
    store's own `_tx` (both stores have one: a transaction, the store's locking, durable commit), so
    retention needs no second way of opening either database."""

    def __init__(self, store: HubStore):
        self.store = store
        # by name, not isinstance: importing central.store_pg would need psycopg (an optional extra)
        # on an SQLite-only central
        self.pg = type(store).__name__ == "PostgresStore"
        self.p = store.MARK  # type: ignore[attr-defined]

    def _in(self, col: str, values: list[str]) -> tuple[str, list]:
        if self.pg:
            return f"{col} = ANY(%s)", [values]
        return f"{col} IN ({', '.join('?' * len(values))})", list(values)

    def _rows(self, sql: str, args: list) -> list[tuple]:
        return self.store._tx(lambda c: [tuple(r) for r in c.execute(sql, args).fetchall()])  # type: ignore[attr-defined]

    def select(self, cutoff: float, received_before: float, limit: int) -> list[dict]:
        p = self.p
        rows = self._rows(
            f"SELECT {', '.join(COLUMNS[:10])} FROM alerts WHERE received < {p} AND coalesce(t, created) < {p}"
            f" ORDER BY received, uuid LIMIT {p}", [received_before, cutoff, int(limit)])
        alerts = [dict(zip(COLUMNS[:10], r, strict=True)) for r in rows]
        if not alerts:
            return []
        ids = [a["uuid"] for a in alerts]
        cond, args = self._in("alert_uuid", ids)
        ev: dict[str, list[dict]] = {}
        for r in self._rows(f"SELECT alert_uuid, name, mime, size, sha256, path, missing FROM evidence WHERE {cond}"
                            " ORDER BY alert_uuid, name", args):
            ev.setdefault(r[0], []).append({"name": r[1], "mime": r[2], "size": r[3], "sha256": r[4], "path": r[5],
                                            "missing": bool(r[6])})
        dec: dict[str, list[dict]] = {}
        for r in self._rows(f"SELECT uuid, alert_uuid, checkpoint, created, received, data FROM decisions"
                            f" WHERE {cond} ORDER BY created, uuid", args):
            dec.setdefault(r[1], []).append({"uuid": r[0], "checkpoint": r[2], "created": r[3], "received": r[4],
                                             "data": json.loads(r[5])})
        for a in alerts:
            a["evidence"] = ev.get(a["uuid"], [])
            a["decisions"] = dec.get(a["uuid"], [])
        return alerts

    def delete(self, ids: list[str]) -> int:
        """Remove these alerts with their evidence rows and decisions, in one durable transaction."""
        n = 0
        for i in range(0, len(ids), 5000):  # SQLite caps the number of parameters per statement
            part = ids[i:i + 5000]
            a_cond, args = self._in("alert_uuid", part)
            u_cond, _ = self._in("uuid", part)

            def tx(c, a_cond=a_cond, u_cond=u_cond, args=args) -> int:
                c.execute(f"DELETE FROM evidence WHERE {a_cond}", args)
                c.execute(f"DELETE FROM decisions WHERE {a_cond}", args)
                return c.execute(f"DELETE FROM alerts WHERE {u_cond}", args).rowcount

            n += self.store._tx(tx)  # type: ignore[attr-defined]
        return n


# --- durable file plumbing ------------------------------------------------------------------------------
def _makedirs_durable(d: Path, stop: Path) -> None:
    """mkdir -p, fsyncing each parent whose listing changed, up to `stop` (already durable)."""
    missing = []
    p = d
    while not p.exists() and p != stop and p != p.parent:
        missing.append(p)
        p = p.parent
    for m in reversed(missing):
        m.mkdir(exist_ok=True)
        fsync_dir(m.parent)


def _place_evidence(src: Path, dst: Path) -> None:
    """Put src's bytes at dst durably: a hard link when on one filesystem (no copy, same inode, the
    hub already fsynced it), else a copy through a temp file, fsynced, then renamed."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:  # EXDEV (another filesystem) or no hard links there: copy
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
    os.replace(tmp, dst)


def _write_csv_durable(path: Path, alerts: list[dict], compress: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if compress else raw
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        w = csv.writer(text)
        w.writerow(COLUMNS)
        for a in alerts:
            w.writerow([a["uuid"], a["checkpoint"], _cell(a["t"]), a["kind"] or "", a["severity"] or "",
                        _cell(a["score"]), a["source"] or "", _cell(a["created"]), _cell(a["received"]), a["data"],
                        json.dumps(a["evidence"], separators=(",", ":")),
                        json.dumps(a["decisions"], separators=(",", ":"))])
        text.flush()
        text.detach()
        if compress:
            stream.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)


def _cell(v: float | None) -> str:
    return "" if v is None else repr(float(v))  # repr: the shortest text that reads back to the same float


def read_archive(path: Path) -> list[dict]:
    """Read an archive file (.csv, .csv.gz, or a .pending one) back into dicts; ArchiveError if unreadable.

    Also what recovery uses to learn which alerts an interrupted batch held."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, csv.Error, ValueError) as e:
        raise ArchiveError(f"{path}: unreadable archive file: {e}") from e
    if not rows or rows[0] != COLUMNS:
        raise ArchiveError(f"{path}: not a Zastava alert archive (header {rows[0][:3] if rows else 'missing'})")
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) != len(COLUMNS):
            raise ArchiveError(f"{path}: line {n}: {len(r)} fields, expected {len(COLUMNS)}")
        d = dict(zip(COLUMNS, r, strict=True))
        try:
            for k in ("t", "score", "created", "received"):
                d[k] = float(d[k]) if d[k] else None
            d["data"] = json.loads(d["data"])
            d["evidence"] = json.loads(d["evidence"])
            d["decisions"] = json.loads(d["decisions"])
        except ValueError as e:
            raise ArchiveError(f"{path}: line {n}: {e}") from e
        if not isinstance(d["evidence"], list) or not all(isinstance(e, dict) for e in d["evidence"]):
            raise ArchiveError(f"{path}: line {n}: evidence is not a list of objects")
        out.append(d)
    return out


# --- the job --------------------------------------------------------------------------------------------
def _remove_sources(data_dir: Path, dest: Path, alerts: list[dict]) -> None:
    """Delete each source evidence file whose archive copy exists; then drop emptied day folders."""
    dirs: set[Path] = set()
    for a in alerts:
        for e in a["evidence"]:
            rel = e.get("path")
            if not rel or e.get("lost"):
                continue
            src, dst = data_dir / rel, dest / rel
            if dst.exists() and src.exists():
                src.unlink()
                dirs.add(src.parent)
    today = {time.strftime("%Y-%m-%d", time.gmtime(time.time() - k * DAY)) for k in (0, 1)}
    for d in dirs:  # evidence/<checkpoint>/<day>/: the hub may be writing today's and yesterday's
        fsync_dir(d)
        if d.name not in today:
            try:
                d.rmdir()
                fsync_dir(d.parent)
            except OSError:
                pass  # not empty: files of younger alerts stay


def _finish(side: _Side, data_dir: Path, dest: Path, pending: Path, alerts: list[dict]) -> Path:
    side.delete([a["uuid"] for a in alerts])
    _remove_sources(data_dir, dest, alerts)
    final = pending.with_name(pending.name[: -len(PENDING)])
    os.replace(pending, final)
    fsync_dir(final.parent)
    return final


def recover(side: _Side, data_dir: Path, dest: Path, report: ArchiveReport) -> None:
    """Finish every batch an interrupted run left as <name>.pending (rows may still be in the store)."""
    for tmp in dest.glob(".alerts-*.tmp"):  # a CSV that never became durable: its rows are still in the store
        tmp.unlink()
    for pending in sorted(dest.glob(f"alerts-*{PENDING}")):
        try:
            alerts = read_archive(pending)
        except ArchiveError as e:
            report.bad_pending += 1
            log.error("%s; left in place, its alerts (if any) stay in the store", e)
            continue
        final = _finish(side, data_dir, dest, pending, alerts)
        report.recovered += 1
        report.alerts += len(alerts)
        report.decisions += sum(len(a["decisions"]) for a in alerts)
        report.files.append(str(final))
        log.warning("finished the interrupted archive batch %s (%d alerts)", final.name, len(alerts))


def stage_batch(side: _Side, data_dir: Path, dest: Path, cutoff: float, received_before: float, limit: int,
                compress: bool, report: ArchiveReport) -> tuple[Path, list[dict]] | None:
    """Steps 1 and 2: evidence into the archive, the CSV durable as <name>.pending. None when nothing is old."""
    alerts = side.select(cutoff, received_before, limit)
    if not alerts:
        return None
    new_dirs: set[Path] = set()
    for a in alerts:
        for e in a["evidence"]:
            rel = e.get("path")
            if not rel or e.get("missing"):
                continue
            src, dst = data_dir / rel, dest / rel
            if not dst.resolve().is_relative_to(dest.resolve()):
                raise ArchiveError(f"evidence path {rel!r} of alert {a['uuid']} leaves the archive folder")
            if not dst.parent.is_dir():
                _makedirs_durable(dst.parent, dest)
            if dst.exists() and (not src.exists() or dst.stat().st_size == e["size"]):
                report.evidence_files += 1  # placed by an earlier, interrupted run
                continue
            try:
                _place_evidence(src, dst)
            except FileNotFoundError:
                e["lost"] = True
                report.evidence_lost += 1
                log.warning("evidence %s of alert %s is not on disk; archived as lost", rel, a["uuid"])
                continue
            new_dirs.add(dst.parent)
            report.evidence_files += 1
    for d in new_dirs:
        fsync_dir(d)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    seq = len(list(dest.glob(f"alerts-{stamp}-*")))
    name = f"alerts-{stamp}-{seq:04d}.csv" + (".gz" if compress else "")
    pending = dest / (name + PENDING)
    _write_csv_durable(pending, alerts, compress)
    fsync_dir(dest)
    return pending, alerts


def archive(store: HubStore | str, data_dir: str | Path, dest: str | Path, older_than_days: float,
            now: float | None = None, batch: int = 5000, compress: bool = False,
            received_grace_days: float = 1.0) -> ArchiveReport:
    """Archive every alert older than `older_than_days` (see the module docstring for what 'old' means).

    `store` is an open HubStore or a store URL; `data_dir` is the hub's data folder (evidence paths in
    the store are relative to it); `dest` the archive folder (created). `now` is for tests and replays.
    """
    if older_than_days < 0 or received_grace_days < 0:
        raise ValueError("older_than_days and received_grace_days must be >= 0")
    if batch < 1:
        raise ValueError("batch must be >= 1")
    own = isinstance(store, str)
    st = open_store(store) if isinstance(store, str) else store
    data_dir, dest = Path(data_dir), Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        if not os.access(dest, os.W_OK | os.X_OK):
            raise ArchiveError(f"archive folder {dest} is not writable")
        side = _Side(st)
        report = ArchiveReport()
        recover(side, data_dir, dest, report)
        now = time.time() if now is None else now
        cutoff, received_before = now - older_than_days * DAY, now - received_grace_days * DAY
        while True:
            staged = stage_batch(side, data_dir, dest, cutoff, received_before, batch, compress, report)
            if staged is None:
                break
            pending, alerts = staged
            final = _finish(side, data_dir, dest, pending, alerts)
            report.alerts += len(alerts)
            report.decisions += sum(len(a["decisions"]) for a in alerts)
            report.files.append(str(final))
            log.info("archived %d alerts to %s", len(alerts), final)
        return report
    finally:
        if own:
            st.close()
