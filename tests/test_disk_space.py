"""Room to breathe on the data volume (firstboot/disk_space.py): its reserve, the warning before it is
full, what is dropped, and Postgres back once there is space again.

Everything here is real: ext4 made by the agent's own storage code on a loop device, mounted; a real
PostgreSQL 15 (tests/postgres_cluster.py) with its data on it, filled by the `postgres` user (as the
data stack's container writes) until Postgres PANICs; `firstboot health` measuring with statvfs and
tune2fs. What is not here is Docker: the data stack's postgres container restarts on its own
(`restart: unless-stopped`, checked below), which the test plays by starting the server again.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from firstboot_machine import Machine
from measured import say
from postgres_cluster import Cluster, running_cluster
from stack_fixtures import ROOTFS

from builder.config.schema import PlatformConfig
from builder.disk_status import disk_line
from builder.local.instances import LocalInstance
from firstboot import disk_space, storage
from firstboot.backup_record import MARKER
from firstboot.cli import main

MiB = 1024 * 1024
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root")


@pytest.fixture
def volume(tmp_path) -> Iterator[tuple[Path, Path]]:
    """A 96 MiB blank loop device the agent formats (storage.prepare), mounted: (device, mount point)."""
    image = tmp_path / "data.img"
    with open(image, "wb") as handle:
        handle.truncate(96 * MiB)
    device = Path(
        subprocess.run(
            ["losetup", "--find", "--show", image], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    mount = Path(tempfile.mkdtemp(prefix="data-volume-"))  # not under pytest's 0700 tmp: Postgres enters it
    try:
        assert storage.prepare(device).formatted
        subprocess.run(["mount", device, mount], check=True)
        try:
            yield device, mount
        finally:
            subprocess.run(["umount", mount], check=True)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)
        mount.rmdir()


def reserved_blocks(device: Path) -> tuple[int, int]:
    fields = disk_space.superblock(device)
    return int(fields["Reserved block count"]), int(fields["Block count"])


def as_postgres(*command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], capture_output=True, text=True)


def fill_to(mount: Path, folder: Path, free_percent: float) -> None:
    """Let the `postgres` user take space until `free_percent` is left to the apps."""
    stats = os.statvfs(mount)
    used = stats.f_blocks - stats.f_bfree
    room = used + stats.f_bavail
    take = (stats.f_bavail - int(room * free_percent / 100)) * stats.f_frsize
    filler = folder / f"filler-{free_percent:g}"
    assert as_postgres("fallocate", "--length", str(take), filler).returncode == 0


def sql(cluster: Cluster, statement: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", "-h", str(cluster.root), "-p", cluster.port, "-U", "postgres", "-At", "-c", statement],
        capture_output=True,
        text=True,
    )


def wait_for_the_server_to_exit(cluster: Cluster) -> None:
    """After a PANIC the postmaster runs crash recovery, which needs to write WAL too; wait until it gave up."""
    lock = cluster.data / "postmaster.pid"
    pid = int(lock.read_text().split()[0]) if lock.exists() else None
    deadline = time.monotonic() + 60
    while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def backups(mount: Path) -> None:
    """Four complete 6 MiB backups (the record names the second newest, as after a clock that ran ahead),
    one folder without the marker, one left by a run that did not finish."""
    folder = mount / "backups"
    (folder / "20250104T033000Z").mkdir(parents=True)
    (folder / "20250104T033000Z" / "files.tar.gz").write_bytes(b"\1" * 6 * MiB)
    (folder / "20250104T033000Z" / MARKER).write_text("checked\n")
    (folder / "last.json").write_text(json.dumps({"last_good": {"name": "20250103T033000Z"}}))
    for name in ("20250101T033000Z", "20250102T033000Z", "20250103T033000Z", "20241231T000000Z", ".partial-x"):
        (folder / name).mkdir(parents=True)
        (folder / name / "files.tar.gz").write_bytes(b"\1" * (6 * MiB if name.startswith("2025") else MiB))
        if name.startswith("2025"):
            (folder / name / MARKER).write_text("checked\n")


def backup_folders(mount: Path) -> list[str]:
    return sorted(path.name for path in (mount / "backups").iterdir() if path.is_dir())


def health(machine: Machine, capsys) -> tuple[str, str]:
    """`firstboot health` once: (its disk line, all it said)."""
    assert main(["health"], machine.settings(containers=lambda project: [])) == 0
    said = capsys.readouterr().out
    recorded = json.loads((machine.paths.state_dir / "health.json").read_text())["disk"]
    return recorded["line"], said


def test_a_full_volume_is_warned_of_then_dropped_from_then_given_its_reserve_and_postgres_comes_back(
    volume, tmp_path, capsys
):
    device, mount = volume
    reserved, blocks = reserved_blocks(device)
    assert reserved == blocks * 5 // 100  # the agent's mkfs keeps 5% for root (it used -m 0)
    machine = Machine(tmp_path / "m", data_dir=mount)
    machine.instance_config()
    backups(mount)

    with running_cluster("pg", parent=mount, initdb_options=["--wal-segsize=1"]) as cluster:
        assert sql(cluster, "CREATE TABLE kept AS SELECT generate_series(1, 1000) AS n").returncode == 0
        line, said = health(machine, capsys)
        assert line.endswith("; ok") and line in said and "inodes" in line

        # Filling up: the warning comes before anything is dropped.
        fill_to(mount, cluster.root, 15)
        line, said = health(machine, capsys)
        assert "warning: under 20% free" in line and "dropped" not in said
        assert disk_line(line).endswith("WARNING: under 20% free")
        assert backup_folders(mount) == [
            ".partial-x",
            "20241231T000000Z",
            "20250101T033000Z",
            "20250102T033000Z",
            "20250103T033000Z",
            "20250104T033000Z",
        ]

        # Under 10% free: the unfinished backup and the older complete ones go, oldest first, until 20% is free.
        fill_to(mount, cluster.root, 6)
        line, said = health(machine, capsys)
        assert "firstboot: data volume: dropped backups .partial-x, 20250101T033000Z, 20250102T033000Z" in said
        assert "dropped backups .partial-x, 20250101T033000Z, 20250102T033000Z (" in line
        kept = backup_folders(mount)
        # The newest complete one, the one the record names, and the folder that never counted.
        assert kept == ["20241231T000000Z", "20250103T033000Z", "20250104T033000Z"]
        assert sql(cluster, "SELECT count(*) FROM kept").stdout.strip() == "1000"

        # Full: the postgres user takes the rest, Postgres PANICs writing WAL and does not start again.
        as_postgres("dd", "if=/dev/zero", f"of={cluster.root / 'rest'}", "bs=64k")
        # Each switch to a new WAL segment needs a new file (no checkpoint recycled one).
        sql(
            cluster,
            "DO $$ BEGIN FOR i IN 1..50 LOOP INSERT INTO kept VALUES (0); PERFORM pg_switch_wal(); END LOOP; END $$",
        )
        wait_for_the_server_to_exit(cluster)  # its crash recovery fails the same way: it gives up
        assert not cluster.running()
        assert "No space left on device" in (cluster.root / "log").read_text()
        assert cluster.start().returncode != 0  # what Docker's restart of the container meets while full

        # The next health run: nothing left to drop, so the reserve goes to the apps, and says so.
        began = time.monotonic()
        line, said = health(machine, capsys)
        assert "firstboot: data volume: released the reserve" in said
        assert "the reserve is down to 0 B: free space or grow the volume (builder resize)" in line
        assert reserved_blocks(device)[0] == 0
        assert cluster.start().returncode == 0  # no hand step: the restart that failed before works now
        say(
            f"full data volume: Postgres accepted connections {time.monotonic() - began:.1f} s after the health run "
            "began (on an instance: at the next run, within a minute, plus Docker's restart delay)"
        )
        assert sql(cluster, "SELECT count(*) FROM kept").stdout.strip() == "1000"

        # Space back (the owner deleted something, or grew the volume): the reserve comes back.
        for filler in cluster.root.glob("filler-*"):
            filler.unlink()
        (cluster.root / "rest").unlink()
        line, said = health(machine, capsys)
        assert "firstboot: data volume: reserve back to" in said and line.endswith("; ok")
        assert reserved_blocks(device) == (reserved, blocks)
        assert sql(cluster, "INSERT INTO kept VALUES (1001)").returncode == 0


def test_a_volume_made_without_a_reserve_gets_it_at_boot_when_there_is_room(tmp_path):
    """The storage step on a volume the agent made before (mkfs -m 0): the reserve is set, and said."""
    machine = Machine(tmp_path / "m")
    device = machine.disk("vol-0123456789abcdef0")
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-L", storage.DATA_LABEL, device], check=True)
    machine.instance_config()
    machine.cloud_init("local-a")
    assert main(["run", "--only", "config", "--only", "identity", "--only", "storage"], machine.settings()) == 0
    reserved, blocks = reserved_blocks(device)
    assert reserved == blocks * 5 // 100
    storage_step = next(step for step in machine.status()["steps"] if step["name"] == "storage")
    assert (
        "existing filesystem kept" in storage_step["detail"]
        and "reserve set to 3.2 MiB (5%), was 0 B" in (storage_step["detail"])
    )


def test_a_volume_too_full_for_the_reserve_keeps_the_room_it_has(tmp_path):
    """Set now, the reserve would leave the apps under 10% free: it waits (the health check sets it later)."""
    image = tmp_path / "data.img"
    content = tmp_path / "content"
    content.mkdir()
    (content / "big").write_bytes(b"\1" * (52 * MiB))
    with open(image, "wb") as handle:
        handle.truncate(64 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-L", storage.DATA_LABEL, "-d", content, image], check=True)
    said = disk_space.keep_reserve(image, disk_space.space_from_superblock(image), disk_space.Thresholds())
    assert said.startswith("reserve not set: too full for 3.2 MiB (5%)")
    assert reserved_blocks(image)[0] == 0


def test_builder_status_shows_the_disk_line_and_its_warning(tmp_path):
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path)}})
    instance = LocalInstance(config, "alpha")
    instance.directory.mkdir(parents=True)
    assert instance.disk() == "-" and disk_line("-") is None
    instance.console.write_text(
        "ai-platform disk: 37% of 9.8 GiB used, inodes 1%; ok\r\n"
        "firstboot: data volume: dropped backups 20250101T033000Z (1.1 GiB): under 10% free\r\n"
        "ai-platform disk: 91% of 9.8 GiB used, inodes 1%; warning: under 20% free\r\n"
    )
    assert disk_line(instance.disk()) == "91% of 9.8 GiB used, inodes 1%; WARNING: under 20% free"
    assert disk_line("ai-platform disk: 37% of 9.8 GiB used, inodes 1%; ok") == "37% of 9.8 GiB used, inodes 1%"


def test_every_container_on_the_data_volume_restarts_on_its_own():
    """The stacks' way back once there is space again: Docker restarts an exited container (Postgres exits
    after its PANIC) for as long as nobody stopped it."""
    for compose in sorted((ROOTFS / "opt/ai-platform/stacks").glob("*/compose.yaml")):
        for name, service in yaml.safe_load(compose.read_text())["services"].items():
            if service.get("profiles") or service.get("restart") == "no":
                continue
            assert service.get("restart") in ("unless-stopped", "always"), f"{compose.parent.name}/{name}"
