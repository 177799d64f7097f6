"""The data filesystem grows into a larger volume (`builder resize`): resize2fs and e2fsck run for real.

At boot the agent's storage step grows it offline, on a disk image as in the other agent tests. At
runtime it grows online, mounted: a real ext4 on a loop device (`losetup -c` plays the kernel seeing
the volume grow, as it does for an EBS volume or a virtio disk qemu resized). The kernel allows an
online resize to a root that holds CAP_SYS_RESOURCE only; the test that needs it says so and is
skipped where root lacks it (some containers), and the VM chain covers it there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from firstboot_machine import Machine

from firstboot import data_growth, storage
from firstboot.cli import main

VOLUME_ID = "vol-0123456789abcdef0"
MIB = 1024**2


def debugfs_cat(device, name):
    result = subprocess.run(["debugfs", "-R", f"cat /{name}", str(device)], capture_output=True, text=True, check=True)
    return result.stdout


def storage_detail(machine) -> str:
    return next(s for s in machine.status()["steps"] if s["name"] == "storage")["detail"]


def test_a_volume_made_larger_while_stopped_grows_at_the_next_boot_and_keeps_its_files(tmp_path):
    machine = Machine(tmp_path / "m")
    disk = machine.disk(VOLUME_ID, size=64 * MIB)
    machine.instance_config()
    machine.cloud_init("local-a")
    assert main(["run"], machine.settings()) == 0
    note = tmp_path / "note"
    note.write_text("kept across the growth\n")
    subprocess.run(["debugfs", "-w", "-R", f"write {note} note", str(disk)], check=True, capture_output=True)
    os.truncate(disk, 256 * MIB)  # what `builder resize` did to the volume while the instance was down

    assert main(["run"], machine.settings()) == 0
    assert "data filesystem grown from 64 MiB to 256 MiB (offline, before the mount)" in storage_detail(machine)
    assert data_growth.filesystem_bytes(disk) == 256 * MIB
    assert debugfs_cat(disk, "note") == "kept across the growth\n"
    assert storage.probe(disk).kind == storage.PLATFORM

    # The next boot has nothing to grow: no check runs (e2fsck -f would stamp the superblock).
    before = disk.read_bytes()
    assert main(["run"], machine.settings()) == 0
    assert "grown" not in storage_detail(machine)
    assert disk.read_bytes() == before


def test_a_filesystem_is_never_shrunk_to_a_smaller_device(tmp_path):
    disk = tmp_path / "data.img"
    disk.touch()
    os.truncate(disk, 128 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-L", storage.DATA_LABEL, str(disk)], check=True)
    os.truncate(disk, 96 * MIB)
    assert data_growth.grow(disk) is None
    assert data_growth.filesystem_bytes(disk) == 128 * MIB


@pytest.fixture
def mounted(tmp_path):
    """A real ext4 with the platform's label on a loop device, mounted; (image, device, mount point)."""
    image, mount_point = tmp_path / "data.img", tmp_path / "mnt"
    image.touch()
    os.truncate(image, 64 * MIB)
    mount_point.mkdir()
    device = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=True
    ).stdout.strip()
    mounts = []
    try:
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-L", storage.DATA_LABEL, device], check=True)

        def mount(*options: str) -> None:
            subprocess.run(["mount", *options, device, str(mount_point)], check=True)
            mounts.append(mount_point)

        yield image, device, mount_point, mount
    finally:
        for _ in mounts:
            subprocess.run(["umount", str(mount_point)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)


def grow_volume(image, device, size: int) -> None:
    """The volume grows under the running instance; the kernel sees its new size."""
    os.truncate(image, size)
    subprocess.run(["losetup", "-c", device], check=True)


def can_resize_online() -> bool:
    status = Path("/proc/self/status").read_text().splitlines()
    effective = int(next(line for line in status if line.startswith("CapEff:")).split()[1], 16)
    return bool(effective & (1 << 24))  # CAP_SYS_RESOURCE


@pytest.mark.skipif(not can_resize_online(), reason="root lacks CAP_SYS_RESOURCE, which online resize needs")
def test_grow_data_grows_the_mounted_filesystem_online_and_keeps_its_files(mounted, tmp_path, capsys):
    image, device, mount_point, mount = mounted
    mount()
    (mount_point / "note").write_text("written while it runs\n")
    grow_volume(image, device, 256 * MIB)
    machine = Machine(tmp_path / "m", data_dir=mount_point)

    assert main(["grow-data"], machine.settings()) == 0
    assert "data filesystem grown from 64 MiB to 256 MiB (online)" in capsys.readouterr().out
    assert data_growth.filesystem_bytes(device) == 256 * MIB
    assert os.statvfs(mount_point).f_blocks * os.statvfs(mount_point).f_frsize > 200 * MIB
    assert (mount_point / "note").read_text() == "written while it runs\n"
    assert main(["grow-data"], machine.settings()) == 0
    assert "has no room to grow into" in capsys.readouterr().out


def test_the_health_check_finds_the_mounted_device_and_says_a_failed_growth_once(mounted, tmp_path, capsys):
    """A filesystem the kernel will not grow (mounted read-only, as ext4 remounts itself after an
    error): the health check says why once, not every minute, and leaves it as it was."""
    image, device, mount_point, mount = mounted
    mount("-o", "ro")
    grow_volume(image, device, 256 * MIB)
    assert str(data_growth.device_mounted_at(mount_point)) == device
    machine = Machine(tmp_path / "m", data_dir=mount_point)
    machine.disk(VOLUME_ID)
    machine.instance_config()
    machine.cloud_init("local-a")
    settings = machine.settings(containers=lambda project: [])
    machine.paths.state_dir.mkdir(parents=True)
    (machine.paths.state_dir / "status.json").write_text('{"state": "done", "steps": []}')

    assert main(["health"], settings) == 0
    said = capsys.readouterr().out
    assert f"ai-platform data: the data filesystem could not grow into its larger volume: resize2fs {device}" in said
    assert main(["health"], settings) == 0
    assert "ai-platform data:" not in capsys.readouterr().out
    assert data_growth.filesystem_bytes(device) == 64 * MIB
    assert main(["grow-data"], settings) == 1
