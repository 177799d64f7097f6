"""A throwaway PostgreSQL 15 cluster for the tests that need the real server (Debian's postgresql-15):
run by the `postgres` user (it refuses root), listening only on a private UNIX socket."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class Cluster:
    root: Path  # its socket's folder (PGHOST)
    port: str


def _as_postgres(*command) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], check=True, capture_output=True)


@contextmanager
def running_cluster(prefix: str) -> Iterator[Cluster]:
    """initdb (trust on the socket), start, yield, stop and remove."""
    user = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix=prefix))  # not under pytest's 0700 tmp: the server enters it
    os.chown(root, user.pw_uid, user.pw_gid)
    data = root / "data"
    _as_postgres(POSTGRES_BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    options = f"-c listen_addresses='' -c unix_socket_directories={root} -p {port}"
    _as_postgres(POSTGRES_BIN / "pg_ctl", "-D", data, "-o", options, "-w", "-l", root / "log", "start")
    try:
        yield Cluster(root, port)
    finally:
        _as_postgres(POSTGRES_BIN / "pg_ctl", "-D", data, "-m", "fast", "stop")
        shutil.rmtree(root)
