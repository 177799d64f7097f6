"""The data volume's snapshots on AWS: list them, take one, and put one back as the data volume.

Every snapshot of a data volume carries the volume's tags (platform, instance, role `data`) and
`ai-platform:snapshot-reason`: `scheduled` (Data Lifecycle Manager adds it), `before-upgrade`
(`builder upgrade`, with the images it moves between) or `manual`.

Putting one back is a new volume made from it, never a write to the volume in use: in the zone
of the volume it replaces, with its type, IOPS, throughput and KMS key, then swapped in by its
tags. The agent attaches the one volume tagged role `data` (firstboot/volume.py), so the swap is
a retag: the replaced volume keeps every byte and becomes role `data-replaced`, naming its
successor and when; the new one carries the data volume's tags and the snapshot it came from.
Nothing here deletes a volume or a snapshot.

`ec2` is a boto3 EC2 client, injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from builder.aws import names
from builder.aws.instances import data_volume
from builder.errors import BuilderError

REASON_TAG = "ai-platform:snapshot-reason"
SCHEDULED, BEFORE_UPGRADE, MANUAL = "scheduled", "before-upgrade", "manual"
UPGRADE_FROM_TAG = "ai-platform:upgrade-from"
UPGRADE_TO_TAG = "ai-platform:upgrade-to"
REPLACED_ROLE = "data-replaced"
# A volume made from a snapshot before the swap: not yet the data volume, so no agent attaches it.
RESTORING_ROLE = "data-restoring"
REPLACED_BY_TAG = "ai-platform:replaced-by"
REPLACED_AT_TAG = "ai-platform:replaced-at"
RESTORED_FROM_TAG = "ai-platform:restored-from"
# What a restored volume does not inherit from the one it replaces: its own history, and the tags
# AWS keeps for itself (aws:*, which no caller may set).
_NOT_INHERITED = (REPLACED_BY_TAG, REPLACED_AT_TAG, RESTORED_FROM_TAG)
IOPS_TYPES = ("gp3", "io1", "io2")  # the types that take provisioned IOPS
THROUGHPUT_TYPES = ("gp3",)


class SnapshotError(BuilderError):
    pass


@dataclass
class SnapshotView:
    snapshot_id: str
    started: str  # UTC, ISO 8601
    size_gib: int
    state: str  # pending, completed, error (recoverable, recovering: archive tiers)
    progress: str
    reason: str  # scheduled, before-upgrade, manual; "-" when untagged
    description: str
    volume_id: str
    upgrade_from: str | None = None
    upgrade_to: str | None = None

    def to_json(self) -> dict:
        return self.__dict__.copy()


def _tags(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def view(snapshot: dict) -> SnapshotView:
    tags = _tags(snapshot)
    started = snapshot["StartTime"]  # a datetime from boto3
    return SnapshotView(
        snapshot_id=snapshot["SnapshotId"],
        started=started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        size_gib=snapshot.get("VolumeSize", 0),
        state=snapshot["State"],
        progress=snapshot.get("Progress") or "",
        reason=tags.get(REASON_TAG, "-"),
        description=snapshot.get("Description", ""),
        volume_id=snapshot.get("VolumeId", ""),
        upgrade_from=tags.get(UPGRADE_FROM_TAG),
        upgrade_to=tags.get(UPGRADE_TO_TAG),
    )


def _of_instance(platform: str, instance: str) -> list[dict]:
    return [
        {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
        {"Name": f"tag:{names.INSTANCE_TAG}", "Values": [instance]},
        {"Name": f"tag:{names.ROLE_TAG}", "Values": [names.DATA_ROLE]},
    ]


def list_snapshots(ec2: Any, platform: str, instance: str) -> list[SnapshotView]:
    """The instance's data-volume snapshots (by their tags, whichever volume they came from), newest first."""
    found = []
    paginator = ec2.get_paginator("describe_snapshots")
    for page in paginator.paginate(OwnerIds=["self"], Filters=_of_instance(platform, instance)):
        found.extend(page["Snapshots"])
    found.sort(key=lambda snapshot: snapshot["StartTime"], reverse=True)
    return [view(snapshot) for snapshot in found]


