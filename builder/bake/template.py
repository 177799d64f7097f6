"""packer.pkr.hcl for the Packer at hand: current Packer reads it as it is; Packer 1.6.6 gets a copy.

Packer 1.6.6 (Debian's, used in CI here) has the amazon-ebs and qemu builders built in and knows
neither `required_plugins` nor the IMDS settings: the regions between the "legacy-packer:
omit-begin/omit-end" markers are cut from its copy, and what that build lacks is said, not hidden.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuilderError
from builder.source_tree import ROOT

REPO_ROOT = ROOT
TEMPLATE = REPO_ROOT / "packer.pkr.hcl"
OMIT = re.compile(r"^[ \t]*# legacy-packer: omit-begin[^\n]*\n.*?^[ \t]*# legacy-packer: omit-end[^\n]*\n", re.M | re.S)
# Packer with plugins outside its binary (and `packer init`): 1.7 and later.
PLUGIN_ERA = (1, 7)
LEGACY_LIMITATIONS = (
    "Packer {version} predates plugins and IMDS settings: the build instance allows IMDSv1, its "
    "temporary key is RSA, its temporary security group admits SSH from 0.0.0.0/0 (not only this "
    "host's address), and the AMI does not force IMDSv2 (launch templates still require it)"
)


@dataclass(frozen=True)
class PackerTool:
    binary: str
    version: tuple[int, ...]

    @property
    def legacy(self) -> bool:
        return self.version < PLUGIN_ERA

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def find_packer(binary: str = "packer") -> PackerTool:
    try:
        result = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise BuilderError(
            f"{binary}: not found. Install Packer (Debian: apt-get install packer; or HashiCorp's release)"
        ) from None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", result.stdout)
    if result.returncode != 0 or not match:
        raise BuilderError(f"{binary} version: unexpected answer {result.stdout.strip() or result.stderr.strip()!r}")
    return PackerTool(binary, tuple(int(part) for part in match.groups()))


def legacy_text(text: str) -> str:
    """The template without its omit regions; refuses unbalanced markers."""
    if text.count("legacy-packer: omit-begin") != text.count("legacy-packer: omit-end"):
        raise BuilderError("packer.pkr.hcl: legacy-packer omit-begin/omit-end markers do not pair up")
    return OMIT.sub("", text)


def template_for(tool: PackerTool, destination: Path, source: Path = TEMPLATE) -> tuple[Path, list[str]]:
    """Write the template this Packer reads to `destination`; return it and what this build lacks."""
    text = source.read_text(encoding="utf-8")
    notes = []
    if tool.legacy:
        text = legacy_text(text)
        notes.append(LEGACY_LIMITATIONS.format(version=tool.version_text))
    destination.write_text(text, encoding="utf-8")
    return destination, notes
