"""Room to breathe on the data volume: its reserve, the watch on free space and inodes, and what the
platform drops before the disk fills.

A full data volume takes the platform down: Postgres PANICs when it cannot write WAL and will not
start again while the disk is full. So:
- The filesystem keeps a reserve: ext4's reserved blocks (RESERVE_PERCENT of it, root only). The
  apps' containers write as other users (Postgres as its own), so they meet "no space" while root
  still has the reserve. New volumes get it at mkfs (firstboot/storage.py); volumes made before
  (with `-m 0`) get it at their next boot, when there is room for it.
- `firstboot health` (every minute) measures the free space and inodes an app can still use and
  reports one line, on the console and, on AWS, as the instance's disk tag (`builder status`):

      ai-platform disk: 37% of 9.8 GiB used, inodes 1%; ok
      ai-platform disk: 83% of 9.8 GiB used, inodes 1%; warning: under 20% free
      ai-platform disk: 91% of 9.8 GiB used, inodes 1%; warning: under 20% free; dropped backups … at …

- Under `drop_below` free it drops what may be dropped, and says so: the on-volume backups beyond
  the newest complete one (oldest first, until `warn_below` is free again) and what a backup run
  that did not finish left (.partial-*), both only while no backup runs (its lock). Nothing else on
  the volume is a cache that may go: rclone's cache (platform/rclone-cache, --vfs-cache-mode writes)
  holds files not yet uploaded to the Drive.
- Under `release_below` free, with nothing left to drop, it releases the reserve to the apps: a
  Postgres that stopped on a full disk starts again (its container restarts on its own: `restart:
  unless-stopped`), and the line says to free space or grow the volume. The reserve comes back once
  there is room for it with `drop_below` still free.

Python 3.10, standard library only: this runs on the instance.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from firstboot.backup_record import MARKER, RECORD, human_size
from firstboot.report import TAG_VALUE_LIMIT

RESERVE_PERCENT = 5  # of the filesystem's blocks, reserved for root (ext4's reserved block count)
DISK_TAG = "ai-platform:disk"
LINE_PREFIX = "ai-platform disk:"
BACKUPS = RECORD.parent  # under the data volume: the backups ai-platform-backup keeps
BACKUP_LOCK = ".lock"  # in BACKUPS: held by a running `ai-platform-backup create` (flock)
LINE = re.compile(rf"{LINE_PREFIX} (?P<state>.*?); (?P<verdict>ok|warning: .*)")


@dataclass(frozen=True)
class Thresholds:
    """Shares of the filesystem, in percent, that apps can still write (free space or free inodes)."""

    warn_below: float = 20  # warn in the health report and `builder status`
    drop_below: float = 10  # drop old backups (and unfinished ones) until warn_below is free again
    release_below: float = 2  # nothing left to drop: release the reserve to the apps
    reserve_percent: float = RESERVE_PERCENT


@dataclass(frozen=True)
class Space:
    """One ext4 filesystem's blocks and inodes, as apps (not root) see them."""

    block_size: int
    blocks: int  # the filesystem's size in blocks (the superblock's count: what mkfs -m takes a share of)
    used: int  # blocks in use
    available: int  # blocks an app can still write (the reserve and ext4's own reservation excluded)
    reserved: int  # blocks reserved for root
    inodes: int
    inodes_free: int

    @property
    def used_percent(self) -> int:
        """As df shows it: used over used plus available, rounded up."""
        room = self.used + self.available
        return 100 if room <= 0 else math.ceil(self.used * 100 / room)

    @property
    def free_percent(self) -> float:
        room = self.used + self.available
        return 0.0 if room <= 0 else self.available * 100 / room

    @property
    def inodes_used_percent(self) -> int:
        return 0 if self.inodes <= 0 else math.ceil((self.inodes - self.inodes_free) * 100 / self.inodes)

    @property
    def inodes_free_percent(self) -> float:
        return 100.0 if self.inodes <= 0 else self.inodes_free * 100 / self.inodes

    def size_bytes(self) -> int:
        return (self.used + self.available) * self.block_size


class DiskError(Exception):
    """tune2fs could not read or change the filesystem; the message says which and why."""


# --- the filesystem's numbers -------------------------------------------------------------------


