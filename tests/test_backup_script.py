"""ai-platform-backup's failure paths: each step fails alone, and the backups already there survive.

The script runs as on the instance, with the real PostgreSQL 15 tools (pg_dump, pg_dumpall,
pg_restore, psql) against a throwaway cluster, the real tar, du and df; only `docker exec` is
stood in for (tests/standins/docker_exec.py says why), which is also where failures are injected:
the database listing, one dump, the roles, the files, the check with pg_restore --list, a dump that
came out wrong, a kill in the middle. tests/test_stack_docker.py runs it against the real data stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from postgres_cluster import POSTGRES_BIN, running_cluster
from stack_fixtures import BACKUP

STANDIN = Path(__file__).parent / "standins" / "docker_exec.py"
OLDER = ["20200101T000000Z", "20200102T000000Z"]  # complete backups made before the run under test

pytestmark = pytest.mark.skipif(
    not (POSTGRES_BIN / "postgres").exists() or not shutil.which("psql"),
    reason="needs Debian's postgresql-15 (scripts/system-packages.txt)",
)


@pytest.fixture(scope="module")
def cluster():
    """A PostgreSQL 15 cluster run by the `postgres` user (it refuses root) on a private socket, with
    two databases (one owned by a role of its own, as the apps' are) and a row in each: yields the
    environment that points the Postgres tools at it, and psql."""
    with running_cluster("backup-pg-") as running:
        environ = {"PGHOST": str(running.root), "PGPORT": running.port}

        def psql(sql: str, database: str = "postgres") -> str:
            command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-U", "postgres", "-d", database, "-c", sql]
            result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **environ})
            assert result.returncode == 0, f"psql failed on {sql}:\n{result.stderr}"
            return result.stdout

        psql("CREATE ROLE app_owner LOGIN PASSWORD 'not-a-secret'")
        psql("CREATE DATABASE alpha")
        psql("CREATE DATABASE beta OWNER app_owner")
        for database in ("alpha", "beta"):
            psql(f"CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept in {database}')", database)
        yield environ, psql


class Volume:
    """A data volume's folders, the apps' files in them, and the script run on it."""

    def __init__(self, root: Path, cluster_environ: dict, data: Path | None = None):
        self.data = data or root / "data"
        self.bin = root / "bin"
        self.bin.mkdir()
        for name in ("docker", "tar"):
            (self.bin / name).symlink_to(STANDIN)
        self.environ = {
            **os.environ,
            **cluster_environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "AI_PLATFORM_DATA": str(self.data),
            "AI_PLATFORM_ROOT": str(root / "image"),  # no custom services
            "BACKUP_TEST_HANG_FLAG": str(root / "hanging"),
        }
        for path, text in {
            "platform/secrets.env": "KEY=value\n",
            "platform/rclone-cache/vfs/drive/chunk": "a cached copy of a Drive file\n",
            "n8n/config": "{}\n",
            "gdrive/report.pdf": "the Drive, as mounted\n",
        }.items():
            (self.data / path).parent.mkdir(parents=True, exist_ok=True)
            (self.data / path).write_text(text)

    @property
    def backups(self) -> Path:
        return self.data / "backups"

    def run(self, *arguments: str, **environ: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BACKUP), *arguments], env={**self.environ, **environ}, capture_output=True, text=True, timeout=120
        )

    def listed(self) -> list[str]:
        result = self.run("list")
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    def record(self) -> dict:
        return json.loads((self.backups / "last.json").read_text())

    def partials(self) -> list[str]:
        return sorted(p.name for p in self.backups.glob(".partial-*"))

    def with_older_backups(self, made: Path) -> None:
        """Two complete backups, copies of one the script made, named as if made on earlier days."""
        self.backups.mkdir(parents=True, exist_ok=True)
        for name in OLDER:
            shutil.copytree(made / "backup", self.backups / name)
        shutil.copy(made / "last.json", self.backups / "last.json")
        assert self.listed() == OLDER[::-1]


@pytest.fixture(scope="module")
def made(tmp_path_factory, cluster) -> Path:
    """One complete backup and its record, made once for the module's tests to start from."""
    root = tmp_path_factory.mktemp("made")
    volume = Volume(root, cluster[0])
    made = volume.run("create")
    assert made.returncode == 0, made.stderr
    [name] = volume.listed()
    (volume.backups / name).rename(root / "backup")
    (volume.backups / "last.json").rename(root / "last.json")
    return root


@pytest.fixture
def volume(tmp_path, cluster) -> Volume:
    return Volume(tmp_path, cluster[0])


def test_a_backup_holds_the_databases_roles_and_apps_files_but_not_the_drive_and_restores(volume, cluster):
    psql = cluster[1]
    made = volume.run("create")
    assert made.returncode == 0, made.stderr
    [name] = volume.listed()
    backup = volume.backups / name
    assert (backup / "databases").read_text().split() == ["alpha", "beta"]
    assert "CREATE ROLE app_owner" in (backup / "globals.sql").read_text()
    assert (backup / "complete").is_file() and not volume.partials()
    files = subprocess.run(["tar", "-tzf", str(backup / "files.tar.gz")], capture_output=True, text=True, check=True)
    listed = files.stdout.split()
    assert "platform/secrets.env" in listed and "n8n/config" in listed
    # What can be fetched again is not copied: rclone's cache of the Drive, and the Drive itself.
    assert not [p for p in listed if p.startswith(("platform/rclone-cache", "gdrive"))]
    record = volume.record()
    assert record["last_attempt"]["ok"] is True
    assert record["last_good"]["name"] == name and record["last_good"]["databases"] == 2
    assert record["last_good"]["bytes"] > 0
    # A dump of a complete backup restores: the table dropped since is back.
    psql("DROP TABLE notes", "beta")
    restored = volume.run("restore", name, "beta")
    assert restored.returncode == 0, restored.stderr
    assert psql("SELECT body FROM notes", "beta").strip() == "kept in beta"


FAILURES = {
    # The listing once failed silently (`done < <(psql …)`): a backup with no database in it, which
    # then pruned the good ones.
    "listing": ({"BACKUP_TEST_FAIL": r"^psql .*datname FROM pg_database"}, "listing the databases failed (exit 1)"),
    "one dump": ({"BACKUP_TEST_FAIL": r"^pg_dump .* beta$"}, "dumping database beta (pg_dump) failed (exit 1)"),
    "roles": ({"BACKUP_TEST_FAIL": r"^pg_dumpall"}, "dumping the roles (pg_dumpall --globals-only) failed"),
    "files": ({"BACKUP_TEST_FAIL": r"^tar --create"}, "copying the apps' files (tar) failed (exit 2)"),
    "check": (
        {"BACKUP_TEST_FAIL": r"^pg_restore --list"},
        "checking the dump of alpha (pg_restore --list) failed",
    ),
    "dump that came out wrong": (
        {"BACKUP_TEST_GARBLE": r"^pg_dump .* alpha$"},
        "checking the dump of alpha (pg_restore --list) failed",
    ),
    "postgres down": ({"BACKUP_TEST_CONTAINER": ""}, "the data stack's postgres is not running"),
    "reserve": ({"AI_PLATFORM_BACKUP_RESERVE_PERCENT": "100"}, "not enough free space"),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_failed_step_fails_the_backup_leaves_nothing_partial_and_prunes_nothing(volume, made, failure):
    volume.with_older_backups(made)
    injected, reason = FAILURES[failure]
    made = volume.run("create", AI_PLATFORM_BACKUP_KEEP="1", **injected)
    assert made.returncode == 1, made.stdout
    assert reason in made.stderr
    assert not volume.partials()
    assert volume.listed() == OLDER[::-1]  # keep 1, yet both kept: nothing is pruned after a failure
    assert sorted(p.name for p in volume.backups.iterdir() if not p.name.startswith(".")) == [*OLDER, "last.json"]
    record = volume.record()
    assert record["last_attempt"]["ok"] is False and reason in record["last_attempt"]["reason"]
    assert record["last_good"]["databases"] == 2  # still the last good one's


def test_a_backup_killed_midway_removes_its_partial_folder(volume):
    process = subprocess.Popen(
        [str(BACKUP), "create"],
        env={**volume.environ, "BACKUP_TEST_HANG": r"^pg_dump .* beta$"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    flag = Path(volume.environ["BACKUP_TEST_HANG_FLAG"])
    for _ in range(600):  # until the dump of beta has begun
        if flag.exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    assert flag.exists(), process.communicate()
    assert volume.partials()
    os.killpg(process.pid, signal.SIGTERM)  # as systemd stops the unit: every process of it
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and "stopped by SIGTERM" in stderr
    assert not volume.partials() and volume.listed() == []
    assert volume.record()["last_attempt"]["reason"] == "stopped by SIGTERM"


def test_what_a_crash_left_is_removed_and_a_folder_without_its_marker_never_counts(volume, made):
    volume.with_older_backups(made)
    crashed = volume.backups / ".partial-20200103T000000Z"
    crashed.mkdir()
    (crashed / "alpha.dump").write_text("half a dump")
    unmarked = volume.backups / "20200104T000000Z"  # newer than the complete ones, but not complete:
    shutil.copytree(volume.backups / OLDER[1], unmarked)
    (unmarked / "complete").unlink()
    dump = next(unmarked.glob("*.dump"))
    dump.write_bytes(b"not a dump")  # one of its dumps does not read back

    made = volume.run("create", AI_PLATFORM_BACKUP_KEEP="1")
    assert made.returncode == 0, made.stderr
    assert "removed .partial-20200103T000000Z, left by an earlier run that did not finish" in made.stdout
    assert "not counted as backups (no 'complete' marker; remove them when not needed): 20200104T000000Z" in made.stdout
    [newest] = volume.listed()  # keep 1: the new one; the older complete ones pruned
    assert newest not in OLDER and not crashed.exists()
    assert unmarked.is_dir()  # never counted, so never pruned either
    assert "removed backup 20200102T000000Z (keeping the newest 1)" in made.stdout
    refused = volume.run("restore", unmarked.name)
    assert refused.returncode == 1 and "no complete backup named '20200104T000000Z'" in refused.stderr


def test_the_earlier_scripts_backups_count_once_their_dumps_read_back_and_its_empty_one_never(volume, made):
    """The script before the marker renamed a backup once written: on a volume it left, its backups
    count (and are pruned in turn, so their space comes back); its empty one (no database list, when
    its listing failed) does not."""
    volume.backups.mkdir(parents=True)
    earlier = volume.backups / "20200101T000000Z"
    shutil.copytree(made / "backup", earlier)
    (earlier / "complete").unlink()
    empty = volume.backups / "20200102T000000Z"
    empty.mkdir()
    shutil.copy(earlier / "globals.sql", empty)
    shutil.copy(earlier / "files.tar.gz", empty)
    made_now = volume.run("create", AI_PLATFORM_BACKUP_KEEP="2")
    assert made_now.returncode == 0, made_now.stderr
    assert f"counted {earlier.name} as a backup" in made_now.stdout
    uncounted = "not counted as backups (no 'complete' marker; remove them when not needed)"
    assert f"{uncounted}: {empty.name}" in made_now.stdout
    listed = volume.listed()
    assert len(listed) == 2 and listed[1] == earlier.name
    time.sleep(1.1)  # backup names are timestamps to the second
    again = volume.run("create", AI_PLATFORM_BACKUP_KEEP="2")  # the earlier one is pruned now
    assert again.returncode == 0, again.stderr
    assert f"removed backup {earlier.name} (keeping the newest 2)" in again.stdout and not earlier.exists()
    assert empty.is_dir()


def test_pruning_keeps_the_newest_complete_backups_and_the_count_must_be_at_least_one(volume, made):
    volume.with_older_backups(made)
    made = volume.run("create", AI_PLATFORM_BACKUP_KEEP="2")
    assert made.returncode == 0, made.stderr
    listed = volume.listed()
    assert len(listed) == 2 and listed[1] == OLDER[1] and listed[0] > OLDER[1]
    # A complete backup named after the new one (made while the clock ran ahead) does not push it out.
    (volume.backups / listed[0]).rename(volume.backups / "20200103T000000Z")  # and frees the name of this second
    shutil.copytree(volume.backups / OLDER[1], volume.backups / "20990101T000000Z")
    made = volume.run("create", AI_PLATFORM_BACKUP_KEEP="1")
    assert made.returncode == 0, made.stderr
    listed = volume.listed()
    assert len(listed) == 2 and listed[0] == "20990101T000000Z" and "2020" < listed[1] < "2099"
    for bad in ("0", "two", "-1"):
        refused = volume.run("create", AI_PLATFORM_BACKUP_KEEP=bad)
        assert refused.returncode == 1 and "AI_PLATFORM_BACKUP_KEEP must be a whole number" in refused.stderr
    refused = volume.run("create", AI_PLATFORM_BACKUP_RESERVE_PERCENT="101")
    assert refused.returncode == 1 and "AI_PLATFORM_BACKUP_RESERVE_PERCENT must be" in refused.stderr
    assert volume.listed() == listed


@pytest.fixture
def small_filesystem(tmp_path):
    """A 64 MiB ext4 made like the data volume's (no reserved blocks), loop-mounted: needs root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root (the suite runs as root here and in CI)")
    image, mount = tmp_path / "volume.img", tmp_path / "mnt"
    with open(image, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True)
    mount.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"no loop mount here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_backup_that_would_eat_into_the_reserve_is_refused_before_it_writes(tmp_path, cluster, small_filesystem):
    (tmp_path / "run").mkdir()
    volume = Volume(tmp_path / "run", cluster[0], data=small_filesystem)
    made = volume.run("create")
    assert made.returncode == 0, made.stderr  # the databases and a few files fit, with 10% to spare
    [first] = volume.listed()
    # 40 MiB of an app's files that do not compress: the next backup would leave less than 10% free.
    with open(volume.data / "n8n" / "binary-data", "wb") as handle:
        handle.write(os.urandom(40 * 1024 * 1024))
    refused = volume.run("create")
    assert refused.returncode == 1
    said = refused.stderr
    assert "not enough free space on" in said and "the backup needs about" in said and "MiB free" in said
    assert "must stay free (10% of the filesystem, AI_PLATFORM_BACKUP_RESERVE_PERCENT)" in said
    assert volume.listed() == [first] and not volume.partials()
    assert "not enough free space" in volume.record()["last_attempt"]["reason"]