def snapshot_volume(
    ec2: Any,
    platform: str,
    instance: str,
    volume_id: str,
    reason: str,
    log: Callable[[str], None],
    extra_tags: dict[str, str] | None = None,
) -> str:
    """Start a snapshot of the data volume, tagged as the conventions say; returns its id at once
    (it completes in the background; `wait_completed` waits for it)."""
    tags = names.tags(platform, instance, **{names.ROLE_TAG: names.DATA_ROLE, REASON_TAG: reason, **(extra_tags or {})})
    snapshot = ec2.create_snapshot(
        VolumeId=volume_id,
        Description=f"{platform}/{instance} data volume {volume_id} ({reason})",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
    )
    log(f"snapshot {snapshot['SnapshotId']} of data volume {volume_id} started ({reason})")
    return snapshot["SnapshotId"]


def find_snapshot(ec2: Any, platform: str, instance: str, snapshot_id: str | None) -> dict:
    """The snapshot to restore: `snapshot_id`, checked to be one of this instance's data volume,
    or (None) its newest completed one."""
    if snapshot_id is None:
        completed = [view for view in list_snapshots(ec2, platform, instance) if view.state == "completed"]
        if not completed:
            raise SnapshotError(
                f"--latest: {platform}/{instance} has no completed snapshot of its data volume "
                "(`builder backups NAME` lists them)"
            )
        snapshot_id = completed[0].snapshot_id
    found = ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"]
    if not found:
        raise SnapshotError(
            f"--snapshot: {snapshot_id} does not exist in this region (`builder backups NAME` lists the instance's)"
        )
    snapshot = found[0]
    tags = _tags(snapshot)
    wanted = {names.PLATFORM_TAG: platform, names.INSTANCE_TAG: instance, names.ROLE_TAG: names.DATA_ROLE}
    wrong = {key: tags.get(key) for key, value in wanted.items() if tags.get(key) != value}
    if wrong:
        said = ", ".join(f"{key}={value or '(none)'}" for key, value in sorted(wrong.items()))
        raise SnapshotError(
            f"--snapshot: {snapshot_id} is not a snapshot of {platform}/{instance}'s data volume ({said}); "
            "`builder backups NAME` lists the ones that are"
        )
    return snapshot


def require_completed(snapshot: dict) -> None:
    if snapshot["State"] != "completed":
        progress = f" ({snapshot['Progress']})" if snapshot.get("Progress") else ""
        raise SnapshotError(
            f"--snapshot: {snapshot['SnapshotId']} is {snapshot['State']}{progress}, not completed; restore it once "
            "it is (`builder backups NAME` shows its state)"
        )


def wait_completed(
    ec2: Any,
    snapshot_id: str,
    log: Callable[[str], None],
    *,
    timeout: float = 6 * 3600,
    poll: float = 15,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """The snapshot once completed, with a line each time its progress moves; an error state or
    the deadline raises (the snapshot itself is kept either way)."""
    deadline = clock() + timeout
    said = None
    while True:
        snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
        state, progress = snapshot["State"], snapshot.get("Progress") or ""
        if state == "completed":
            if said is not None:
                log(f"snapshot {snapshot_id} completed")
            return snapshot
        if state == "error":
            raise SnapshotError(f"snapshot {snapshot_id} failed: {snapshot.get('StateMessage') or 'state error'}")
        if (state, progress) != said:
            log(f"snapshot {snapshot_id}: {state} {progress}".rstrip())
            said = (state, progress)
        if clock() >= deadline:
            raise SnapshotError(
                f"snapshot {snapshot_id} did not complete within {timeout:g} s (last: {state} {progress}); it is kept"
            )
        sleep(poll)


def volume_from_snapshot(ec2: Any, snapshot: dict, replacing: dict, log: Callable[[str], None]) -> str:
    """A new volume from `snapshot`, in the zone of the volume it is to replace and with its type,
    IOPS, throughput, key and size (the snapshot's where that is larger), tagged as that volume is
    but not yet role `data`. Waits until it is available."""
    tags = {
        key: value
        for key, value in _tags(replacing).items()
        if not key.startswith("aws:") and key not in _NOT_INHERITED
    }
    tags.update({names.ROLE_TAG: RESTORING_ROLE, RESTORED_FROM_TAG: snapshot["SnapshotId"]})
    arguments: dict[str, Any] = {
        "SnapshotId": snapshot["SnapshotId"],
        "AvailabilityZone": replacing["AvailabilityZone"],
        "VolumeType": replacing["VolumeType"],
        "Size": max(replacing["Size"], snapshot.get("VolumeSize", 0)),
        "TagSpecifications": [
            {"ResourceType": "volume", "Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}
        ],
    }
    if replacing["VolumeType"] in IOPS_TYPES and replacing.get("Iops"):
        arguments["Iops"] = replacing["Iops"]
    if replacing["VolumeType"] in THROUGHPUT_TYPES and replacing.get("Throughput"):
        arguments["Throughput"] = replacing["Throughput"]
    if replacing.get("Encrypted"):
        arguments["Encrypted"] = True
        if replacing.get("KmsKeyId"):
            arguments["KmsKeyId"] = replacing["KmsKeyId"]
    volume_id = ec2.create_volume(**arguments)["VolumeId"]
    log(f"volume {volume_id} is being made from {snapshot['SnapshotId']} in {replacing['AvailabilityZone']}")
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 5, "MaxAttempts": 120})
    return volume_id