def superblock(device: Path) -> dict[str, str]:
    """`tune2fs -l`: the superblock's fields (on a mounted filesystem its free counts lag behind)."""
    listed = subprocess.run(["tune2fs", "-l", str(device)], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise DiskError(f"tune2fs -l {device} failed: {listed.stderr.strip() or listed.returncode}")
    fields = (line.split(":", 1) for line in listed.stdout.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in fields}


def space_from_superblock(device: Path) -> Space:
    """The numbers of an unmounted (or just mounted) filesystem."""
    fields = superblock(device)
    blocks, free, reserved = (int(fields[name]) for name in ("Block count", "Free blocks", "Reserved block count"))
    inodes, inodes_free = int(fields["Inode count"]), int(fields["Free inodes"])
    available = max(0, free - reserved)
    return Space(int(fields["Block size"]), blocks, blocks - free, available, reserved, inodes, inodes_free)


def space_of_mount(mount: Path, device: Path) -> Space:
    """The numbers of a mounted filesystem: statvfs (current), the reserve from the superblock."""
    stats = os.statvfs(mount)
    fields = superblock(device)
    blocks, reserved = int(fields["Block count"]), int(fields["Reserved block count"])
    used = stats.f_blocks - stats.f_bfree
    return Space(stats.f_frsize, blocks, used, stats.f_bavail, reserved, stats.f_files, stats.f_favail)


def mounted_device(mount: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> Path | None:
    """The device mounted at `mount` (the last mount there wins), None when nothing is."""
    found = None
    for line in mountinfo.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].replace("\\040", " ") == str(mount) and " - " in line:
            found = Path(line.split(" - ", 1)[1].split()[1])
    return found


def wanted_reserve(space: Space, thresholds: Thresholds) -> int:
    return int(space.blocks * thresholds.reserve_percent / 100)


def set_reserve(device: Path, blocks: int) -> None:
    """tune2fs -r: ext4 takes a new reserved block count on a mounted filesystem too."""
    changed = subprocess.run(["tune2fs", "-r", str(blocks), str(device)], capture_output=True, text=True, check=False)
    if changed.returncode != 0:
        raise DiskError(f"tune2fs -r {blocks} {device} failed: {changed.stderr.strip() or changed.returncode}")


def room_for_reserve(space: Space, wanted: int, thresholds: Thresholds) -> bool:
    """Whether raising the reserve to `wanted` still leaves the apps drop_below free."""
    available = space.available - (wanted - space.reserved)
    room = space.used + available
    return room > 0 and available * 100 / room >= thresholds.drop_below


def keep_reserve(device: Path, space: Space, thresholds: Thresholds) -> str:
    """The reserve set to its share when there is room for it; what was done, in words."""
    wanted = wanted_reserve(space, thresholds)
    size = f"{human_size(wanted * space.block_size)} ({thresholds.reserve_percent:g}%)"
    if space.reserved == wanted:
        return f"reserve {size} kept"
    if space.reserved > wanted or room_for_reserve(space, wanted, thresholds):
        set_reserve(device, wanted)
        return f"reserve set to {size}, was {human_size(space.reserved * space.block_size)}"
    return f"reserve not set: too full for {size} with {thresholds.drop_below:g}% left free"


# --- what may be dropped ------------------------------------------------------------------------


@contextlib.contextmanager
def backups_unlocked(data_mount: Path) -> Iterator[bool]:
    """Holds the backup script's lock while the body runs; yields False when a backup runs now."""
    folder = data_mount / BACKUPS
    if not folder.is_dir():
        yield True
        return
    with open(folder / BACKUP_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def droppable_backups(data_mount: Path) -> list[Path]:
    """The complete backups beyond the newest one, oldest first (names are UTC stamps: name order is
    age order), then the unfinished ones a backup run left. A folder without the marker is not a
    backup the script made whole: it is never dropped here."""
    folder = data_mount / BACKUPS
    if not folder.is_dir():
        return []
    complete = sorted(path.parent for path in folder.glob(f"2*/{MARKER}") if path.is_file())
    partial = sorted(path for path in folder.glob(".partial-*") if path.is_dir())
    last_good = None  # the one the record names stays too (a clock that ran ahead may have named a newer one)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        last_good = json.loads((data_mount / RECORD).read_text(encoding="utf-8")).get("last_good", {}).get("name")
    return partial + [path for path in complete[:-1] if path.name != last_good]


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def drop_backup(path: Path) -> None:
    # The marker first, as the backup script prunes: a removal cut short leaves no half backup that counts.
    (path / MARKER).unlink(missing_ok=True)
    shutil.rmtree(path)


# --- the watch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskReport:
    space: Space | None  # None when not measured (the warnings say why: no volume mounted, tune2fs failed)
    warnings: tuple[str, ...]
    actions: tuple[str, ...]  # what this run dropped or changed, in words
    dropped: str | None  # the last drop, carried while the warning lasts

    def line(self, limit: int = TAG_VALUE_LIMIT) -> str:
        if self.space is None:
            state = "not measured"
        else:
            size = human_size(self.space.size_bytes())
            state = f"{self.space.used_percent}% of {size} used, inodes {self.space.inodes_used_percent}%"
        parts = list(self.warnings) + ([f"dropped {self.dropped}"] if self.dropped else [])
        verdict = "warning: " + "; ".join(parts) if parts else "ok"
        return f"{LINE_PREFIX} {state}; {verdict}"[:limit]

    def to_json(self) -> dict:
        space = None
        if self.space is not None:
            space = {
                "bytes": self.space.size_bytes(),
                "free_bytes": self.space.available * self.space.block_size,
                "reserved_bytes": self.space.reserved * self.space.block_size,
                "used_percent": self.space.used_percent,
                "inodes": self.space.inodes,
                "inodes_free": self.space.inodes_free,
                "inodes_used_percent": self.space.inodes_used_percent,
            }
        return {
            "space": space,
            "warnings": list(self.warnings),
            "actions": list(self.actions),
            "dropped": self.dropped,
            "line": self.line(),
        }


def watch(
    data_mount: Path,
    thresholds: Thresholds = Thresholds(),
    *,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    previous_dropped: str | None = None,
    now: float | None = None,
) -> DiskReport:
    """Measure; drop what may go under drop_below; release the reserve under release_below; bring it
    back once there is room. Each step that changed something is in the report's actions."""
    device = mounted_device(data_mount, mountinfo)
    if device is None:
        return DiskReport(None, (f"nothing is mounted at {data_mount}",), (), None)
    space = space_of_mount(data_mount, device)
    actions: list[str] = []
    dropped = None
    if space.free_percent < thresholds.drop_below or space.inodes_free_percent < thresholds.drop_below:
        dropped, said = drop_until_room(data_mount, device, thresholds)
        actions += said
        space = space_of_mount(data_mount, device)
    wanted = wanted_reserve(space, thresholds)
    if space.free_percent < thresholds.release_below and space.reserved > 0:
        set_reserve(device, 0)
        actions.append(f"released the reserve ({human_size(space.reserved * space.block_size)}) to the apps")
        space = space_of_mount(data_mount, device)
    elif space.reserved > wanted or (space.reserved < wanted and room_for_reserve(space, wanted, thresholds)):
        set_reserve(device, wanted)
        actions.append(f"reserve back to {human_size(wanted * space.block_size)}")
        space = space_of_mount(data_mount, device)
    warnings = []
    if space.free_percent < thresholds.warn_below:
        warnings.append(f"under {thresholds.warn_below:g}% free")
    if space.inodes_free_percent < thresholds.warn_below:
        warnings.append(f"under {thresholds.warn_below:g}% of the inodes free")
    if space.reserved < wanted:
        warnings.append(
            f"the reserve is down to {human_size(space.reserved * space.block_size)}: "
            "free space or grow the volume (builder resize)"
        )
    if dropped:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() if now is None else now))
        dropped = f"{dropped} at {stamp}"
    elif warnings:
        dropped = previous_dropped
    return DiskReport(space, tuple(warnings), tuple(actions), dropped)


