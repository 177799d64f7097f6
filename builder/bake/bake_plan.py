"""What a bake will do, decided before it does anything (builder/bake/bake.py's `plan`).

A module of its own, below both bake.py (which makes one) and varfile.py (which reads one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builder.bake.template import PackerTool


@dataclass
class BakePlan:
    target: str
    platform: str
    input_hash: str
    base: str  # source AMI id, or the local base image's identity
    build_id: str
    cached: str | None  # the image that already has this input hash (AMI id or local disk)
    packer: PackerTool | None
    notes: list[str] = field(default_factory=list)
    contents: dict = field(default_factory=dict)  # the images and models it holds, and the disk they need
    variant: str = "cpu"  # "gpu": the NVIDIA image for a GPU instance type (builder/aws/gpu.py)

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "platform": self.platform,
            "input_hash": self.input_hash,
            "base": self.base,
            "build_id": self.build_id,
            "cached": self.cached,
            "packer": self.packer.version_text if self.packer else None,
            "notes": self.notes,
            "variant": self.variant,
            **self.contents,
        }
