"""The input hash: one digest of everything that shapes an image, so an unchanged bake is a lookup.

It covers the template, everything under image/ (provisioning, rootfs, the image lock), the
agent's source and packaging, the payload's layout, what the build host adds (the Compose plugin,
the versions of the agent's wheels), the models, the image settings of the config, the target and
the base image. It leaves out what only changes where things are fetched from (mirrors) or who runs
the bake: the same inputs through another mirror make the same image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from builder.bake.payload import build_host_inputs
from builder.config.schema import PlatformConfig
from builder.source_tree import ROOT

REPO_ROOT = ROOT
HASHED_PATHS = ("packer.pkr.hcl", "image", "firstboot", "pyproject.toml", "setup.py", "builder/bake/payload.py")
IGNORED_PARTS = {"__pycache__", ".pytest_cache"}


def source_files(root: Path = REPO_ROOT) -> list[Path]:
    files = []
    for name in HASHED_PATHS:
        path = root / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if not IGNORED_PARTS & set(p.relative_to(root).parts)]
    return sorted(files)


def input_hash(
    config: PlatformConfig,
    target: str,
    base: str,
    root: Path = REPO_ROOT,
    lock: Path | None = None,
    variant: str = "cpu",
) -> str:
    """sha256 over the sources (path and content) and the settings that shape the image."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    settings = {
        "target": target,
        # The GPU image (NVIDIA driver and toolkit) and the CPU one live side by side.
        "variant": variant,
        "base": base,
        "models": config.ollama.baked,
        # The owner's own services are laid into the image (builder/custom_services.py).
        "custom_services": config.services.model_dump(mode="json")["custom"],
        # Mirrors change where bytes come from, not which bytes: they stay out of the hash. Except
        # rclone's "distribution", which bakes another rclone than the pinned one.
        "image": config.image.model_dump(mode="json", exclude={"mirrors"}),
        "rclone": "distribution" if config.image.mirrors.rclone == "distribution" else "pinned",
        "local": {"disk_size_gib": config.local.disk_size_gib} if target == "local" else None,
        # Another lock than image/images.lock.json (builder bake --lock) is an input like it.
        "lock": hashlib.sha256(lock.read_bytes()).hexdigest() if lock else None,
        # The Compose plugin and the agent's wheels come from the build host.
        "build_host": build_host_inputs(),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()
