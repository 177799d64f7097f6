"""`builder backups` and `builder restore` on AWS (moto), and what they stand on
(builder/aws/snapshots.py, builder/aws/restore.py): a data volume's snapshots listed, a volume made
from one in the same zone with the same settings, swapped in by its tags, the replaced one kept."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest
from botocore.stub import Stubber
from moto_server import image_of, launched_on_moto, play_agent, tags_of

from builder.aws import snapshots
from builder.aws.instances import AGENT_STEPS, data_volume, started_stacks

PLATFORM = "ai-platform"


def test_the_agent_steps_builder_knows_are_the_agents():
    from firstboot.agent import STEPS

    assert tuple(step.name for step in STEPS) == AGENT_STEPS


@pytest.mark.parametrize(
    ("state", "detail", "started"),
    [
        (None, "", None),  # no report yet: not known
        ("running", "storage: ok in 6.1 s", False),
        ("running", "gdrive: ok in 0.2 s", True),  # the stacks step is next: it began
        ("running", "gdrive: failed in 0.2 s: no config", False),  # the rest is skipped
        ("running", "stacks: ok in 1.0 s", True),
        ("failed", "ai-platform firstboot: failed (1 failed, 2 ok, 6 skipped); storage: no volume", False),
        ("failed", "ai-platform firstboot: failed (1 failed, 7 ok, 1 skipped); services: n8n unhealthy", True),
        ("failed", "ai-platform firstboot: failed", None),
        ("done", "ai-platform firstboot: done (9 ok)", True),
        ("running", "a-step-of-tomorrow: ok", None),
    ],
)
def test_whether_the_stacks_started_is_read_from_the_agents_status_tags(state, detail, started):
    tags = {"ai-platform:status": state, "ai-platform:status-detail": detail} if state else {}
    assert started_stacks(tags) is started


def test_waiting_for_a_snapshot_says_its_progress_and_stops_at_an_error():
    """moto's snapshots complete at once: the pending ones are scripted with botocore's Stubber,
    which checks each request against EC2's service model."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(ec2)
    for state, progress in [("pending", "10%"), ("pending", "10%"), ("pending", "60%"), ("completed", "100%")]:
        stubber.add_response(
            "describe_snapshots",
            {"Snapshots": [{"SnapshotId": "snap-0123456789abcdef0", "State": state, "Progress": progress}]},
            {"SnapshotIds": ["snap-0123456789abcdef0"]},
        )
    stubber.add_response(
        "describe_snapshots",
        {"Snapshots": [{"SnapshotId": "snap-0123456789abcdef1", "State": "error", "StateMessage": "KMS key disabled"}]},
        {"SnapshotIds": ["snap-0123456789abcdef1"]},
    )
    lines: list[str] = []
    with stubber:
        done = snapshots.wait_completed(ec2, "snap-0123456789abcdef0", lines.append, sleep=lambda s: None)
        assert done["State"] == "completed"
        assert lines == [
            "snapshot snap-0123456789abcdef0: pending 10%",
            "snapshot snap-0123456789abcdef0: pending 60%",
            "snapshot snap-0123456789abcdef0 completed",
        ]
        with pytest.raises(snapshots.SnapshotError, match="snap-0123456789abcdef1 failed: KMS key disabled"):
            snapshots.wait_completed(ec2, "snap-0123456789abcdef1", lines.append, sleep=lambda s: None)


