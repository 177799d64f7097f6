"""A platform instance on AWS is an EC2 Auto Scaling group of one: EC2 replaces what fails.

The group lives in the data volume's zone (one subnet) and launches from the launch template's
default version (`launch` and `upgrade` make each new version the default). It keeps exactly one
instance (min = max = desired = 1) and replaces it when it is terminated or fails its EC2 status
checks (the group's health check, always on); the new instance boots with the same user-data and
its agent attaches the same data volume.

Its instance maintenance policy is "terminate and launch" (0-100 %): never two instances at once,
because the data volume attaches to one only. The replacement may boot while the old instance
still lets go of the volume: the agent waits for it (firstboot/volume.py).

The agent's own report is not a health check of the group: an image whose first boot fails would
be replaced again and again. `upgrade` follows the agent and goes back by itself instead.

`autoscaling` is a boto3 Auto Scaling client, `ec2` an EC2 client; both injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from builder.aws.names import INSTANCE_TAG, PLATFORM_TAG
from builder.errors import BuilderError

GRACE_SECONDS = 300  # what the console sets: status checks only count once the OS has booted
# An instance the group still counts as its own; Terminating*/Terminated ones are on their way out.
LIVE_STATES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")


class GroupError(BuilderError):
    pass


def find(autoscaling: Any, name: str) -> dict | None:
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups[0] if groups else None


def of_platform(autoscaling: Any, platform: str) -> dict[str, dict]:
    """The platform's groups by instance name (their tags name it)."""
    found = {}
    filters = [{"Name": f"tag:{PLATFORM_TAG}", "Values": [platform]}]
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate(Filters=filters):
        for group in page["AutoScalingGroups"]:
            tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", [])}
            if INSTANCE_TAG in tags:
                found[tags[INSTANCE_TAG]] = group
    return found


def summary(group: dict) -> str:
    """One line for `builder status`: how many instances the group keeps, and has."""
    live = sum(instance["LifecycleState"] in LIVE_STATES for instance in group.get("Instances", []))
    line = f"{group['AutoScalingGroupName']}: keeps {group['DesiredCapacity']}, has {live}"
    if group["DesiredCapacity"] == 0:
        line += (
            " (stopped: by `builder stop` or aws.schedule, `builder start NAME` starts it; "
            "after an upgrade cut short, `builder launch NAME`)"
        )
    return line


def live_instance(group: dict | None) -> str | None:
    """The group's instance that is starting or in service (None: none, or the group is gone)."""
    for instance in (group or {}).get("Instances", []):
        if instance["LifecycleState"] in LIVE_STATES:
            return instance["InstanceId"]
    return None


def ensure(autoscaling: Any, name: str, template_id: str, subnet_id: str, tags: list[dict]) -> bool:
    """Create the group, or bring an existing one back to this template, subnet and size; True
    when created now. The group's tags are not propagated: the launch template tags its instances."""
    settings = {
        "AutoScalingGroupName": name,
        "LaunchTemplate": {"LaunchTemplateId": template_id, "Version": "$Default"},
        "MinSize": 1,
        "MaxSize": 1,
        "DesiredCapacity": 1,
        "VPCZoneIdentifier": subnet_id,
        "HealthCheckType": "EC2",
        "HealthCheckGracePeriod": GRACE_SECONDS,
        "InstanceMaintenancePolicy": {"MinHealthyPercentage": 0, "MaxHealthyPercentage": 100},
    }
    if find(autoscaling, name) is None:
        autoscaling.create_auto_scaling_group(
            **settings,
            Tags=[{**tag, "PropagateAtLaunch": False} for tag in tags],
        )
        return True
    autoscaling.update_auto_scaling_group(**settings)
    return False


def wait_for_instance(
    autoscaling: Any,
    name: str,
    *,
    not_one_of: tuple[str, ...] = (),
    timeout: float = 600,
    poll: float = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The id of the group's live instance once it has one (other than `not_one_of`). Until then
    EC2 Auto Scaling launches and retries by itself (a new instance profile is refused for seconds,
    capacity may be short); at the deadline the error gives its last failed launch."""
    deadline = clock() + timeout
    while True:
        instance = live_instance(find(autoscaling, name))
        if instance and instance not in not_one_of:
            return instance
        if clock() >= deadline:
            raise GroupError(
                f"auto scaling group {name} started no instance within {timeout:g} s"
                + (f"; its last failed launch: {failure}" if (failure := last_failure(autoscaling, name)) else "")
                + "; it keeps trying by itself (`builder status` shows when it has one)"
            )
        sleep(poll)


def last_failure(autoscaling: Any, name: str) -> str:
    activities = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=10)["Activities"]
    for activity in activities:  # newest first
        if activity.get("StatusCode") in ("Failed", "Cancelled"):
            return activity.get("StatusMessage") or activity.get("Description", "")
    return ""


def scale(autoscaling: Any, ec2: Any, name: str, size: int, log: Callable[[str], None]) -> list[str]:
    """Set the group to `size` (0 or 1); at 0, wait until its instance is terminated (the data
    volume is then free). Returns the instances it ended."""
    group = find(autoscaling, name)
    if group is None:
        raise GroupError(f"auto scaling group {name} does not exist: `builder launch` creates it")
    ending = [instance["InstanceId"] for instance in group.get("Instances", [])]
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=size, DesiredCapacity=size)
    if size == 0 and ending:
        log(f"group {name} at 0: terminating {', '.join(ending)}")
        _wait_terminated(ec2, ending)
    return ending if size == 0 else []


def delete(autoscaling: Any, ec2: Any, name: str, log: Callable[[str], None]) -> list[str]:
    """Delete the group and its instance (the data volume detaches and is kept); returns the
    instances it ended. A group already gone is not an error."""
    group = find(autoscaling, name)
    if group is None:
        return []
    ending = [instance["InstanceId"] for instance in group.get("Instances", [])]
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    log(f"deleted auto scaling group {name}" + (f"; terminating {', '.join(ending)}" if ending else ""))
    if ending:
        _wait_terminated(ec2, ending)
    return ending


def _wait_terminated(ec2: Any, instance_ids: list[str]) -> None:
    ec2.get_waiter("instance_terminated").wait(InstanceIds=instance_ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120})
