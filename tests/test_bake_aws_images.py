"""The platform's AMIs: lookup by input hash, prune (snapshots too), and the janitor for leaked builds.

Moto stands in for the EC2 API (the real one cannot be reached here); it keeps AMIs, snapshots,
instances, key pairs and security groups as EC2 does for these calls.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from moto_server import make_tagged_ami

from builder.aws import names
from builder.bake import aws_images

PLATFORM = "ai-platform"


def make_ami(ec2, build_id: str, input_hash: str, platform: str = PLATFORM) -> str:
    image = make_tagged_ami(
        ec2,
        ec2.describe_images()["Images"][0]["ImageId"],
        f"{platform}-{build_id}",
        {names.PLATFORM_TAG: platform, aws_images.TAG_BUILD_ID: build_id, aws_images.TAG_INPUT_HASH: input_hash},
    )
    time.sleep(1.1)  # CreationDate has one-second resolution: keep the order unambiguous
    return image


def test_the_newest_ami_with_the_input_hash_is_found(aws):
    ec2 = aws.client("ec2")
    make_ami(ec2, "b1", "hash-a")
    newer = make_ami(ec2, "b2", "hash-a")
    other = make_ami(ec2, "b3", "hash-b")
    make_ami(ec2, "b4", "hash-a", platform="someone-else")
    assert aws_images.find_by_input_hash(ec2, PLATFORM, "hash-a").image_id == newer
    assert aws_images.find_by_input_hash(ec2, PLATFORM, "hash-b").image_id == other
    assert aws_images.find_by_input_hash(ec2, PLATFORM, "hash-c") is None


def test_prune_keeps_the_newest_and_deletes_the_rest_with_their_snapshots(aws):
    ec2 = aws.client("ec2")
    made = [make_ami(ec2, f"b{n}", f"h{n}") for n in range(4)]
    foreign = make_ami(ec2, "x", "h", platform="someone-else")
    snapshots = {ami.image_id: ami.snapshots for ami in aws_images.platform_images(ec2, PLATFORM)}
    assert all(snapshots[image] for image in made)
    planned = aws_images.prune(ec2, PLATFORM, keep=2, dry_run=True)
    assert [ami.image_id for ami in planned] == [made[1], made[0]]
    assert len(aws_images.platform_images(ec2, PLATFORM)) == 4  # a dry run changes nothing

    pruned = aws_images.prune(ec2, PLATFORM, keep=2)
    assert {ami.image_id for ami in pruned} == {made[0], made[1]}
    left = {ami.image_id for ami in aws_images.platform_images(ec2, PLATFORM)}
    assert left == {made[2], made[3]}
    existing = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    for image in made[:2]:
        assert not set(snapshots[image]) & existing, "a pruned AMI's snapshot was left behind (it is billed)"
    for image in made[2:]:
        assert set(snapshots[image]) <= existing
    assert ec2.describe_images(ImageIds=[foreign])["Images"], "another platform's AMI was touched"
    with pytest.raises(ValueError, match="at least 1"):
        aws_images.prune(ec2, PLATFORM, keep=0)


def test_the_janitor_sweeps_old_build_leftovers_and_leaves_young_builds_and_data_alone(aws):
    ec2 = aws.client("ec2")
    source = ec2.describe_images()["Images"][0]["ImageId"]
    build_tags = [
        {"Key": names.PLATFORM_TAG, "Value": PLATFORM},
        {"Key": names.ROLE_TAG, "Value": aws_images.BUILD_ROLE},
    ]
    group = ec2.create_security_group(GroupName="packer_6565f00d", Description="packer temporary")["GroupId"]
    ec2.create_key_pair(KeyName="packer_6565f00d")
    leaked = ec2.run_instances(
        ImageId=source,
        MinCount=1,
        MaxCount=1,
        SecurityGroupIds=[group],
        TagSpecifications=[{"ResourceType": "instance", "Tags": build_tags}],
    )["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=1,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [{"Key": names.PLATFORM_TAG, "Value": PLATFORM}, {"Key": names.ROLE_TAG, "Value": "data"}],
            }
        ],
    )["VolumeId"]
    orphan = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{"ResourceType": "snapshot", "Tags": build_tags}])[
        "SnapshotId"
    ]

    young = aws_images.sweep_leaks(ec2, PLATFORM, older_than=dt.timedelta(hours=6), dry_run=True)
    assert young.total() == 0, "a bake younger than the cutoff may still be running"

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=7)
    swept = aws_images.sweep_leaks(ec2, PLATFORM, older_than=dt.timedelta(hours=6), now=later)
    assert swept.instances == [leaked]
    assert swept.security_groups == [group]
    assert swept.key_pairs == ["packer_6565f00d"]
    assert swept.snapshots == [orphan]
    state = ec2.describe_instances(InstanceIds=[leaked])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "terminated"
    assert not ec2.describe_key_pairs()["KeyPairs"]
    assert ec2.describe_volumes(VolumeIds=[volume])["Volumes"], "the janitor touched a data volume"
