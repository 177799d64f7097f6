"""`aws.schedule` carried out by the instance's Auto Scaling group: two scheduled actions, one that
sets the group to one instance (min = max = desired = 1) at the start times, one that sets it to
none at the stop times, each with the schedule's time zone (Auto Scaling follows its DST).

At a stop the group terminates the instance; its data volume is kept and detaches. At a start the
group launches a new instance from the launch template, whose agent attaches the same volume: the
same platform comes back (builder/aws/group.py). `builder launch` makes the actions match the
config: creates, updates, or removes them when the schedule is gone.

`autoscaling` is a boto3 Auto Scaling client, injected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SIZES = {"start": 1, "stop": 0}


def action_name(group_name: str, action: str) -> str:
    # The group's name in it: action names are the group's own on AWS, but moto keeps one namespace.
    return f"{group_name}-{action}"


def wanted(schedule, group_name: str) -> dict[str, dict]:
    """The scheduled actions the config asks for, by name, as PutScheduledUpdateGroupAction takes them."""
    if schedule is None:
        return {}
    actions = {}
    for action, size in SIZES.items():
        recurrence = getattr(schedule, action)
        if recurrence:
            actions[action_name(group_name, action)] = {
                "Recurrence": recurrence,
                "TimeZone": schedule.timezone,
                "MinSize": size,
                "MaxSize": size,
                "DesiredCapacity": size,
            }
    return actions


def existing(autoscaling: Any, group_name: str) -> dict[str, dict]:
    """The group's scheduled actions by name (builder's and any other)."""
    found = {}
    paginator = autoscaling.get_paginator("describe_scheduled_actions")
    for page in paginator.paginate(AutoScalingGroupName=group_name):
        for action in page["ScheduledUpdateGroupActions"]:
            found[action["ScheduledActionName"]] = action
    return found


@dataclass
class SchedulePlan:
    group_name: str
    put: dict[str, dict]  # created or changed
    delete: list[str]
    kept: list[str]  # already as wanted

    def lines(self) -> list[str]:
        lines = [f"put scheduled action {name}: {_describe(action)}" for name, action in self.put.items()]
        lines += [f"keep scheduled action {name} (as configured)" for name in self.kept]
        lines += [f"delete scheduled action {name} (no longer in aws.schedule)" for name in self.delete]
        return lines or ["no schedule (aws.schedule unset): the instance stays on"]


def _describe(action: dict) -> str:
    size = "one instance" if action["DesiredCapacity"] else "no instance (data volume kept)"
    return f"{size} at {action['Recurrence']!r} ({action['TimeZone']})"


def plan(autoscaling: Any | None, schedule, group_name: str) -> SchedulePlan:
    """What to put and delete; `autoscaling` None: the group does not exist yet (nothing to read)."""
    want = wanted(schedule, group_name)
    have = existing(autoscaling, group_name) if autoscaling is not None else {}
    ours = {name for name in have if name in (action_name(group_name, a) for a in SIZES)}
    put = {name: action for name, action in want.items() if not _same(have.get(name), action)}
    kept = [name for name in want if name not in put]
    return SchedulePlan(group_name, put, sorted(ours - want.keys()), kept)


def _same(current: dict | None, action: dict) -> bool:
    return current is not None and all(current.get(key) == value for key, value in action.items())


def apply(autoscaling: Any, schedule_plan: SchedulePlan, log) -> None:
    for name, action in schedule_plan.put.items():
        autoscaling.put_scheduled_update_group_action(
            AutoScalingGroupName=schedule_plan.group_name, ScheduledActionName=name, **action
        )
        log(f"scheduled action {name}: {_describe(action)}")
    for name in schedule_plan.delete:
        autoscaling.delete_scheduled_action(AutoScalingGroupName=schedule_plan.group_name, ScheduledActionName=name)
        log(f"deleted scheduled action {name}")
