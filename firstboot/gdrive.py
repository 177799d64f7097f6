"""Google Drive: the owner's rclone config, delivered at every boot, put on the volume for the mount.

The owner stores the config once (`builder secrets set rclone-config`: SSM on AWS, a private file
under the state dir locally, handed over through fw_cfg). rclone itself checks it before it is
used: a config it rejects, or one without the remote the platform mounts, is reported and never
written, so the mount unit (ai-platform-gdrive.service, off until the config exists) keeps what it
had. rclone refreshes OAuth tokens into the file it mounts with, so the file is replaced only when
the delivered config changed, not at every boot.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from firstboot.status import write_atomic

CONFIG = Path("platform/rclone.conf")  # under the data volume, 0600: the unit's --config
DELIVERED = Path("platform/rclone.conf.delivered")  # sha256 of the config as last delivered
UNIT_ENV = "gdrive.env"  # under /etc/ai-platform: the unit's remote and flags


class GdriveConfigRejected(Exception):
    pass


def check(text: str, remote: str, rclone: str = "rclone") -> None:
    """rclone reads the config; it must parse and hold `remote`. Raises with rclone's reason."""
    with tempfile.TemporaryDirectory(prefix="ai-platform-rclone-") as scratch:
        path = Path(scratch) / "rclone.conf"
        path.write_text(text, encoding="utf-8")
        os.chmod(path, 0o600)
        try:
            result = subprocess.run(
                [rclone, "--config", str(path), "listremotes"], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GdriveConfigRejected(f"rclone could not check it ({exc})") from None
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise GdriveConfigRejected(f"rclone rejects it: {reason}")
    remotes = [line.strip().rstrip(":") for line in result.stdout.splitlines() if line.strip()]
    if remote not in remotes:
        found = ", ".join(remotes) or "none"
        raise GdriveConfigRejected(f"it has no remote named {remote!r} (it has: {found}); name yours {remote!r}")


def unit_env(remote: str, read_only: bool) -> str:
    flags = "--read-only" if read_only else ""
    header = "# Written by the firstboot agent: what ai-platform-gdrive.service mounts.\n"
    return f"{header}GDRIVE_REMOTE={remote}\nGDRIVE_FLAGS={flags}\n"


def install(data_mount: Path, etc_dir: Path, text: str, remote: str, read_only: bool, rclone: str = "rclone") -> str:
    """Check the delivered config and put it where the unit reads it; returns what was done."""
    check(text, remote, rclone)
    digest = hashlib.sha256(text.encode()).hexdigest()
    delivered = data_mount / DELIVERED
    config = data_mount / CONFIG
    written = False
    config.parent.mkdir(parents=True, exist_ok=True)
    if not config.exists() or not delivered.exists() or delivered.read_text().strip() != digest:
        write_atomic(config, text, 0o600)
        write_atomic(delivered, digest + "\n", 0o600)
        written = True
    write_atomic(etc_dir / UNIT_ENV, unit_env(remote, read_only), 0o644)
    mode = "read-only" if read_only else "read-write"
    return f"rclone config {'written' if written else 'unchanged'}; remote {remote}: mounted {mode}"
