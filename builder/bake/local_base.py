"""The base a local bake starts from, put where Packer's qemu source takes it.

- debian-12 (the default): built here with mmdebstrap. It has no boot loader, so Packer (and every
  local launch) boots its kernel and initrd from outside: they are copied into the bake's work dir.
  It already holds the packages 10-apt.sh installs, unpacked at the host's native speed (and cached):
  under TCG, unpacking them in the build VM took about 3 of a bake's 16 minutes. 10-apt.sh still
  runs, as on every target, and finds them current.
- ubuntu-22.04: Canonical's cloud image, downloaded from local.ubuntu_image_url and verified
  against local.ubuntu_image_sha256. It boots itself.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from builder.bake.payload import apt_packages, file_sha256
from builder.config.schema import PlatformConfig
from builder.local.accelerator import resolve

DIRECT_KERNEL_APPEND = "root=LABEL=root rw console=ttyS0 net.ifnames=0"


def cache_dir() -> Path:
    """Where base images are cached between bakes (outside the repo and the platform's state)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ai-platform-builder" / "images"


def prepare_local_base(config: PlatformConfig, work: Path, log: Callable[[str], None]) -> dict:
    """The Packer variables of the base: its disk and checksum, and how it boots (`local_boot`)."""
    if config.local.base_image == "ubuntu-22.04":
        from builder.local.ubuntu_base import fetch_ubuntu_base

        assert config.local.ubuntu_image_url and config.local.ubuntu_image_sha256  # the schema requires both
        disk = fetch_ubuntu_base(cache_dir(), config.local.ubuntu_image_url, config.local.ubuntu_image_sha256, log)
        return {
            "local_base_image": str(disk),
            "local_base_checksum": f"sha256:{config.local.ubuntu_image_sha256}",
            "local_boot": [],
            "local_accelerator": resolve(config.local.accelerator, None, cache_dir(), log),
        }
    from builder.local.debian_base import build_debian_base

    base = build_debian_base(cache_dir(), extra_packages=apt_packages(), log=log)
    target = work / "base"
    target.mkdir()
    shutil.copy(base.kernel, target / "vmlinuz")
    shutil.copy(base.initrd, target / "initrd.img")
    return {
        "local_base_image": str(base.disk),
        "local_base_checksum": f"sha256:{file_sha256(base.disk)}",
        "local_boot": [
            ["-kernel", str(target / "vmlinuz")],
            ["-initrd", str(target / "initrd.img")],
            ["-append", DIRECT_KERNEL_APPEND],
        ],
        "local_accelerator": resolve(config.local.accelerator, base.kernel, cache_dir(), log),
    }
