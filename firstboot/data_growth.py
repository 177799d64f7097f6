"""The data filesystem grows into a data volume made larger (`builder resize`), at boot and at runtime.

EBS grows a volume online (ModifyVolume) and qemu a running guest's disk (QMP block_resize): the
kernel sees the larger device, the ext4 on it keeps its size until resize2fs grows it.

- at boot (the storage step, before the mount): offline, after the `e2fsck -f` resize2fs asks for
  (only when the device is larger: the check costs time on a big volume);
- at runtime (`firstboot health`, every minute, and `firstboot grow-data`): online, the platform
  running on it (ext4's resize ioctl; the kernel allows it to root with CAP_SYS_RESOURCE only).

Growing never moves or rewrites data, and a filesystem is never shrunk: resize2fs runs only when the
device is larger than the filesystem by at least GROW_MIN_BYTES. A filesystem already mounted is
never checked by e2fsck.

Python 3.10, standard library only: this runs on the instance.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Sizes change by whole GiB. mkfs and resize2fs leave at most a few MiB of a device unused (a last
# block group too small to carry its own metadata is dropped), so a smaller gap is no growth.
GROW_MIN_BYTES = 64 * 1024**2
GIB = 1024**3


class GrowthError(Exception):
    """The filesystem could not be grown; it is as it was (resize2fs grows it or leaves it)."""


@dataclass(frozen=True)
class Growth:
    device: Path
    before: int  # the filesystem's bytes before
    after: int  # and after
    online: bool

    def line(self) -> str:
        how = "online" if self.online else "offline, before the mount"
        return f"data filesystem grown from {in_gib(self.before)} to {in_gib(self.after)} ({how}) on {self.device}"


def in_gib(size: int) -> str:
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size // 1024**2} MiB"


def device_bytes(device: Path) -> int:
    with open(device, "rb") as handle:
        return handle.seek(0, os.SEEK_END)


def filesystem_bytes(device: Path) -> int:
    """The ext4's size as its superblock says (block count x block size); dumpe2fs reads it mounted too."""
    result = subprocess.run(["dumpe2fs", "-h", str(device)], capture_output=True, text=True, check=False)
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError):
        raise GrowthError(f"dumpe2fs could not read the filesystem on {device}: {_said(result)}") from None


def mount_of(device: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """Where `device` (a block device) is mounted, or None; a plain file is never mounted here."""
    try:
        mode = device.stat()
    except OSError:
        return None
    if not stat.S_ISBLK(mode.st_mode):
        return None
    wanted = f"{os.major(mode.st_rdev)}:{os.minor(mode.st_rdev)}"
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] == wanted:
            return fields[4]
    return None


def device_mounted_at(
    mount_point: Path, mountinfo: Path = Path("/proc/self/mountinfo"), sys_dev_block: Path = Path("/sys/dev/block")
) -> Path | None:
    """The block device mounted at `mount_point` (the last mount there wins), by its kernel name:
    the source a mount shows may be a /dev/disk/by-uuid link or a name since renamed."""
    found = None
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == str(mount_point):
            found = fields[2]
    if found is None:
        return None
    name = (sys_dev_block / found).resolve().name
    return Path("/dev") / name


def grow(
    device: Path,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    log: Callable[[str], None] = lambda _line: None,
) -> Growth | None:
    """Grow the ext4 on `device` to fill it when the device is larger; None when there is nothing to
    grow. Online when it is mounted, else offline after e2fsck -f."""
    before = filesystem_bytes(device)
    if device_bytes(device) - before < GROW_MIN_BYTES:
        return None
    online = mount_of(device, mountinfo) is not None
    if not online:
        log(f"{device} is larger than its filesystem: checking it (e2fsck -f) before growing it")
        checked = subprocess.run(
            ["e2fsck", "-f", "-p", str(device)], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
        )
        if checked.returncode >= 4:  # 1 and 2: errors found and fixed; 4 and up: left, or e2fsck failed
            raise GrowthError(
                f"e2fsck found problems on {device} it did not fix (exit {checked.returncode}): {_said(checked)}; "
                "the filesystem was not grown"
            )
    resized = subprocess.run(
        ["resize2fs", str(device)], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if resized.returncode != 0:
        raise GrowthError(f"resize2fs {device} failed (exit {resized.returncode}): {_said(resized)}")
    return Growth(device, before, filesystem_bytes(device), online)


def grow_mounted(
    mount_point: Path,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    sys_dev_block: Path = Path("/sys/dev/block"),
) -> Growth | None:
    """The runtime case: grow the filesystem mounted at `mount_point` online; None when nothing is
    mounted there or there is nothing to grow."""
    device = device_mounted_at(mount_point, mountinfo, sys_dev_block)
    if device is None:
        return None
    return grow(device, mountinfo)


def _said(result: subprocess.CompletedProcess) -> str:
    text = (result.stderr or result.stdout or "").strip().splitlines()
    return text[-1] if text else "no output"
