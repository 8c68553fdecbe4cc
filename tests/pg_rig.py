"""A real PostgreSQL server for tests and the benchmark, from Debian's packages.

`initdb` into a fresh temporary folder, `pg_ctl start` on a free loopback port with the unix socket in
that folder, trust authentication for one superuser (`zastava`), torn down when the process exits.
Durability settings are PostgreSQL's defaults (fsync on, synchronous_commit on): the tests and the
benchmark measure the store as it runs in the field.

PostgreSQL refuses to run as root. When we are root (CI), the server runs as the `postgres` system
user (runuser), and the folder lives directly under /tmp (pytest's own tmp folders are 0700 root)
and is chowned to that user.

Skips (pytest) only when the binaries are not installed: `make test` as root installs the
`postgresql` package (scripts/system-deps.sh).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

SUPERUSER = "zastava"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin that has initdb, or the one on PATH."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
                   if Path(p).parts[-3].isdigit() else 0)
    if cands:
        return Path(cands[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def not_available_reason() -> str | None:
    if find_bindir() is None:
        return "PostgreSQL is not installed (Debian package `postgresql`; `make test` as root installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user to run the server as"
    return None


@dataclass
class PgServer:
    root: Path
    port: int
    bindir: Path
    proc_user: str | None  # the system user the server runs as, when we are root
    max_connections: int = 200

    @property
    def host_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}"

    def url(self, db: str = "postgres") -> str:
        return f"{self.host_url}/{db}"

    def _run(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        full = [str(self.bindir / cmd[0]), *cmd[1:]]
        if self.proc_user:
            full = ["runuser", "-u", self.proc_user, "--", *full]
        r = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    @classmethod
    def start(cls, max_connections: int = 200) -> PgServer:
        why = not_available_reason()
        if why:
            raise RuntimeError(why)
        bindir = find_bindir()
        assert bindir is not None
        root = Path(tempfile.mkdtemp(prefix="zastava-pg-", dir="/tmp"))  # short: unix socket paths are <108 bytes
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            pw = pwd.getpwnam(user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        srv = cls(root, 0, bindir, user)
        # --no-sync only skips fsyncing initdb's own template files; the running server keeps fsync on
        srv._run("initdb", "-D", str(root / "data"), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        srv.max_connections = max_connections
        last = ""
        for _ in range(5):  # a free port can be taken between probe and bind: try another
            srv.port = free_port()
            r = srv._pg_ctl_start()
            if r.returncode == 0:
                atexit.register(srv.stop)
                return srv
            last = r.stderr + (root / "server.log").read_text(errors="replace")[-2000:]
        srv.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root}"
                f" -c max_connections={self.max_connections} -c fsync=on -c synchronous_commit=on")
        return self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-w",
                         "-t", "60", "-o", opts, "start", check=False)

    def pause(self) -> None:
        """Stop the server (fast shutdown: clients are cut off), keeping its data for `resume`."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        r = self._pg_ctl_start()
        if r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart on port {self.port}: {r.stderr.strip()}")

    def create_db(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_db(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop", check=False)
        deadline = time.monotonic() + 10
        while (self.root / "data" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


_shared: PgServer | None = None


def shared_server() -> PgServer:
    """One server per test process, started on first use (several test files share it)."""
    global _shared
    if _shared is None:
        _shared = PgServer.start()
    return _shared


class MultiHubRig:
    """Several `zastava central` hub processes on one PostgreSQL database, one shared evidence folder,
    and the sync rig's edge side (keys, outboxes, `python -m sync.sender` with every hub endpoint).

    The shared data_dir stands for what a deployment mounts on every hub machine (a shared filesystem),
    so an alert's evidence path means the same file whichever hub stored it.
    """

    def __init__(self, root: Path, store_url: str, hubs: int = 2, checkpoints: list[str] | None = None,
                 heartbeat_s: float = 0.5):
        from sync.harness import Rig

        self.rig = Rig(root, checkpoints=checkpoints or ["CP-01"], heartbeat_s=heartbeat_s)
        self.store_url = store_url
        self.data_dir = self.rig.data_dir
        self.configs: list[Path] = []
        self.endpoints: list[str] = []
        base = self.rig.config.read_text()
        for i in range(hubs):
            port = self.rig.port if i == 0 else free_port()
            ep = f"tcp://127.0.0.1:{port}"
            cfg = root / f"central-{i}.toml"
            cfg.write_text(base.replace(self.rig.endpoint, ep) + f'store = "{store_url}"\n')
            self.configs.append(cfg)
            self.endpoints.append(ep)
        self.hubs: list[subprocess.Popen | None] = [None] * hubs

    def start_hub(self, i: int, env: dict | None = None) -> subprocess.Popen:
        import json
        import os
        import sys

        from sync.harness import REPO

        log = open(self.rig.root / f"hub-{i}.log", "ab")
        p = subprocess.Popen([sys.executable, "-m", "edge_agent", "central", "--config", str(self.configs[i])],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **(env or {})})
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"hub {i} did not start; see {self.rig.root / f'hub-{i}.log'}")
        json.loads(line)
        self.hubs[i] = p
        return p

    def start_sender(self, cp: str = "CP-01", wait: bool = True) -> subprocess.Popen:
        return self.rig.start_sender(cp, endpoints=self.endpoints, wait=wait)

    def kill_hub(self, i: int, sig: int = 9) -> None:
        self.rig.kill(self.hubs[i], sig)

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.store_url) as c:
            return c.execute(sql, args).fetchall()

    def alert_ids(self) -> list[str]:
        return [r[0] for r in self.query("SELECT uuid FROM alerts")]

    def stop_all(self) -> None:
        import signal

        for p in self.hubs:
            self.rig.kill(p, signal.SIGTERM)
        self.rig.stop_all()
