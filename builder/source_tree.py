"""Where builder finds what a bake and a launch read: the Packer template, image/ (provisioning,
rootfs, the image lock, the image suite), cloudinit/ (user-data templates), the agent's source and
the commented example config (examples/platform.yaml, for `builder config init`).

In a git checkout that is the checkout itself. An installed builder (`pip install .`, `pipx
install`) carries a copy of the same files as package data, `builder/_tree/`, laid out as in the
checkout (setup.py puts it there when the wheel is built), so every path below reads the same
under both, and so does the bake's input hash.
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path

# What the copy holds: the bake's inputs and everything `pip wheel` needs to build the agent's
# wheel (the project itself) from it.
TREE_ENTRIES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "packer.pkr.hcl",
    "builder",
    "firstboot",
    "image",
    "cloudinit",
    "examples",  # the commented platform.yaml `builder config init` writes
)
PACKAGE_COPY = "_tree"
MARKER = "packer.pkr.hcl"
# Never copied: what builds and runs leave in a tree, and the copy itself.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", PACKAGE_COPY)


class SourceTreeMissing(RuntimeError):
    pass


def find_root() -> Path:
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / MARKER).is_file():
        return checkout
    installed = Path(str(importlib.resources.files("builder") / PACKAGE_COPY))
    if (installed / MARKER).is_file():
        return installed
    raise SourceTreeMissing(
        f"builder's own files are missing: neither {checkout / MARKER} (a git checkout) nor "
        f"{installed / MARKER} (an installed wheel) exists; reinstall builder from its wheel or checkout"
    )


ROOT = find_root()


def installed() -> bool:
    """True when builder runs from an installed wheel (its tree is the package's copy)."""
    return ROOT.name == PACKAGE_COPY


def copy_tree(destination: Path, root: Path | None = None) -> Path:
    """The tree's entries, copied from `root` (default: builder's own) into `destination`."""
    root = root or ROOT
    destination.mkdir(parents=True, exist_ok=True)
    for name in TREE_ENTRIES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, destination / name, symlinks=True, ignore=IGNORED)
        elif source.is_file():
            shutil.copy2(source, destination / name)
    return destination
