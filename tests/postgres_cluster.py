"""A throwaway PostgreSQL 15 cluster for the tests that need the real server (Debian's postgresql-15):
run by the `postgres` user (it refuses root), listening only on a private UNIX socket."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Cluster:
    root: Path  # its socket's folder (PGHOST)
    port: str

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start(self) -> subprocess.CompletedProcess:
        """pg_ctl start, waiting until it accepts connections or gives up (its return code says which)."""
        options = f"-c listen_addresses='' -c unix_socket_directories={self.root} -p {self.port}"
        return _as_postgres(
            POSTGRES_BIN / "pg_ctl", "-D", self.data, "-o", options, "-w", "-l", self.root / "log", "start", check=False
        )

    def running(self) -> bool:
        return _as_postgres(POSTGRES_BIN / "pg_ctl", "-D", self.data, "status", check=False).returncode == 0


def _as_postgres(*command, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *map(str, command)], check=check, capture_output=True, text=True
    )


@contextmanager
def running_cluster(prefix: str, parent: Path | None = None, initdb_options: Sequence[str] = ()) -> Iterator[Cluster]:
    """initdb (trust on the socket), start, yield, stop (when it still runs) and remove. `parent`:
    where its folder goes (a filesystem the test made), the temp dir when None."""
    user = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # not under pytest's 0700 tmp: the server enters it
    os.chown(root, user.pw_uid, user.pw_gid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    cluster = Cluster(root, port)
    _as_postgres(POSTGRES_BIN / "initdb", "-D", cluster.data, "-U", "postgres", "--auth=trust", *initdb_options)
    started = cluster.start()
    if started.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed: {started.stderr or started.stdout}")
    try:
        yield cluster
    finally:
        if cluster.running():
            _as_postgres(POSTGRES_BIN / "pg_ctl", "-D", cluster.data, "-m", "fast", "stop")
        shutil.rmtree(root)
