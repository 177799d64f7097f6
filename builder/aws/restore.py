"""`builder restore NAME` on AWS: the instance's data volume made anew from one of its snapshots.

  1. plan, by reading only: the snapshot is this instance's data volume's and completed; the data
     volume, the group and the image it runs are found;
  2. stop: the group to 0, as `upgrade` stops it, so the data volume detaches;
  3. a volume from the snapshot (the data volume's zone, type, IOPS, throughput, key), swapped in
     by its tags; the replaced volume is kept, detached and tagged data-replaced
     (builder/aws/snapshots.py);
  4. start: the group back to one, from the launch template's default version as before, and
     wait for the agent.
Whatever fails after the stop, the group goes back to one (on whichever volume is tagged as the
data volume by then) and the error says which volume is where.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from builder.aws import group, names, snapshots
from builder.aws.instances import data_volume, list_instances
from builder.errors import BuilderError, failure_line


@dataclass
class RestorePlan:
    platform: str
    instance: str
    snapshot: snapshots.SnapshotView
    volume_id: str  # the data volume now, which the restore replaces and keeps
    group_name: str | None  # None: no group (the instance was destroyed): the volume is swapped only
    running: list[str]  # the instances the stop ends
    image: str | None  # the image its launch template starts (the hint when a start fails)

    def actions(self) -> list[str]:
        ending = f"terminate {', '.join(self.running)}" if self.running else "none runs"
        actions = [f"stop {self.instance}: {ending}"]
        if self.group_name:
            actions[0] += f" (group {self.group_name} to 0)"
        actions += [
            f"make a volume from {self.snapshot.snapshot_id} ({self.snapshot.started}, {self.snapshot.reason}) in the "
            f"zone of {self.volume_id}, with its type, IOPS, throughput and key",
            f"make it the data volume; keep {self.volume_id} detached, tagged "
            f"{names.ROLE_TAG}={snapshots.REPLACED_ROLE}",
        ]
        if self.group_name:
            actions.append(f"start {self.instance} again (group {self.group_name} to 1, same launch template version)")
        else:
            actions.append(f"no auto scaling group: `builder launch {self.instance}` starts it on the restored volume")
        return actions

    def to_json(self) -> dict:
        return {
            "instance": self.instance,
            "snapshot": self.snapshot.to_json(),
            "replaces": self.volume_id,
            "group": self.group_name,
            "stops": self.running,
            "plan": self.actions(),
        }


@dataclass
class RestoreResult:
    restored: snapshots.Restored
    instance_id: str | None  # None: not started (no group)
    agent_state: str | None = None
    agent_detail: str = ""


def plan_restore(clients: Any, config: Any, name: str, snapshot_id: str | None) -> RestorePlan:
    """Everything the restore needs, by reading only; `snapshot_id` None: the newest completed one."""
    ec2 = clients.ec2
    volume = snapshots.data_volume_of(ec2, config.name, name)
    found = snapshots.find_snapshot(ec2, config.name, name, snapshot_id)
    snapshots.require_completed(found)
    group_name = names.group_name(config.name, name)
    existing = group.find(clients.autoscaling, group_name)
    running = [view.instance_id for view in list_instances(ec2, config.name, name) if view.state != "shutting-down"]
    if existing is None and running:
        raise BuilderError(
            f"{name} runs as {', '.join(running)} outside an auto scaling group (launched by an older builder), which "
            f"restore cannot start again: `builder destroy {name}` (keeps the data volume), then `builder restore "
            f"{name}`, then `builder launch {name}`"
        )
    return RestorePlan(
        platform=config.name,
        instance=name,
        snapshot=snapshots.view(found),
        volume_id=volume["VolumeId"],
        group_name=group_name if existing else None,
        running=running,
        image=_template_image(ec2, names.launch_template_name(config.name, name)),
    )


def restore(
    clients: Any,
    plan: RestorePlan,
    log: Callable[[str], None],
    *,
    wait: bool,
    wait_timeout: float,
    wait_for_agent: Callable | None = None,
    on_change: Callable[[str, str], None] = lambda state, detail: None,
) -> RestoreResult:
    from builder.aws.instances import wait_for_agent as follow_agent

    ec2, autoscaling = clients.ec2, clients.autoscaling
    # From the stop on: whatever fails, the group goes back to one (a stop cut short included).
    try:
        if plan.group_name:
            group.scale(autoscaling, ec2, plan.group_name, 0, log)
        restored = snapshots.restore_volume(ec2, plan.platform, plan.instance, plan.snapshot.snapshot_id, log)
    except Exception as exc:
        _start_after_failure(clients, plan, exc, log)  # raises, saying what is where
    if not plan.group_name:
        return RestoreResult(restored, None)
    try:
        group.scale(autoscaling, ec2, plan.group_name, 1, log)
        instance_id = group.wait_for_instance(autoscaling, plan.group_name)
    except Exception as exc:
        raise BuilderError(
            f"{plan.instance}'s data volume is now {restored.volume_id} (from {restored.snapshot_id}; "
            f"{restored.replaced_volume_id} is kept), but starting it again failed ({failure_line(exc)}): "
            f"{_relaunch(plan)} brings it back"
        ) from exc
    log(f"{instance_id} started on {restored.volume_id}")
    if not wait:
        return RestoreResult(restored, instance_id)

    def group_instance() -> str | None:
        return group.live_instance(group.find(autoscaling, plan.group_name))

    try:
        state, detail = (wait_for_agent or follow_agent)(
            ec2, instance_id, timeout=wait_timeout, on_change=on_change, current=group_instance
        )
    except BuilderError as exc:  # no report in time: the restore itself is done
        raise BuilderError(
            f"{plan.instance} ({instance_id}) runs on the restored volume {restored.volume_id}, but {exc}; "
            f"{snapshots.back_hint(plan.instance, restored)}"
        ) from exc
    if state == "failed":
        raise BuilderError(
            f"{plan.instance} ({instance_id}) runs on the restored volume {restored.volume_id}, but its agent failed: "
            f"{detail}; {snapshots.back_hint(plan.instance, restored)}"
        )
    return RestoreResult(restored, instance_id, state, detail)


def _start_after_failure(clients: Any, plan: RestorePlan, failure: Exception, log) -> NoReturn:
    """The restore failed after the stop: start it again on whatever volume is the data volume now."""
    ec2 = clients.ec2
    where = _where(ec2, plan)
    if not plan.group_name:
        raise BuilderError(f"restore of {plan.instance} failed ({failure_line(failure)}); {where}") from failure
    try:
        group.scale(clients.autoscaling, ec2, plan.group_name, 1, log)
        instance_id = group.wait_for_instance(clients.autoscaling, plan.group_name)
    except Exception as exc:
        raise BuilderError(
            f"restore of {plan.instance} failed ({failure_line(failure)}), and starting it again failed too "
            f"({failure_line(exc)}); {where}; {_relaunch(plan)} brings it back"
        ) from failure
    raise BuilderError(
        f"restore of {plan.instance} failed ({failure_line(failure)}); it was started again ({instance_id}); {where}"
    ) from failure


def _where(ec2: Any, plan: RestorePlan) -> str:
    """Which volume is the data volume now, and any volume the failed restore made."""
    try:
        current = data_volume(ec2, plan.platform, plan.instance)
        made = ec2.describe_volumes(
            Filters=[
                {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [plan.platform]},
                {"Name": f"tag:{names.INSTANCE_TAG}", "Values": [plan.instance]},
                {"Name": f"tag:{snapshots.RESTORED_FROM_TAG}", "Values": [plan.snapshot.snapshot_id]},
                {"Name": f"tag:{names.ROLE_TAG}", "Values": [snapshots.RESTORING_ROLE]},
            ]
        )["Volumes"]
    except Exception as exc:  # the message still goes out, saying what could not be read
        unread = failure_line(exc)
        return f"which volume is the data volume could not be read ({unread}); {plan.volume_id} was, and is kept"
    said = f"the data volume is {current['VolumeId']}" if current else "no volume is tagged as the data volume"
    if current and current["VolumeId"] == plan.volume_id:
        said += " (unchanged)"
    if made:
        ids = ", ".join(volume["VolumeId"] for volume in made)
        said += f"; {ids}, made from {plan.snapshot.snapshot_id}, is kept, tagged {snapshots.RESTORING_ROLE}"
    return said


def _relaunch(plan: RestorePlan) -> str:
    return f"`builder launch {plan.instance}" + (f" --ami {plan.image}`" if plan.image else "`")


def _template_image(ec2: Any, template: str) -> str | None:
    try:
        versions = ec2.describe_launch_template_versions(LaunchTemplateName=template, Versions=["$Default"])
    except Exception:  # no template (yet): only a hint needs it
        return None
    found = versions["LaunchTemplateVersions"]
    return found[0]["LaunchTemplateData"].get("ImageId") if found else None
