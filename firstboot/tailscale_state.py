"""tailscaled's state on the data volume: a replaced or upgraded instance is the same tailnet node.

tailscaled keeps its node identity (machine and node keys) in /var/lib/tailscale on the root disk,
so every new instance would join as a new node with a new name and address. Here that directory is
a bind mount of `platform/tailscale` on the data volume, which only one instance holds at a time.
The next instance finds the node's keys there and comes up already joined, with the same MagicDNS
name and tailnet IP, where the tailnet allows it: a node removed from the tailnet (an ephemeral
auth key's node once offline, or one deleted by an admin) needs the auth key again, and `join`
then uses it as on a first boot.

First time on a volume: its directory is made (0700) from what tailscaled already wrote on the root
disk, so nothing it made is lost. The units are written as the storage step writes the volume's
mount unit; on a reboot of the same instance they are already in place and the step only checks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from firstboot.storage import mount_unit_name

TAILSCALED = "tailscaled.service"
DROP_IN_NAME = "ai-platform-state-on-volume.conf"


def bind_mount_unit(volume_dir: Path, state_dir: Path, data_mount: Path) -> str:
    return (
        "# Written by the firstboot agent: tailscaled's node identity on the data volume.\n"
        "[Unit]\n"
        "Description=tailscaled state on the AI platform data volume\n"
        f"RequiresMountsFor={data_mount}\n"
        f"ConditionPathIsDirectory={volume_dir}\n"
        f"Before={TAILSCALED}\n"
        "\n"
        "[Mount]\n"
        f"What={volume_dir}\n"
        f"Where={state_dir}\n"
        "Type=none\n"
        "Options=bind\n"
    )


def tailscaled_drop_in(state_dir: Path) -> str:
    unit = mount_unit_name(str(state_dir))
    return (
        "# Written by the firstboot agent: tailscaled starts on the state kept on the data volume.\n"
        "[Unit]\n"
        f"Wants={unit}\n"
        f"After={unit}\n"
    )


def is_mount_point(path: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """True when `path` is a mount point (a bind mount included, which os.path.ismount misses)."""
    wanted = str(path)
    for line in mountinfo.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].replace("\\040", " ") == wanted:
            return True
    return False


def keep_on_volume(
    systemd,
    *,
    volume_dir: Path,
    state_dir: Path,
    data_mount: Path,
    systemd_dir: Path,
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> str:
    """Make `state_dir` the bind mount of `volume_dir` and restart tailscaled on it; say what it did."""
    mount_unit = systemd_dir / mount_unit_name(str(state_dir))
    drop_in = systemd_dir / f"{TAILSCALED}.d" / DROP_IN_NAME
    wanted = {mount_unit: bind_mount_unit(volume_dir, state_dir, data_mount), drop_in: tailscaled_drop_in(state_dir)}
    units_current = all(path.exists() and path.read_text(encoding="utf-8") == text for path, text in wanted.items())
    if units_current and is_mount_point(state_dir, mountinfo):
        return "node identity on the data volume"
    reused = volume_dir.is_dir()
    if not reused:
        volume_dir.mkdir(mode=0o700, parents=True)
        if state_dir.is_dir():
            shutil.copytree(state_dir, volume_dir, dirs_exist_ok=True, symlinks=True)
    volume_dir.chmod(0o700)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    systemd.daemon_reload()
    systemd.stop(TAILSCALED)  # it must not write the root disk's copy while the mount goes on top
    systemd.start(mount_unit.name)
    systemd.start(TAILSCALED)
    return "node identity reused from the data volume" if reused else "node identity now kept on the data volume"
