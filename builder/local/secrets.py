"""Secrets of a local platform (no SSM): private files under local.state_dir, handed to each VM
through qemu's fw_cfg at launch, never through the seed (user-data)."""

from __future__ import annotations

import os
from pathlib import Path

from builder.config.schema import PlatformConfig

RCLONE_FW_CFG = "opt/ai-platform/rclone-config"  # qemu wants user fw_cfg names under opt/


def rclone_config_path(config: PlatformConfig) -> Path:
    return Path(config.local.state_dir).expanduser() / "secrets" / f"{config.name}-rclone.conf"


def store(path: Path, value: str) -> None:
    """Write `value` to `path`, mode 0600 from its first byte, replacing it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    temporary.replace(path)
