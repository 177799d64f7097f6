"""The GPU of an instance type, as EC2 describes it (DescribeInstanceTypes' GpuInfo), and the image
variant that fits it.

No list of type names: a type has an NVIDIA GPU exactly when EC2 says so (moto serves the same
GpuInfo). An NVIDIA type gets the "gpu" image (the NVIDIA driver and Container Toolkit, Ollama's
stack with the device reservation: image/provision/25-nvidia.sh); every other type, and the local
target (no GPU passthrough to qemu), the "cpu" image. A type with another maker's GPU (AMD's g4ad)
gets the cpu image: the toolkit drives NVIDIA GPUs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CPU, GPU = "cpu", "gpu"
VARIANTS = (CPU, GPU)


@dataclass(frozen=True)
class Gpus:
    name: str  # "A10G"
    manufacturer: str  # "NVIDIA"
    count: int
    memory_mib: int  # each GPU's own memory (GpuInfo.Gpus[].MemoryInfo.SizeInMiB)

    def text(self) -> str:
        return f"{self.count} × {self.manufacturer} {self.name} ({self.memory_mib // 1024} GiB)"

    @property
    def nvidia(self) -> bool:
        return self.manufacturer.upper() == "NVIDIA"


def gpus_of(described: dict) -> Gpus | None:
    """The GPUs of one DescribeInstanceTypes entry; None for a type without any."""
    found = (described.get("GpuInfo") or {}).get("Gpus") or []
    if not found:
        return None
    first = found[0]  # EC2 types carry one kind of GPU each
    return Gpus(
        name=first.get("Name", "?"),
        manufacturer=first.get("Manufacturer", "?"),
        count=sum(int(g.get("Count", 1)) for g in found),
        memory_mib=int((first.get("MemoryInfo") or {}).get("SizeInMiB", 0)),
    )


def variant_of(described: dict) -> str:
    gpus = gpus_of(described)
    return GPU if gpus is not None and gpus.nvidia else CPU


def describe(ec2: Any, instance_type: str) -> dict:
    return ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"][0]


def instance_variant(ec2: Any, instance_type: str) -> str:
    return variant_of(describe(ec2, instance_type))
