"""Where a local platform keeps its files: local.state_dir/<platform>/ (see builder/local/instances.py).

Below everything that reads or writes there (instances, the bake's image store, the owner's
credentials), so that none of them imports another for a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from builder.config.schema import PlatformConfig


def platform_dir(config: PlatformConfig) -> Path:
    return Path(config.local.state_dir).expanduser() / config.name


def private_dir(path: Path) -> Path:
    """`path` and the folders made for it, mode 0700 (an existing one is made so too): what lies below
    (raw disks with the owner's secrets and databases) is for this user alone."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in {path, *missing}:
        os.chmod(folder, 0o700)  # mkdir's mode passes through the umask, and parents= ignores it
    return path


def private_file(path: Path) -> Path:
    """Mode 0600: for a file another program (qemu-img) created with its own mode."""
    os.chmod(path, 0o600)
    return path
