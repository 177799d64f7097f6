"""`builder start NAME` / `builder stop NAME` on AWS: the instance's Auto Scaling group of one set
to one instance or none (min = max = desired), as the schedule's actions do (builder/aws/schedule.py).

A stop terminates the instance: its root volume goes with it, the data volume is kept and
detaches. A start has the group launch a new instance from the launch template, whose agent
attaches that data volume: the same platform, with its data, comes back. The stop waits until the
instance is terminated and the volume is free (`available`): then nothing runs and nothing bills
by the hour but storage.

`autoscaling` and `ec2` are boto3 clients, injected; `sleep` and `clock` too (tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from builder.aws import group, names
from builder.aws.instances import data_volume
from builder.errors import BuilderError


class PowerError(BuilderError):
    pass


@dataclass
class PowerPlan:
    platform: str
    instance: str
    action: str  # "start" or "stop"
    group_name: str
    desired: int  # the group's desired capacity now
    live: list[str]  # its instances now (pending or in service)
    volume_id: str | None
    volume_state: str
    schedule_note: str = ""  # what aws.schedule will do next about it
    notes: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return (self.desired != 1) if self.action == "start" else (self.desired != 0 or bool(self.live))

    def lines(self) -> list[str]:
        volume = f"data volume {self.volume_id} ({self.volume_state})" if self.volume_id else "no data volume yet"
        if not self.needed:
            now = "runs" if self.action == "start" else "is stopped"
            return [f"{self.platform}/{self.instance} already {now} (group {self.group_name}); {volume}"]
        if self.action == "start":
            lines = [
                f"set auto scaling group {self.group_name} to one instance (min = max = desired = 1)",
                f"its new instance attaches {volume}",
            ]
        else:
            ending = ", ".join(self.live) or "none running"
            lines = [
                f"set auto scaling group {self.group_name} to no instance (min = max = desired = 0)",
                f"terminate {ending}; keep {volume} (it detaches)",
            ]
        return lines + ([self.schedule_note] if self.schedule_note else [])

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "action": self.action,
            "group": self.group_name,
            "needed": self.needed,
            "instances": self.live,
            "data_volume": self.volume_id,
            "schedule": self.schedule_note or None,
        }


def plan_power(clients: Any, config: Any, instance: str, action: str, now: datetime | None = None) -> PowerPlan:
    """Read only: the group, its instances, the data volume, and what the schedule does next."""
    group_name = names.group_name(config.name, instance)
    found = group.find(clients.autoscaling, group_name)
    if found is None:
        raise PowerError(
            f"{config.name}/{instance} has no auto scaling group {group_name} in {config.aws.region}: "
            f"`builder launch {instance}` creates it"
        )
    live = [i["InstanceId"] for i in found.get("Instances", []) if i["LifecycleState"] in group.LIVE_STATES]
    volume = data_volume(clients.ec2, config.name, instance)
    return PowerPlan(
        platform=config.name,
        instance=instance,
        action=action,
        group_name=group_name,
        desired=found["DesiredCapacity"],
        live=live,
        volume_id=volume["VolumeId"] if volume else None,
        volume_state=volume["State"] if volume else "none",
        schedule_note=schedule_note(config.aws.schedule, action, now or datetime.now(timezone.utc)),
    )


def schedule_note(schedule: Any, action: str, now: datetime) -> str:
    """What aws.schedule does after this hand switch: it undoes it at its next opposite change."""
    if schedule is None:
        return ""
    from builder.cron import parse
    from builder.hours import Change

    opposite = "start" if action == "stop" else "stop"
    expression = getattr(schedule, opposite)
    at = parse(expression).next_after(schedule.timezone, now) if expression else None
    if at is None:
        return ""
    verb = "starts it again" if opposite == "start" else "stops it"
    when = Change(opposite, at).in_words(schedule.timezone).removeprefix(f"{opposite} at ")
    return f"aws.schedule {verb} at its next {opposite} time: {when}"


def start(autoscaling: Any, plan: PowerPlan, log: Callable[[str], None]) -> None:
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=plan.group_name, MinSize=1, MaxSize=1, DesiredCapacity=1)
    log(f"group {plan.group_name} set to one instance: EC2 Auto Scaling launches it")


def stop(
    autoscaling: Any,
    ec2: Any,
    plan: PowerPlan,
    log: Callable[[str], None],
    *,
    wait: bool = True,
    timeout: float = 900,
    poll: float = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Set the group to none; with `wait`, until its instances are terminated and the data volume
    is available. True when all of that was seen."""
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=plan.group_name, MinSize=0, MaxSize=0, DesiredCapacity=0)
    log(f"group {plan.group_name} set to no instance" + (f": terminating {', '.join(plan.live)}" if plan.live else ""))
    if not wait:
        return False
    deadline = clock() + timeout
    seen: dict[str, str] = {}
    while True:
        states = _states(ec2, plan.live)
        volume = _volume_state(ec2, plan.volume_id)
        for what, state in [*states.items(), *([(plan.volume_id, volume)] if plan.volume_id else [])]:
            if seen.get(what) != state:
                log(f"{what}: {state}")
                seen[what] = state
        if all(state == "terminated" for state in states.values()) and volume in ("available", None):
            return True
        if clock() >= deadline:
            left = [f"{i} {s}" for i, s in states.items() if s != "terminated"]
            left += [f"data volume {plan.volume_id} {volume}"] if volume not in ("available", None) else []
            raise PowerError(
                f"the stop of {plan.instance} is under way but not finished within {timeout:g} s ({', '.join(left)}); "
                f"the group keeps no instance: `builder status {plan.instance}` shows when it is done, "
                f"`builder start {plan.instance}` brings it back"
            )
        sleep(poll)


def _states(ec2: Any, instance_ids: list[str]) -> dict[str, str]:
    if not instance_ids:
        return {}
    reservations = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def _volume_state(ec2: Any, volume_id: str | None) -> str | None:
    if volume_id is None:
        return None
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    attached = [a for a in volume.get("Attachments", []) if a.get("State") != "detached"]
    if not attached:
        return volume["State"]
    return f"{volume['State']}, {attached[0]['State']} to {attached[0]['InstanceId']}"
