"""`builder resize NAME --size GIB` on AWS: the data volume grown online by an EBS modification.

The instance keeps running: EBS grows an attached volume in place (ModifyVolume), and the size
increase takes effect once the modification reaches `optimizing` (AWS's EBS user guide, "Monitor
the progress of volume modifications"); that is what this waits for, not `completed`, which may take
hours of optimizing. The agent on the instance then grows the filesystem online (its health check,
every minute: firstboot/data_growth.py); a volume no instance runs on grows its filesystem at the
next boot. A volume never shrinks (EBS cannot, and the data is on it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builder.aws.instances import data_volume
from builder.errors import BuilderError

# Sizes each volume type allows, in GiB: botocore's EC2 model, ModifyVolume's Size.
SIZE_LIMITS_GIB = {
    "gp2": (1, 16384),
    "gp3": (1, 65536),
    "gp3a": (1, 65536),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "io2a": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}
LARGEST_GIB = max(high for _, high in SIZE_LIMITS_GIB.values())
IN_PROGRESS = ("modifying", "optimizing")  # EBS takes a new modification only once the last one completed
SIZE_USABLE = ("optimizing", "completed")
WAIT_SECONDS = 600  # a size change reaches optimizing in seconds, AWS says
POLL_SECONDS = 5


@dataclass
class ResizePlan:
    platform: str
    instance: str
    volume_id: str
    volume_type: str
    current_gib: int
    target_gib: int
    attached_to: str | None  # the instance it is attached to now, None when detached

    @property
    def needed(self) -> bool:
        return self.target_gib > self.current_gib

    def actions(self) -> list[str]:
        if not self.needed:
            return [f"nothing: {self.volume_id} is already {self.current_gib} GiB"]
        where = f"attached to {self.attached_to}, which keeps running" if self.attached_to else "detached"
        return [
            f"grow data volume {self.volume_id} ({self.volume_type}, {where}) from {self.current_gib} to "
            f"{self.target_gib} GiB (EBS ModifyVolume, online)",
            f"wait until the modification reaches optimizing (the new size usable), up to {WAIT_SECONDS} s",
            self.filesystem(),
        ]

    def filesystem(self) -> str:
        if self.attached_to:
            return f"the agent on {self.attached_to} grows the filesystem online within a minute (its health check)"
        return "the agent grows the filesystem at the next boot on it (`builder launch`), before it mounts it"

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "target": "aws",
            "data_volume": self.volume_id,
            "volume_type": self.volume_type,
            "from_gib": self.current_gib,
            "to_gib": self.target_gib,
            "attached_to": self.attached_to,
            "plan": self.actions(),
        }


def check_size(size_gib: int) -> None:
    """What no volume type allows, before any AWS call."""
    if not 1 <= size_gib <= LARGEST_GIB:
        raise BuilderError(f"--size: {size_gib} GiB is not a size EBS allows (whole GiB, 1 to {LARGEST_GIB})")


def plan_resize(ec2: Any, platform: str, name: str, size_gib: int) -> ResizePlan:
    """The resize, by reading only; BuilderError for a size the volume cannot take."""
    check_size(size_gib)
    volume = data_volume(ec2, platform, name)
    if volume is None:
        raise BuilderError(
            f"{platform}/{name} has no data volume (no instance of that name was launched here): "
            "`builder status` lists the instances"
        )
    volume_id, volume_type, current = volume["VolumeId"], volume["VolumeType"], volume["Size"]
    low, high = SIZE_LIMITS_GIB.get(volume_type, (1, LARGEST_GIB))
    if not low <= size_gib <= high:
        raise BuilderError(f"--size: a {volume_type} volume holds {low} to {high} GiB; {size_gib} GiB is outside that")
    if size_gib < current:
        raise BuilderError(
            f"--size: {volume_id} is {current} GiB and a volume only grows (EBS cannot shrink one, and the data is "
            f"on it); give {current} GiB or more. Nothing was changed."
        )
    last = last_modification(ec2, volume_id)
    if size_gib > current and last is not None and last["ModificationState"] in IN_PROGRESS:
        raise BuilderError(
            f"{volume_id} is still being modified ({last['ModificationState']}, {last.get('Progress', 0)} %); EBS "
            "takes a new modification only once the last one has completed: run it again later. Nothing was changed."
        )
    attached = [a["InstanceId"] for a in volume.get("Attachments", []) if a.get("State") in ("attaching", "attached")]
    return ResizePlan(platform, name, volume_id, volume_type, current, size_gib, attached[0] if attached else None)


def last_modification(ec2: Any, volume_id: str) -> dict | None:
    """The volume's newest modification, None when it was never modified."""
    from botocore.exceptions import ClientError

    try:
        found = ec2.describe_volumes_modifications(VolumeIds=[volume_id])["VolumesModifications"]
    except ClientError as exc:  # AWS answers a volume never modified with this error, not an empty list
        if exc.response.get("Error", {}).get("Code") == "InvalidVolumeModification.NotFound":
            return None
        raise
    # The newest by start time; of two started in the same second, the one listed last.
    newest = max(enumerate(found), key=lambda item: (str(item[1].get("StartTime", "")), item[0]), default=None)
    return newest[1] if newest else None


def resize(
    ec2: Any,
    plan: ResizePlan,
    log: Callable[[str], None],
    *,
    timeout: float = WAIT_SECONDS,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Modify the volume and wait until its new size is usable; returns the modification's state then."""
    ec2.modify_volume(VolumeId=plan.volume_id, Size=plan.target_gib)
    log(f"asked EBS to grow {plan.volume_id} to {plan.target_gib} GiB; waiting for it to reach optimizing")
    deadline = clock() + timeout
    while True:
        last = last_modification(ec2, plan.volume_id)
        state = last["ModificationState"] if last else "modifying"
        if last is not None and last.get("TargetSize") not in (None, plan.target_gib):
            state = "modifying"  # the answer still shows an older modification
        if state in SIZE_USABLE:
            return state
        if state == "failed":
            raise BuilderError(
                f"EBS could not grow {plan.volume_id}: {last.get('StatusMessage') or 'no reason given'}; it keeps "
                f"{plan.current_gib} GiB and its data (AWS: a transient fault; run it again)"
            )
        if clock() >= deadline:
            raise BuilderError(
                f"{plan.volume_id}'s modification is still {state} after {timeout:g} s; EBS goes on with it and the "
                "agent grows the filesystem once the volume is larger. `aws ec2 describe-volumes-modifications "
                f"--volume-ids {plan.volume_id}` follows it"
            )
        sleep(poll)