def drop_until_room(data_mount: Path, device: Path, thresholds: Thresholds) -> tuple[str | None, list[str]]:
    """Drop unfinished backups, then complete ones beyond the newest, oldest first, until warn_below is
    free again. (what was dropped in one phrase, or None; what was done, or why not, in words)."""
    with backups_unlocked(data_mount) as unlocked:
        if not unlocked:
            return None, ["a backup is running: no backup dropped now"]
        names, freed = [], 0
        for path in droppable_backups(data_mount):
            space = space_of_mount(data_mount, device)
            if space.free_percent >= thresholds.warn_below and space.inodes_free_percent >= thresholds.warn_below:
                break
            size = folder_bytes(path)
            drop_backup(path)
            names.append(path.name)
            freed += size
    if not names:
        return None, []
    what = f"backup{'s' if len(names) > 1 else ''} {', '.join(names)} ({human_size(freed)})"
    return what, [f"dropped {what}: under {thresholds.drop_below:g}% free"]


# --- read back (builder status) -----------------------------------------------------------------


def parse_line(line: str) -> tuple[str, str | None] | None:
    """(the state, the warning or None) of an agent's disk line; None when it is not one."""
    match = LINE.fullmatch(line.strip())
    if not match:
        return None
    verdict = match["verdict"]
    return match["state"], (verdict.removeprefix("warning: ") if verdict != "ok" else None)


def publish_disk_tag(ec2, instance_id: str, line: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": DISK_TAG, "Value": line[:TAG_VALUE_LIMIT]}])
