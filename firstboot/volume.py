"""The data volume on the EC2 side: find it by its tags in this instance's zone, attach it if needed.

A volume attached to another instance is never force-detached: that instance may be writing to
it. It is waited for until the deadline, because an instance of an Auto Scaling group of one is
replaced while the one before still shuts down and lets go of the volume; after that it is
reported. The instance role allows exactly DescribeVolumes and AttachVolume on volumes tagged for
this platform instance.

EC2 that throttles or is briefly out (the agent's client raises TransientError for it, see
firstboot/platform.py) is looked at again until the same deadline; past it, that passing failure is
raised for the agent to wait out, while a volume another instance still holds is reported at once.

`ec2` is a boto3 EC2 client (or anything with the same three methods), injected by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firstboot.framework import TransientError

# Tags that mark a platform instance's data volume; `builder launch` writes them.
PLATFORM_TAG = "ai-platform:platform"
INSTANCE_TAG = "ai-platform:instance"
ROLE_TAG = "ai-platform:role"
DATA_ROLE = "data"

DEFAULT_DEVICE_NAME = "/dev/sdf"  # a hint only: Nitro renames it; the volume is found by serial


class VolumeError(Exception):
    """The data volume cannot be attached; the message says why and what to do."""


@dataclass
class AttachedVolume:
    volume_id: str
    attached_now: bool  # False: it was already attached to this instance


def find_data_volume(ec2: Any, *, platform: str, instance_name: str, availability_zone: str) -> dict:
    """The one data volume of this platform instance in this zone."""
    filters = [
        {"Name": f"tag:{PLATFORM_TAG}", "Values": [platform]},
        {"Name": f"tag:{INSTANCE_TAG}", "Values": [instance_name]},
        {"Name": f"tag:{ROLE_TAG}", "Values": [DATA_ROLE]},
        {"Name": "availability-zone", "Values": [availability_zone]},
    ]
    volumes = ec2.describe_volumes(Filters=filters)["Volumes"]
    what = f"data volume of {platform}/{instance_name} in {availability_zone}"
    if not volumes:
        raise VolumeError(
            f"no {what} (tags {PLATFORM_TAG}, {INSTANCE_TAG}, {ROLE_TAG}={DATA_ROLE}); `builder launch` creates it"
        )
    if len(volumes) > 1:
        ids = ", ".join(sorted(v["VolumeId"] for v in volumes))
        raise VolumeError(f"more than one {what}: {ids}; keep one and untag the others (none was touched)")
    return volumes[0]


def ensure_attached(
    ec2: Any,
    *,
    instance_id: str,
    platform: str,
    instance_name: str,
    availability_zone: str,
    device_name: str = DEFAULT_DEVICE_NAME,
    timeout: float = 300,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_interval: float = 2.0,
    log: Callable[[str], None] = lambda line: None,
) -> AttachedVolume:
    """Attach this instance's data volume to it, unless it already is; wait until it is in use."""
    deadline = clock() + timeout
    attached_now = False
    waited_for: set[str] = set()
    passing: TransientError | None = None  # the last look or attach that failed for a passing reason
    told = ""
    while True:
        if passing is not None:
            if clock() >= deadline:
                raise passing
            if str(passing) != told:  # once per kind of failure, not every poll
                told = str(passing)
                log(f"EC2 did not answer ({told}): trying again")
            sleep(poll_interval)
        try:
            volume = find_data_volume(
                ec2, platform=platform, instance_name=instance_name, availability_zone=availability_zone
            )
        except TransientError as exc:
            passing = exc
            continue
        passing = None
        volume_id, state = volume["VolumeId"], volume["State"]
        holders = {a["InstanceId"] for a in volume.get("Attachments", []) if a.get("State") != "detached"}
        others = holders - {instance_id}
        if others and clock() >= deadline:
            raise VolumeError(
                f"{volume_id} is still attached to {', '.join(sorted(others))} after {timeout:g} s; it is never "
                "force-detached. Stop or destroy that instance first (builder destroy keeps the volume)."
            )
        if others:
            if others - waited_for:
                log(f"{volume_id} is attached to {', '.join(sorted(others))}: waiting for it to let go")
                waited_for |= others
            sleep(poll_interval)
            continue
        if instance_id in holders and _attachment_state(volume, instance_id) == "attached":
            return AttachedVolume(volume_id, attached_now)
        if state == "available" and not holders:
            try:
                ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device_name)
                attached_now = True
            except TransientError as exc:  # the next look tells whether it went through after all
                passing = exc
                continue
        elif state in ("error", "deleting", "deleted"):
            raise VolumeError(f"{volume_id} is in state {state!r} and cannot be attached")
        # creating, attaching, or just asked to attach: look again until the deadline.
        if clock() >= deadline:
            raise VolumeError(f"{volume_id} was not attached to {instance_id} within {timeout:g} s (state {state!r})")
        sleep(poll_interval)


def _attachment_state(volume: dict, instance_id: str) -> str | None:
    for attachment in volume.get("Attachments", []):
        if attachment["InstanceId"] == instance_id:
            return attachment.get("State")
    return None
