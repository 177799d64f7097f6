"""`builder resize NAME --size GIB --target local`: the instance's data disk made larger.

The data disk is a raw, sparse file (builder/local/instances.py). Stopped, `qemu-img resize` grows
it (it takes the image's write lock, so it refuses a disk some qemu still holds). Running, qemu
grows it through its QMP monitor (`block_resize`): the guest's virtio disk sees the new size at
once, and its agent grows the filesystem online within a minute (the health check). A stopped
instance's agent grows it at its next launch, before the mount. A disk never shrinks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from builder.errors import BuilderError
from builder.local.instances import LocalInstance
from builder.local.qemu import DATA_DRIVE
from builder.local.qmp import Qmp

GIB = 1024**3
# The largest EBS volume (gp3): the same ceiling on both targets, so a size that works here works there.
LARGEST_GIB = 65536


@dataclass
class LocalResizePlan:
    instance: str
    data_disk: str
    current_bytes: int
    target_gib: int
    running: bool

    @property
    def target_bytes(self) -> int:
        return self.target_gib * GIB

    @property
    def needed(self) -> bool:
        return self.target_bytes > self.current_bytes

    def actions(self) -> list[str]:
        current = _in_gib(self.current_bytes)
        if not self.needed:
            return [f"nothing: {self.data_disk} is already {current}"]
        if self.running:
            return [
                f"grow {self.data_disk} from {current} to {self.target_gib} GiB while it runs (QMP block_resize)",
                "the agent grows the filesystem online within a minute (its health check)",
            ]
        return [
            f"grow {self.data_disk} from {current} to {self.target_gib} GiB (qemu-img resize; it is stopped)",
            "the agent grows the filesystem at its next launch, before it mounts it",
        ]

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "target": "local",
            "data_disk": self.data_disk,
            "from_gib": round(self.current_bytes / GIB, 3),
            "to_gib": self.target_gib,
            "running": self.running,
            "plan": self.actions(),
        }


def plan_resize(instance: LocalInstance, size_gib: int) -> LocalResizePlan:
    if not 1 <= size_gib <= LARGEST_GIB:
        raise BuilderError(f"--size: {size_gib} GiB is not a size a data disk takes (whole GiB, 1 to {LARGEST_GIB})")
    if not instance.data_disk.is_file():
        raise BuilderError(
            f"{instance.name} has no data disk ({instance.data_disk}): no local instance of that name was launched "
            "(`builder status --target local` lists them)"
        )
    current = instance.data_disk.stat().st_size
    if size_gib * GIB < current:
        raise BuilderError(
            f"--size: {instance.data_disk} is {_in_gib(current)} and a data disk only grows (the data is on it); "
            f"give {-(-current // GIB)} GiB or more. Nothing was changed."
        )
    running = instance.running()
    if running and not instance.qmp.exists():
        raise BuilderError(
            f"{instance.name}'s qemu has no QMP monitor ({instance.qmp}; launched by an older builder): stop it "
            f"(`builder destroy {instance.name} --target local`, the data disk is kept) and resize it while it is "
            "stopped. Nothing was changed."
        )
    return LocalResizePlan(instance.name, str(instance.data_disk), current, size_gib, running)


def resize(instance: LocalInstance, plan: LocalResizePlan, log: Callable[[str], None]) -> None:
    if plan.running:
        with Qmp(instance.qmp) as qmp:
            qmp.execute("block_resize", device=DATA_DRIVE, size=plan.target_bytes)
        log(f"qemu grew {instance.data_disk} to {plan.target_gib} GiB under the running guest")
    else:
        command = ["qemu-img", "resize", "-q", "-f", "raw", str(instance.data_disk), str(plan.target_bytes)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuilderError(
                f"qemu-img could not grow {instance.data_disk}: {result.stderr.strip() or result.returncode}; "
                "it is as it was"
            )
        log(f"grew {instance.data_disk} to {plan.target_gib} GiB")
    size = instance.data_disk.stat().st_size
    if size != plan.target_bytes:  # qemu said yes: the file must say so too
        raise BuilderError(f"{instance.data_disk} is {size} bytes after the resize, not {plan.target_bytes}")


def _in_gib(size: int) -> str:
    return f"{size // GIB} GiB" if size % GIB == 0 else f"{size / GIB:.2f} GiB"
