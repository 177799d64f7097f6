"""The platform's AMIs in EC2: found by input hash, pruned with their snapshots, leaks swept.

Every AMI a bake makes carries ai-platform:platform, :build-id, :input-hash and :role=image-build
(packer.pkr.hcl puts the same tags on the build instance, its volumes and the snapshots), so
everything a bake leaves behind can be found again by tags alone. Data volumes (role=data) are
never touched here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from builder.aws.names import PLATFORM_TAG as TAG_PLATFORM
from builder.aws.names import ROLE_TAG as TAG_ROLE

TAG_BUILD_ID = "ai-platform:build-id"
TAG_INPUT_HASH = "ai-platform:input-hash"
# "cpu" or "gpu" (builder/aws/gpu.py); an image without it was baked before the GPU image: cpu.
TAG_VARIANT = "ai-platform:variant"
BUILD_ROLE = "image-build"
PACKER_PREFIX = "packer_"  # Packer's temporary key pairs and security groups


@dataclass(frozen=True)
class Ami:
    image_id: str
    name: str
    created: str
    tags: dict[str, str]
    snapshots: tuple[str, ...]


@dataclass
class Sweep:
    instances: list[str] = field(default_factory=list)
    key_pairs: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)

    def total(self) -> int:
        return len(self.instances) + len(self.key_pairs) + len(self.security_groups) + len(self.snapshots)


def _tags(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def platform_images(ec2: Any, platform: str) -> list[Ami]:
    """The platform's AMIs in this region, newest first."""
    response = ec2.describe_images(Owners=["self"], Filters=[{"Name": f"tag:{TAG_PLATFORM}", "Values": [platform]}])
    images = [
        Ami(
            image["ImageId"],
            image.get("Name", ""),
            image.get("CreationDate", ""),
            _tags(image),
            tuple(
                m["Ebs"]["SnapshotId"]
                for m in image.get("BlockDeviceMappings", [])
                if m.get("Ebs", {}).get("SnapshotId")
            ),
        )
        for image in response["Images"]
        if image.get("State", "available") == "available"
    ]
    return sorted(images, key=lambda ami: ami.created, reverse=True)


def find_by_input_hash(ec2: Any, platform: str, input_hash: str) -> Ami | None:
    matches = [ami for ami in platform_images(ec2, platform) if ami.tags.get(TAG_INPUT_HASH) == input_hash]
    return matches[0] if matches else None


def tag_image(ec2: Any, ami: str, tags: dict[str, str]) -> None:
    ec2.create_tags(Resources=[ami], Tags=[{"Key": key, "Value": value} for key, value in sorted(tags.items())])


def prune(ec2: Any, platform: str, keep: int, dry_run: bool = False) -> list[Ami]:
    """Deregister all but the newest `keep` AMIs of the platform, and delete their snapshots."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest image is what `builder launch` boots")
    doomed = platform_images(ec2, platform)[keep:]
    if dry_run:
        return doomed
    for ami in doomed:
        ec2.deregister_image(ImageId=ami.image_id)
        # A snapshot can go only once no AMI uses it: after deregistration, never before.
        for snapshot in ami.snapshots:
            ec2.delete_snapshot(SnapshotId=snapshot)
    return doomed


def sweep_leaks(
    ec2: Any, platform: str, older_than: dt.timedelta, now: dt.datetime | None = None, dry_run=False
) -> Sweep:
    """Build instances, Packer's key pairs and security groups, and orphan snapshots older than `older_than`.

    A bake that was interrupted (or whose Packer was killed) can leave these behind; a running
    bake younger than the cutoff is left alone.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = now - older_than
    found = Sweep()
    build_filters = [
        {"Name": f"tag:{TAG_PLATFORM}", "Values": [platform]},
        {"Name": f"tag:{TAG_ROLE}", "Values": [BUILD_ROLE]},
    ]
    reservations = ec2.describe_instances(
        Filters=[
            *build_filters,
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    found.instances = [i["InstanceId"] for i in instances if i["LaunchTime"] < cutoff]
    # Security groups of the doomed build instances, if Packer made them.
    groups = {
        g["GroupId"] for i in instances if i["InstanceId"] in found.instances for g in i.get("SecurityGroups", [])
    }
    in_use = {
        g["GroupId"] for i in instances if i["InstanceId"] not in found.instances for g in i.get("SecurityGroups", [])
    }
    for group in ec2.describe_security_groups(GroupIds=sorted(groups))["SecurityGroups"] if groups else []:
        if group["GroupName"].startswith(PACKER_PREFIX) and group["GroupId"] not in in_use:
            found.security_groups.append(group["GroupId"])
    for key in ec2.describe_key_pairs()["KeyPairs"]:
        created = key.get("CreateTime")
        if key["KeyName"].startswith(PACKER_PREFIX) and created is not None and created < cutoff:
            found.key_pairs.append(key["KeyName"])
    live_snapshots = {s for ami in platform_images(ec2, platform) for s in ami.snapshots}
    for snapshot in ec2.describe_snapshots(OwnerIds=["self"], Filters=build_filters)["Snapshots"]:
        if snapshot["SnapshotId"] not in live_snapshots and snapshot["StartTime"] < cutoff:
            found.snapshots.append(snapshot["SnapshotId"])
    if dry_run:
        return found
    if found.instances:
        ec2.terminate_instances(InstanceIds=found.instances)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=found.instances)
    for group in found.security_groups:
        ec2.delete_security_group(GroupId=group)
    for key in found.key_pairs:
        ec2.delete_key_pair(KeyName=key)
    for snapshot in found.snapshots:
        ec2.delete_snapshot(SnapshotId=snapshot)
    return found