def test_a_volume_from_a_snapshot_has_the_zone_type_iops_throughput_and_key_of_the_one_it_replaces(aws):
    ec2 = aws.client("ec2")
    key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    tags = [
        {"Key": "ai-platform:platform", "Value": PLATFORM},
        {"Key": "ai-platform:instance", "Value": "alpha"},
        {"Key": "ai-platform:role", "Value": "data"},
        {"Key": "Name", "Value": "ai-platform-alpha"},
    ]
    old = ec2.create_volume(
        AvailabilityZone="us-east-1b",
        Size=20,
        VolumeType="io2",
        Iops=4000,
        Encrypted=True,
        KmsKeyId=key,
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
    )["VolumeId"]
    snapshot = snapshots.snapshot_volume(ec2, PLATFORM, "alpha", old, snapshots.MANUAL, lambda line: None)
    found = snapshots.find_snapshot(ec2, PLATFORM, "alpha", snapshot)
    [replacing] = ec2.describe_volumes(VolumeIds=[old])["Volumes"]
    new = snapshots.volume_from_snapshot(ec2, found, replacing, lambda line: None)
    [made] = ec2.describe_volumes(VolumeIds=[new])["Volumes"]
    assert (made["AvailabilityZone"], made["VolumeType"], made["Iops"], made["Size"]) == ("us-east-1b", "io2", 4000, 20)
    assert (made["Encrypted"], made["KmsKeyId"], made["SnapshotId"]) == (True, key, snapshot)
    assert tags_of(made) == {
        **tags_of(replacing),
        "ai-platform:role": "data-restoring",  # not the data volume until swapped in
        "ai-platform:restored-from": snapshot,
    }