def swap_in(ec2: Any, old: dict, new_volume_id: str, log: Callable[[str], None]) -> None:
    """Make `new_volume_id` the data volume and mark `old` as replaced by it. Between the two
    writes no volume is role `data`: a failure there puts the old one back, so that nothing ever
    starts on an empty, newly made volume."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    replaced = {names.ROLE_TAG: REPLACED_ROLE, REPLACED_BY_TAG: new_volume_id, REPLACED_AT_TAG: now}
    ec2.create_tags(Resources=[old["VolumeId"]], Tags=[{"Key": k, "Value": v} for k, v in replaced.items()])
    # The schedule follows the data: the kept volume leaves the snapshot policy (the new one has its tag).
    policy = [tag for tag in old.get("Tags", []) if tag["Key"] == names.SNAPSHOT_POLICY_TAG]
    try:
        if policy:
            ec2.delete_tags(Resources=[old["VolumeId"]], Tags=[{"Key": names.SNAPSHOT_POLICY_TAG}])
        ec2.create_tags(Resources=[new_volume_id], Tags=[{"Key": names.ROLE_TAG, "Value": names.DATA_ROLE}])
    except Exception:
        ec2.create_tags(Resources=[old["VolumeId"]], Tags=[{"Key": names.ROLE_TAG, "Value": names.DATA_ROLE}, *policy])
        raise
    log(f"data volume is now {new_volume_id}; {old['VolumeId']} kept, tagged {names.ROLE_TAG}={REPLACED_ROLE}")


@dataclass
class Restored:
    snapshot_id: str
    volume_id: str  # the new data volume
    replaced_volume_id: str  # kept, detached, role data-replaced

    def kept_line(self) -> str:
        return (
            f"kept the replaced data volume {self.replaced_volume_id} (tagged {names.ROLE_TAG}={REPLACED_ROLE}, "
            f"{REPLACED_BY_TAG}={self.volume_id}); the data volume is now {self.volume_id}, made from "
            f"{self.snapshot_id}"
        )


def restore_volume(ec2: Any, platform: str, instance: str, snapshot_id: str, log: Callable[[str], None]) -> Restored:
    """While no instance holds it: the data volume made anew from `snapshot_id` (waited for until
    completed) and swapped in; the volume it replaces is kept."""
    snapshot = wait_completed(ec2, find_snapshot(ec2, platform, instance, snapshot_id)["SnapshotId"], log)
    old = data_volume_of(ec2, platform, instance)
    new = volume_from_snapshot(ec2, snapshot, old, log)
    swap_in(ec2, old, new, log)
    return Restored(snapshot_id, new, old["VolumeId"])


def data_volume_of(ec2: Any, platform: str, instance: str) -> dict:
    volume = data_volume(ec2, platform, instance)
    if volume is None:
        raise SnapshotError(
            f"no volume is tagged {names.ROLE_TAG}={names.DATA_ROLE} for {platform}/{instance}: "
            "nothing to restore onto (`builder launch NAME` makes one)"
        )
    return volume


def back_hint(name: str, restored: Restored) -> str:
    """How to undo a restore: another snapshot, or the replaced volume back by its tags."""
    return (
        f"to go back: `builder restore {name} --snapshot ID` (another snapshot); or to the replaced volume itself: "
        f"`builder destroy {name}` (it keeps the volumes), tag {restored.replaced_volume_id} "
        f"{names.ROLE_TAG}={names.DATA_ROLE} and {restored.volume_id} {names.ROLE_TAG}={REPLACED_ROLE}, "
        f"then `builder launch {name}`"
    )
