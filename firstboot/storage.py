"""The data volume: found by serial, given a filesystem only when blank, mounted at /mnt/data.

Ignition's reuse rules, made stricter because the volume holds every byte of the platform's data:
- no signature at all and zeros at both ends -> make the platform's filesystem;
- the platform's filesystem (ext4 with the platform's label) -> use it as it is;
- anything else (another filesystem or label, a partition table, data blkid cannot name)
  -> refuse, so that nothing starts on the root disk in its place.
The probe runs right before mkfs. mke2fs does not protect a device on its own: without a
terminal it formats over an existing filesystem even without -F (a test showed it), so the
probe is the guard, and the agent runs one at a time.

Python 3.10, standard library only: this runs on the instance.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firstboot.disk_space import RESERVE_PERCENT

DATA_LABEL = "ai-platform-data"  # ext4 labels hold at most 16 bytes: this is exactly 16
DATA_FS_TYPE = "ext4"
MOUNT_POINT = "/mnt/data"
EDGE_BYTES = 1024 * 1024  # how much of each end of a "blank" device must be zeros

BLANK = "blank"
PLATFORM = "platform"


class StorageError(Exception):
    """The data volume cannot be used; the message says why and what to do."""


class DeviceNotFound(StorageError):
    pass


class RefusedDevice(StorageError):
    pass


def volume_serial(volume_id: str) -> str:
    """The serial an EBS volume shows to the instance: its id without the dash (vol-0ab… -> vol0ab…)."""
    if not volume_id.startswith("vol-") or len(volume_id) < 5:
        raise ValueError(f"not an EBS volume id: {volume_id!r} (expected vol-…)")
    return "vol" + volume_id[4:]


def find_device(serial: str, sys_block: Path = Path("/sys/block"), dev_dir: Path = Path("/dev")) -> Path | None:
    """The block device whose serial is `serial`, or None.

    Names are no guide: /dev/sdf shows up as /dev/nvme1n1 on Nitro, in no fixed order. virtio
    disks publish the serial at /sys/block/X/serial, NVMe ones at /sys/block/X/device/serial
    (padded with spaces).
    """
    if not sys_block.is_dir():
        return None
    for entry in sorted(sys_block.iterdir()):
        for serial_file in (entry / "serial", entry / "device" / "serial"):
            try:
                if serial_file.read_text(encoding="ascii", errors="replace").strip() == serial:
                    return dev_dir / entry.name
            except OSError:
                continue
    return None


def wait_for_device(
    serial: str,
    timeout: float,
    *,
    sys_block: Path = Path("/sys/block"),
    dev_dir: Path = Path("/dev"),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_interval: float = 0.5,
) -> Path:
    """Wait until the device with `serial` appears (an attach takes seconds); fail at the deadline."""
    deadline = clock() + timeout
    while True:
        device = find_device(serial, sys_block, dev_dir)
        if device is not None:
            return device
        if clock() >= deadline:
            raise DeviceNotFound(
                f"no block device with serial {serial} appeared within {timeout:g} s; "
                "is the data volume attached to this instance?"
            )
        sleep(poll_interval)


@dataclass
class Probe:
    kind: str  # BLANK, PLATFORM, or the reason to refuse
    fields: dict[str, str] = field(default_factory=dict)  # what blkid reported

    @property
    def uuid(self) -> str | None:
        return self.fields.get("UUID")


def probe(device: Path, label: str = DATA_LABEL) -> Probe:
    """What is on `device`, by blkid's low-level probe (signatures, not the possibly stale cache)."""
    result = subprocess.run(
        ["blkid", "--probe", "--output", "export", str(device)], capture_output=True, text=True, check=False
    )
    if result.returncode == 2:  # blkid: nothing recognised
        if _edges_are_zero(device):
            return Probe(BLANK)
        return Probe("unrecognised data (no filesystem signature, but the device is not empty)")
    if result.returncode != 0:
        raise StorageError(f"blkid could not read {device}: {result.stderr.strip() or result.returncode}")
    fields = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if "PTTYPE" in fields:
        return Probe(f"a {fields['PTTYPE']} partition table", fields)
    kind = fields.get("TYPE", "unknown")
    if kind != DATA_FS_TYPE:
        return Probe(f"a {kind} filesystem", fields)
    if fields.get("LABEL") != label:
        return Probe(f"an ext4 filesystem labelled {fields.get('LABEL', '(none)')!r}, not {label!r}", fields)
    return Probe(PLATFORM, fields)


