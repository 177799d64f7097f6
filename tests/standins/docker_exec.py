#!/usr/bin/python3
"""Stand-in for `docker ps` and `docker exec` only, and a pass-through `tar`: for tests/test_backup_script.py.

ai-platform-backup runs Postgres's tools inside the data stack's container (`docker exec CONTAINER
pg_dump …`). Its failure paths are tested against the real PostgreSQL 15 tools and a throwaway
cluster on this machine rather than a container, so that each failure can be injected alone and the
suite gets no new Docker platform (CI time; tests/test_stack_docker.py runs the script against the
real data stack). Installed on PATH as `docker` and `tar`:

- `docker ps …` prints one container id (the data stack's postgres, as the label filters find it),
  or nothing when BACKUP_TEST_CONTAINER is set empty (the data stack is down);
- `docker exec [-i] CONTAINER COMMAND…` runs COMMAND here with the environment it was given
  (PGHOST and PGPORT name the cluster);
- `tar …` runs the real tar.

Failures, one at a time, chosen by regular expressions searched in the command line run:
BACKUP_TEST_FAIL: the command writes a few bytes and fails (exit 1; tar: exit 2, a fatal error);
BACKUP_TEST_GARBLE: the command "succeeds" with output that is not what it makes (a dump that came
out wrong); BACKUP_TEST_HANG: the command says so in the file BACKUP_TEST_HANG_FLAG and sleeps (for
a kill in the middle of a backup).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time


def real(program: str) -> str:
    """The program of that name on PATH after this stand-in's own folder."""
    own = os.path.dirname(os.path.abspath(sys.argv[0]))
    rest = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if os.path.abspath(p) != own)
    found = shutil.which(program, path=rest)
    if not found:
        sys.exit(f"stand-in: no real {program} on PATH")
    return found


def command_of(name: str, arguments: list[str]) -> list[str]:
    if name == "tar":
        return [real("tar"), *arguments]
    if arguments[:1] == ["ps"]:
        print(os.environ.get("BACKUP_TEST_CONTAINER", "0123456789ab"))
        sys.exit(0)
    if arguments[:1] == ["exec"]:
        rest = [a for a in arguments[1:] if a not in ("-i", "--interactive")]
        return [real(rest[1]), *rest[2:]]  # rest[0]: the container
    sys.exit(f"docker stand-in: only `ps` and `exec` are stood in for, not: docker {' '.join(arguments)}")


def main() -> None:
    name = os.path.basename(sys.argv[0])
    command = command_of(name, sys.argv[1:])
    line = " ".join([os.path.basename(command[0]), *command[1:]])
    if os.environ.get("BACKUP_TEST_FAIL") and re.search(os.environ["BACKUP_TEST_FAIL"], line):
        if name != "tar":
            sys.stdout.write("PGDMP")  # a start, as a dump cut short leaves
            sys.stdout.flush()
        print(f"{os.path.basename(command[0])}: injected failure", file=sys.stderr)
        sys.exit(2 if name == "tar" else 1)
    if os.environ.get("BACKUP_TEST_GARBLE") and re.search(os.environ["BACKUP_TEST_GARBLE"], line):
        sys.stdout.write("not what pg_dump writes\n")
        sys.exit(0)
    if os.environ.get("BACKUP_TEST_HANG") and re.search(os.environ["BACKUP_TEST_HANG"], line):
        with open(os.environ["BACKUP_TEST_HANG_FLAG"], "w") as flag:
            flag.write(line)
        time.sleep(600)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
