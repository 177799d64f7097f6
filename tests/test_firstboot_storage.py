"""The storage step's reuse rules on real filesystem images (blkid, mkfs.ext4 and debugfs run for real).

Only /sys/block is laid out in a temporary directory, file for file as the kernel shows it, since
the test cannot hot-plug disks into this machine; the end-to-end VM boot covers the real sysfs.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading

import pytest

from firstboot import storage

VOLUME_ID = "vol-0123456789abcdef0"
SIZE = 64 * 1024 * 1024


def image(tmp_path, name="data.img"):
    path = tmp_path / name
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def debugfs_cat(device, name):
    result = subprocess.run(["debugfs", "-R", f"cat /{name}", str(device)], capture_output=True, text=True, check=True)
    return result.stdout


# --- finding the device by serial -------------------------------------------------------------


def sysfs(tmp_path):
    sys_block = tmp_path / "sys" / "block"
    (sys_block / "vda").mkdir(parents=True)
    (sys_block / "vda" / "serial").write_text("rootdisk\n")
    (sys_block / "nvme0n1" / "device").mkdir(parents=True)
    (sys_block / "nvme0n1" / "device" / "serial").write_text("vol0aaaaaaaaaaaaaaaa  \n")
    return sys_block


def test_volume_serial_is_the_id_without_its_dash():
    assert storage.volume_serial(VOLUME_ID) == "vol0123456789abcdef0"
    with pytest.raises(ValueError, match="not an EBS volume id"):
        storage.volume_serial("0123456789abcdef0")


@pytest.mark.parametrize("layout", ["virtio", "nvme"])
def test_finds_the_device_by_serial_not_by_name(tmp_path, layout):
    sys_block = sysfs(tmp_path)
    name = "vdb" if layout == "virtio" else "nvme1n1"
    serial_dir = sys_block / name if layout == "virtio" else sys_block / name / "device"
    serial_dir.mkdir(parents=True)
    # NVMe pads its serial with spaces; virtio ends it with a newline.
    (serial_dir / "serial").write_text("vol0123456789abcdef0" + ("    " if layout == "nvme" else "\n"))
    found = storage.find_device(storage.volume_serial(VOLUME_ID), sys_block, tmp_path / "dev")
    assert found == tmp_path / "dev" / name


def test_waits_for_a_device_that_appears_late(tmp_path):
    sys_block = sysfs(tmp_path)

    def attach():
        (sys_block / "vdc").mkdir()
        (sys_block / "vdc" / "serial").write_text("vol0123456789abcdef0\n")

    timer = threading.Timer(0.3, attach)
    timer.start()
    try:
        found = storage.wait_for_device(
            "vol0123456789abcdef0", timeout=10, sys_block=sys_block, dev_dir=tmp_path / "dev", poll_interval=0.05
        )
    finally:
        timer.cancel()
    assert found.name == "vdc"


def test_a_device_that_never_appears_fails_at_the_deadline(tmp_path):
    sys_block = sysfs(tmp_path)
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    with pytest.raises(storage.DeviceNotFound, match="within 30 s"):
        storage.wait_for_device(
            "vol0123456789abcdef0", timeout=30, sys_block=sys_block, clock=lambda: now[0], sleep=sleep
        )
    assert 30 <= now[0] <= 31
    assert len(slept) == 60


# --- the reuse rules --------------------------------------------------------------------------


def test_blank_device_gets_the_platform_filesystem(tmp_path):
    device = image(tmp_path)
    prepared = storage.prepare(device)
    assert prepared.formatted is True
    fields = storage.probe(device).fields
    assert fields["TYPE"] == "ext4"
    assert fields["LABEL"] == storage.DATA_LABEL
    assert fields["UUID"] == prepared.uuid


def test_platform_filesystem_is_reused_with_its_files_intact(tmp_path):
    content = tmp_path / "content"
    (content / "n8n").mkdir(parents=True)
    (content / "secrets.env").write_text("KEPT=1\n")
    device = image(tmp_path)
    subprocess.run(["mkfs.ext4", "-q", "-L", storage.DATA_LABEL, "-d", str(content), str(device)], check=True)
    before = digest(device)

    first = storage.prepare(device)
    second = storage.prepare(device)

    assert first.formatted is second.formatted is False
    assert first.uuid == second.uuid
    assert digest(device) == before
    assert debugfs_cat(device, "secrets.env") == "KEPT=1\n"


def test_formatting_twice_is_impossible(tmp_path):
    """The second run of a blank volume's first boot finds the filesystem the first run made."""
    device = image(tmp_path)
    first = storage.prepare(device)
    subprocess.run(["debugfs", "-w", "-R", "mkdir kept", str(device)], check=True, capture_output=True)
    second = storage.prepare(device)
    assert (first.formatted, second.formatted) == (True, False)
    assert first.uuid == second.uuid
    assert (
        "kept"
        in subprocess.run(["debugfs", "-R", "ls /", str(device)], capture_output=True, text=True, check=True).stdout
    )


def _foreign_ext4(device):
    subprocess.run(["mkfs.ext4", "-q", "-L", "backup", str(device)], check=True)


def _vfat(device):
    subprocess.run(["mkfs.vfat", "-n", "DATA", str(device)], check=True, capture_output=True)


def _partitioned(device):
    subprocess.run(["sfdisk", "-q", str(device)], input=",,L\n", text=True, check=True, capture_output=True)


def _unnamed_data(device):
    with open(device, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"some bytes blkid cannot name" * 100)


def _data_at_the_end(device):
    with open(device, "r+b") as handle:
        handle.seek(SIZE - 512)
        handle.write(b"\x01" * 512)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_foreign_ext4, "ext4 filesystem labelled 'backup'"),
        (_vfat, "a vfat filesystem"),
        (_partitioned, "a dos partition table"),
        (_unnamed_data, "unrecognised data"),
        (_data_at_the_end, "unrecognised data"),
    ],
    ids=["other-label", "other-filesystem", "partition-table", "unnamed-data", "data-at-the-end"],
)
def test_anything_else_is_refused_and_left_untouched(tmp_path, make, reason):
    device = image(tmp_path)
    make(device)
    before = digest(device)
    with pytest.raises(storage.RefusedDevice, match=reason) as refused:
        storage.prepare(device)
    assert "Nothing was changed" in str(refused.value)
    assert digest(device) == before


# --- the mount unit ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["/mnt/data", "/", "/srv/ai-platform/data", "/mnt/my data", "//a//.b/ü/"])
def test_mount_unit_name_is_what_systemd_escape_gives(where):
    escaped = subprocess.run(
        ["systemd-escape", "--path", "--suffix=mount", where], capture_output=True, text=True, check=True
    )
    assert storage.mount_unit_name(where) == escaped.stdout.strip()


def test_mount_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / storage.mount_unit_name()
    unit.write_text(storage.mount_unit("be1a6783-011f-467f-b4a2-f11e18797465"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    # verify exits 0 on unknown keys and other findings: any output at all is a failure.
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).strip() == ""