@dataclass
class PreparedVolume:
    device: Path
    uuid: str
    formatted: bool  # True: this run made the filesystem; False: the existing one was kept


def prepare(device: Path, label: str = DATA_LABEL, reserve_percent: float = RESERVE_PERCENT) -> PreparedVolume:
    """Apply the reuse rules to `device`; the result names the filesystem to mount."""
    found = probe(device, label)
    if found.kind == PLATFORM and found.uuid:
        return PreparedVolume(device, found.uuid, formatted=False)
    if found.kind != BLANK:
        raise RefusedDevice(
            f"{device} holds {found.kind}; the platform uses only a blank volume or its own "
            f"{DATA_FS_TYPE} filesystem labelled {label!r}. Nothing was changed and no service was started. "
            "Attach the right volume, or check this one by hand."
        )
    _make_filesystem(device, label, reserve_percent)
    made = probe(device, label)
    if made.kind != PLATFORM or not made.uuid:
        raise StorageError(f"mkfs.{DATA_FS_TYPE} on {device} did not leave the platform's filesystem ({made.kind})")
    return PreparedVolume(device, made.uuid, formatted=True)


def mount_unit_name(where: str = MOUNT_POINT) -> str:
    """systemd's name for the mount unit of `where`: `systemd-escape --path --suffix=mount`."""
    trimmed = "/".join(part for part in where.split("/") if part)
    if not trimmed:
        return "-.mount"
    escaped = []
    for index, char in enumerate(trimmed):
        if char == "/":
            escaped.append("-")
        elif (char.isascii() and char.isalnum()) or char == "_" or (char == "." and index > 0):
            escaped.append(char)
        else:
            escaped.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(escaped) + ".mount"


def mount_unit(uuid: str, where: str = MOUNT_POINT) -> str:
    """The mount unit for the data filesystem, by UUID: the same on every instance that attaches it."""
    return (
        "# Written by the firstboot agent: the platform's data volume.\n"
        "[Unit]\n"
        "Description=AI platform data volume\n"
        "Before=docker.service ai-platform.target\n"
        "\n"
        "[Mount]\n"
        f"What=/dev/disk/by-uuid/{uuid}\n"
        f"Where={where}\n"
        f"Type={DATA_FS_TYPE}\n"
        "Options=defaults,noatime\n"
        "\n"
        "[Install]\n"
        "WantedBy=local-fs.target\n"
    )


def _make_filesystem(device: Path, label: str, reserve_percent: float) -> None:
    # Only ever called right after a probe found the device blank (see the module docstring).
    # -m: blocks reserved for root, room the agent can give back to the apps (firstboot/disk_space.py).
    result = subprocess.run(
        [f"mkfs.{DATA_FS_TYPE}", "-q", "-m", f"{reserve_percent:g}", "-L", label, str(device)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise StorageError(f"mkfs.{DATA_FS_TYPE} {device} failed: {result.stderr.strip() or result.returncode}")


def _edges_are_zero(device: Path) -> bool:
    # A new EBS volume reads as zeros. Data that blkid cannot name (a wiped superblock, an
    # unknown format) is still data: only a device empty at both ends counts as blank.
    with open(device, "rb") as handle:
        size = handle.seek(0, 2)
        for offset in {0, max(0, size - EDGE_BYTES)}:
            handle.seek(offset)
            if handle.read(EDGE_BYTES).strip(b"\0"):
                return False
    return True
