"""The platform's instances on AWS: what runs, what the agent reported, ending one, following one."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builder.aws import names
from builder.errors import BuilderError

FINAL_STATES = ("done", "degraded", "failed")
# The agent's steps in the order it runs them (firstboot/agent.py STEPS; tests/test_upgrade.py
# keeps the two alike): its status tags name the last one finished, or the one that failed.
AGENT_STEPS = ("config", "identity", "storage", "tailscale", "secrets", "gdrive", "stacks", "services", "report")


@dataclass
class InstanceView:
    name: str
    instance_id: str
    state: str
    zone: str
    launched: str
    agent_state: str  # the firstboot agent's report, from the instance's tags ("-" before its first report)
    agent_detail: str
    health: str = "-"  # the instance's last health line (firstboot health, every minute), "-" before any
    group: str = "-"  # AWS: its Auto Scaling group of one, what it keeps and has
    last_snapshot: dict | None = None  # AWS: the newest snapshot of its data volume (snapshot_policy.snapshot_report)
    snapshot_warning: str | None = None  # AWS: that snapshot is too old, or there is none after two periods
    backup: str = "-"  # the agent's line on the on-volume backups (firstboot/backup_record.py), "-" before any
    disk: str = "-"  # the agent's line on the data volume's room (firstboot/disk_space.py), "-" before any
    certificate: str = "-"  # the agent's line on the edge's certificate (firstboot/certificate_report.py)
    readahead: str = "-"  # AWS: the agent's line on the models' read-ahead (firstboot/readahead.py)

    def to_json(self) -> dict:
        from builder import disk_status
        from builder.backup_status import describe
        from builder.certificate_status import describe as describe_certificate

        return {
            **self.__dict__,
            "backup": describe(self.backup),
            "disk": disk_status.describe(self.disk),
            "certificate": describe_certificate(self.certificate),
        }


def list_instances(ec2: Any, platform: str, name: str | None = None) -> list[InstanceView]:
    filters = [
        {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped", "shutting-down"]},
    ]
    if name:
        filters.append({"Name": f"tag:{names.INSTANCE_TAG}", "Values": [name]})
    views = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
                views.append(
                    InstanceView(
                        name=tags.get(names.INSTANCE_TAG, "?"),
                        instance_id=instance["InstanceId"],
                        state=instance["State"]["Name"],
                        zone=instance["Placement"]["AvailabilityZone"],
                        launched=str(instance.get("LaunchTime", "")),
                        agent_state=tags.get(names.STATUS_TAG, "-"),
                        agent_detail=tags.get(names.STATUS_DETAIL_TAG, ""),
                        health=tags.get(names.HEALTH_TAG, "-"),
                        backup=tags.get(names.BACKUP_TAG, "-"),
                        disk=tags.get(names.DISK_TAG, "-"),
                        certificate=tags.get(names.CERTIFICATE_TAG, "-"),
                        readahead=tags.get(names.READAHEAD_TAG, "-"),
                    )
                )
    return sorted(views, key=lambda view: (view.name, view.launched))


def data_volume(ec2: Any, platform: str, name: str) -> dict | None:
    """The data volume tagged for this platform instance, in any zone; more than one is an error."""
    volumes = ec2.describe_volumes(
        Filters=[
            {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
            {"Name": f"tag:{names.INSTANCE_TAG}", "Values": [name]},
            {"Name": f"tag:{names.ROLE_TAG}", "Values": [names.DATA_ROLE]},
        ]
    )["Volumes"]
    if len(volumes) > 1:
        ids = ", ".join(sorted(volume["VolumeId"] for volume in volumes))
        raise BuilderError(f"more than one data volume is tagged for {platform}/{name}: {ids}; keep one")
    return volumes[0] if volumes else None


def started_stacks(tags: dict[str, str]) -> bool | None:
    """Whether the agent whose status tags these are got as far as its stacks step; None when its
    tags do not tell (no report yet, a step this builder does not know). After a failed step the
    agent skips the rest; after any other it goes on to the next."""
    state, detail = tags.get(names.STATUS_TAG), tags.get(names.STATUS_DETAIL_TAG, "")
    stacks = AGENT_STEPS.index("stacks")
    if state in ("done", "degraded"):
        return True
    if state == "running":  # "storage: ok in 6.1 s": that step finished
        step, _, outcome = detail.partition(": ")
        if step not in AGENT_STEPS:
            return None
        reached = AGENT_STEPS.index(step) + (0 if outcome.startswith("failed") else 1)
        return reached >= stacks
    if state == "failed":  # "ai-platform firstboot: failed (1 failed, 2 ok, 6 skipped); storage: …"
        match = re.search(r"\); (\w+): ", detail)
        if match is None or match[1] not in AGENT_STEPS:
            return None
        return AGENT_STEPS.index(match[1]) >= stacks
    return None


def data_volumes_created(ec2: Any, platform: str) -> dict[str, Any]:
    """When each instance's data volume was made, by instance name."""
    volumes = ec2.describe_volumes(
        Filters=[
            {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
            {"Name": f"tag:{names.ROLE_TAG}", "Values": [names.DATA_ROLE]},
        ]
    )["Volumes"]
    made = {}
    for volume in volumes:
        tags = {tag["Key"]: tag["Value"] for tag in volume.get("Tags", [])}
        if names.INSTANCE_TAG in tags:
            made[tags[names.INSTANCE_TAG]] = volume["CreateTime"]
    return made


def terminate(ec2: Any, platform: str, name: str, log: Callable[[str], None]) -> list[str]:
    """End every running instance of `name`; the data volume is detached by the termination and kept."""
    ids = [view.instance_id for view in list_instances(ec2, platform, name)]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
        log(f"terminating {', '.join(ids)}")
        ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120})
    return ids


def delete_data_volume(ec2: Any, volume: dict) -> None:
    current = ec2.describe_volumes(VolumeIds=[volume["VolumeId"]])["Volumes"][0]
    if current.get("Attachments"):
        holder = current["Attachments"][0]["InstanceId"]
        raise BuilderError(f"{volume['VolumeId']} is still attached to {holder}; not deleted")
    ec2.delete_volume(VolumeId=volume["VolumeId"])


def wait_for_agent(
    ec2: Any,
    instance_id: str,
    *,
    timeout: float,
    on_change: Callable[[str, str], None],
    poll: float = 10,
    current: Callable[[], str | None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str]:
    """Follow the agent's status tags until a final state; (state, detail). `current` names the
    instance that now stands for this one (its Auto Scaling group's): when the group has replaced
    the followed instance, the new one is followed, with a line saying so."""
    deadline = clock() + timeout
    seen = None
    while True:
        now = current() if current else None
        if now and now != instance_id:
            on_change("replaced", f"the group replaced {instance_id} with {now}; following {now}")
            instance_id, seen = now, None
        tags = {
            tag["Key"]: tag["Value"]
            for tag in ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
        }
        state, detail = tags.get(names.STATUS_TAG, "booting"), tags.get(names.STATUS_DETAIL_TAG, "")
        if (state, detail) != seen:
            on_change(state, detail)
            seen = (state, detail)
        if state in FINAL_STATES:
            return state, detail
        if clock() >= deadline:
            raise BuilderError(
                f"{instance_id} did not report within {timeout:g} s (last: {state}); `builder status` follows it "
                "later, the console log (EC2 get-console-output) shows the agent's summary line"
            )
        sleep(poll)