def test_backups_and_restore_latest_swap_in_a_volume_from_the_snapshot_and_keep_the_old_one(
    aws, baked, builder, tmp_path, monkeypatch
):
    """The CLI end to end on moto; the agent is played (moto runs none) by replacing the wait.
    On the way, a restore with an exception injected after the stop."""
    from builder.aws.restore import plan_restore, restore
    from builder.errors import BuilderError

    def fails(*args, **kwargs):
        raise RuntimeError("injected")

    ec2, clients, config, _ = launched_on_moto(aws, baked)
    (tmp_path / "platform.yaml").write_text("version: 1\ndata_volume: {availability_zone: us-east-1a}\n")
    volume = data_volume(ec2, PLATFORM, "alpha")["VolumeId"]
    taken = snapshots.snapshot_volume(ec2, PLATFORM, "alpha", volume, snapshots.MANUAL, lambda line: None)
    # Another instance's snapshot is never one of alpha's.
    other = ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=1,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [
                    {"Key": "ai-platform:platform", "Value": PLATFORM},
                    {"Key": "ai-platform:instance", "Value": "beta"},
                ],
            }
        ],
    )["VolumeId"]
    foreign = snapshots.snapshot_volume(ec2, PLATFORM, "beta", other, snapshots.MANUAL, lambda line: None)

    listed = builder("--json", "backups", "alpha")
    assert listed.code == 0, listed.err
    document = json.loads(listed.out)
    assert document["data_volume"] == volume
    assert [(s["snapshot_id"], s["reason"], s["state"]) for s in document["snapshots"]] == [
        (taken, "manual", "completed")
    ]
    assert "on_volume_backups" not in document  # the agent has not reported a backup yet
    text = builder("backups", "alpha")
    assert text.code == 0 and taken in text.out and "manual" in text.out and "1 snapshot" in text.out
    # The agent's last word on the on-volume backups (its backup tag) is listed beside the snapshots.
    [instance] = [
        i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"] if i["State"]["Name"] == "running"
    ]
    line = "ai-platform backup: last good 20250612T033000Z (1.2 GiB); ok"
    ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": "ai-platform:backup", "Value": line}])
    reported = json.loads(builder("--json", "backups", "alpha").out)["on_volume_backups"]
    assert (reported["last_good"], reported["size"]) == ("20250612T033000Z", "1.2 GiB")
    assert "WARNING: older than 48 h" in builder("backups", "alpha").out

    refused = builder("restore", "alpha", "--snapshot", foreign, "--yes")
    assert refused.code == 1 and "is not a snapshot of ai-platform/alpha's data volume" in refused.err
    assert builder("restore", "alpha", "--snapshot", "snap-nope", "--yes").code == 1
    assert builder("restore", "alpha").code == 2  # neither --snapshot nor --latest
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # closed: nobody to ask
    closed = builder("restore", "alpha", "--latest")
    assert closed.code == 1 and "standard input is closed; nothing was stopped or changed" in closed.err
    [before] = aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert data_volume(ec2, PLATFORM, "alpha")["VolumeId"] == volume  # refused: nothing changed

    # A restore that fails after the stop starts the instance again and says which volume is where.
    plan = plan_restore(clients, config, "alpha", None)
    with monkeypatch.context() as patch, pytest.raises(BuilderError) as failed:
        patch.setattr(snapshots, "swap_in", fails)
        restore(clients, plan, lambda line: None, wait=False, wait_timeout=60)
    message = str(failed.value)
    assert "restore of alpha failed (RuntimeError: injected); it was started again" in message
    assert f"the data volume is {volume} (unchanged)" in message
    [made] = ec2.describe_volumes(Filters=[{"Name": "tag:ai-platform:role", "Values": ["data-restoring"]}])["Volumes"]
    assert f"{made['VolumeId']}, made from {taken}, is kept" in message
    [again] = aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert again["DesiredCapacity"] == 1 and again["Instances"]

    def agent(ec2_client, instance_id, *, timeout, on_change, current=None):
        return play_agent(ec2_client, instance_id, "done")

    monkeypatch.setattr("builder.aws.instances.wait_for_agent", agent)
    monkeypatch.setattr("sys.stdin", io.StringIO("alpha\n"))  # the name typed back, through a pipe
    result = builder("--json", "restore", "alpha", "--latest")
    assert result.code == 0, result.err
    restored = json.loads(result.out)
    new = data_volume(ec2, PLATFORM, "alpha")
    assert restored["data_volume"] == new["VolumeId"] != volume
    assert (restored["snapshot"], restored["replaced_volume"], restored["agent_state"]) == (taken, volume, "done")
    assert tags_of(new)["ai-platform:restored-from"] == taken
    [old] = ec2.describe_volumes(VolumeIds=[volume])["Volumes"]
    assert tags_of(old)["ai-platform:role"] == "data-replaced" and old["State"] == "available"  # kept, detached
    assert tags_of(old)["ai-platform:replaced-by"] == new["VolumeId"]
    # The snapshot schedule follows the data onto the new volume and leaves the kept one.
    assert tags_of(new)["ai-platform:snapshot-policy"] == PLATFORM
    assert "ai-platform:snapshot-policy" not in tags_of(old)
    assert datetime.fromisoformat(tags_of(old)["ai-platform:replaced-at"]) <= datetime.now(timezone.utc)
    [group] = aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 1 and restored["instance_id"] in [i["InstanceId"] for i in group["Instances"]]
    assert image_of(ec2, restored["instance_id"]) == baked  # the same launch template version
    assert group["LaunchTemplate"] == before["LaunchTemplate"]
    [attached] = new["Attachments"] or ec2.describe_volumes(VolumeIds=[new["VolumeId"]])["Volumes"][0]["Attachments"]
    assert attached["InstanceId"] == restored["instance_id"]
    assert f"tag {volume} ai-platform:role=data" in restored["back"]

    # A snapshot taken by hand, of the data volume in use: its dry run takes none.
    count = len(snapshots.list_snapshots(ec2, PLATFORM, "alpha"))
    planned = builder("--json", "--dry-run", "backups", "alpha", "--take")
    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["data_volume"] == new["VolumeId"]
    assert len(snapshots.list_snapshots(ec2, PLATFORM, "alpha")) == count
    assert builder("--dry-run", "backups", "alpha").code == 2  # a listing changes nothing: no dry run of it
    taken_now = json.loads(builder("--json", "backups", "alpha", "--take").out)["snapshot"]
    [made] = ec2.describe_snapshots(SnapshotIds=[taken_now])["Snapshots"]
    assert made["VolumeId"] == new["VolumeId"] and tags_of(made)["ai-platform:snapshot-reason"] == "manual"
