"""The GPU of an instance type, as EC2 describes it (DescribeInstanceTypes' GpuInfo), and the image
variant that fits it.

No list of type names: a type has an NVIDIA GPU exactly when EC2 says so (moto serves the same
GpuInfo). An NVIDIA type gets the "gpu" image (the NVIDIA driver and Container Toolkit, Ollama's
stack with the device reservation: image/provision/25-nvidia.sh); every other type, and the local
target (no GPU passthrough to qemu), the "cpu" image. A type with another maker's GPU (AMD's g4ad)
gets the cpu image: the toolkit drives NVIDIA GPUs only.

Why the GPU image starts from AWS's Deep Learning Base OSS NVIDIA Driver GPU AMI (Ubuntu 22.04),
found like the CPU base by owner and name filter at bake time (image.gpu_base_ami_owner,
image.gpu_base_ami_name_filter), rather than installing the driver on Canonical's base:
- kernel and driver come paired and tested by AWS for its GPU types; a driver built or chosen here
  against Canonical's kernel could fall out of step with the next kernel update;
- the bake installs no driver and no toolkit (no DKMS build, no NVIDIA apt repository and its key
  to trust): minutes less, and nothing here pins a driver version;
- AWS patches it: a new release of the AMI every few weeks, picked up by the next bake as the
  CPU image picks up Canonical's;
- it is Ubuntu 22.04 like the CPU image, so one provisioning serves both; its Docker (docker-ce,
  with the toolkit set up) is kept instead of docker.io (image/provision/10-apt.sh).
NVIDIA's known issue: under systemd's cgroup driver a `systemctl daemon-reload` can take the GPUs
from running containers (NVIDIA/nvidia-docker#1730; the toolkit's install guide). The agent reloads
units (firstboot/services.py when it writes drop-ins, agent.py, tailscale_state.py), and health
runs every minute, so "never reload while a GPU container runs" cannot be kept. The GPU image
holds Docker to the cgroupfs driver instead, NVIDIA's documented workaround
(image/provision/25-nvidia.sh), and the image suite checks it.
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
