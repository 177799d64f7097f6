"""The platform's snapshot policy (Amazon Data Lifecycle Manager) through launch, status and destroy.

moto has no Data Lifecycle Manager and the real service is out of reach: every DLM call here goes
to a real boto3 `dlm` client under botocore's Stubber, which checks each request against botocore's
dlm service model (and each answer against the output shape) and asserts the exact parameters and
the order of the calls; a call nobody queued fails the test. Everything else (the data volume and
its tags, the snapshots, the DLM role in IAM, the instance) runs on moto.
"""

from __future__ import annotations

import copy
import io
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from conftest import AWS_ZONE as ZONE

from builder.aws import launch as launching
from builder.aws import names, snapshot_policy, snapshot_role
from builder.aws.clients import AwsClients
from builder.aws.launch import LaunchError, launch, plan_launch
from builder.aws.snapshot_policy import desired_policy, policy_details, snapshot_report
from builder.config.schema import PlatformConfig

ROLE_ARN = "arn:aws:iam::123456789012:role/ai-platform-snapshots"  # moto's account
POLICY_ID = "policy-0123456789abcdef0"
FIND = {"TargetTags": ["ai-platform:snapshot-policy=ai-platform"], "ResourceTypes": ["VOLUME"]}


def config(**snapshots) -> PlatformConfig:
    return PlatformConfig.model_validate(
        {"version": 1, "data_volume": {"availability_zone": ZONE}, "backups": {"snapshots": snapshots}}
    )


@pytest.fixture
def dlm():
    """A real dlm client whose every call the test queues (Stubber): nothing reaches a network."""
    client = boto3.client("dlm", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def as_aws_returns(cfg: PlatformConfig) -> dict:
    """The policy as GetLifecyclePolicy returns it: what we sent, with what AWS adds of its own."""
    policy = copy.deepcopy(desired_policy(cfg, ROLE_ARN))
    policy["PolicyDetails"]["PolicyLanguage"] = "STANDARD"
    for schedule in policy["PolicyDetails"]["Schedules"]:
        schedule["RetainRule"].setdefault("Interval", 0)
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return {
        **policy,
        "PolicyId": POLICY_ID,
        "StatusMessage": "ENABLED",
        "DateCreated": now,
        "DateModified": now,
        "Tags": {names.PLATFORM_TAG: "ai-platform"},
        "PolicyArn": f"arn:aws:dlm:us-east-1:123456789012:policy/{POLICY_ID}",
    }


def expect_none(stubber):
    stubber.add_client_error(
        "get_lifecycle_policies", "ResourceNotFoundException", http_status_code=404, expected_params=FIND
    )


def expect_existing(stubber, existing: dict):
    summary = {"PolicyId": POLICY_ID, "Description": existing["Description"], "State": "ENABLED"}
    stubber.add_response(
        "get_lifecycle_policies", {"Policies": [{**summary, "PolicyType": "EBS_SNAPSHOT_MANAGEMENT"}]}, FIND
    )
    stubber.add_response("get_lifecycle_policy", {"Policy": existing}, {"PolicyId": POLICY_ID})


def expect_create(stubber, cfg: PlatformConfig, policy_id: str = POLICY_ID):
    stubber.add_response(
        "create_lifecycle_policy",
        {"PolicyId": policy_id},
        {**desired_policy(cfg, ROLE_ARN), "Tags": {names.PLATFORM_TAG: "ai-platform"}},
    )


def refused(*_args, **_kwargs):
    raise RuntimeError("the group could not launch")


def launch_with(cfg: PlatformConfig, dlm_client, instance: str = "alpha", log=None):
    clients = AwsClients(cfg)
    clients.dlm = dlm_client  # the instance's attribute wins over the cached property
    plan = plan_launch(clients, cfg, instance)
    return plan, launch(clients, cfg, plan, log=log or (lambda _line: None))


def test_the_policy_targets_only_data_volumes_by_one_tag_daily_after_the_dump_and_weekly():
    details = policy_details(config())
    assert details["TargetTags"] == [{"Key": names.SNAPSHOT_POLICY_TAG, "Value": "ai-platform"}]
    daily, weekly = details["Schedules"]
    assert daily["CreateRule"] == {"Location": "CLOUD", "Interval": 24, "IntervalUnit": "HOURS", "Times": ["05:00"]}
    assert daily["RetainRule"] == {"Count": 7} and weekly["RetainRule"] == {"Count": 4}
    assert weekly["CreateRule"] == {"Location": "CLOUD", "CronExpression": "cron(0 5 ? * SUN *)"}
    for schedule in (daily, weekly):
        assert schedule["CopyTags"] is True  # platform, instance and role tags of the volume
        assert schedule["TagsToAdd"] == [{"Key": names.SNAPSHOT_REASON_TAG, "Value": "scheduled"}]
        assert "CrossRegionCopyRules" not in schedule
    assert len(policy_details(config(keep_weekly=0))["Schedules"]) == 1


def test_copies_go_to_the_copy_region_encrypted_under_its_key_and_live_as_long():
    key = "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
    daily, weekly = policy_details(config(copy_to_region="eu-west-1", copy_kms_key=key, time_utc="04:45"))["Schedules"]
    assert daily["CrossRegionCopyRules"] == [
        {
            "Target": "eu-west-1",
            "Encrypted": True,
            "CopyTags": True,
            "RetainRule": {"Interval": 7, "IntervalUnit": "DAYS"},
            "CmkArn": key,
        }
    ]
    assert weekly["CrossRegionCopyRules"][0]["RetainRule"] == {"Interval": 4, "IntervalUnit": "WEEKS"}
    assert weekly["CreateRule"]["CronExpression"] == "cron(45 4 ? * SUN *)"


def test_the_first_launch_creates_role_and_policy_and_a_second_leaves_them_alone(aws, baked, dlm):
    client, stubber = dlm
    cfg = config()
    expect_none(stubber)  # the plan looks
    expect_create(stubber, cfg)
    plan, result = launch_with(cfg, client)
    assert "create snapshot policy (Data Lifecycle Manager): daily at 05:00 UTC, 7 kept; weekly on SUN, 4 kept" in (
        plan.actions()
    )
    assert "create snapshot role ai-platform-snapshots (policy kept current)" in plan.actions()
    assert f"snapshot policy {POLICY_ID}" in result.created and "snapshot role ai-platform-snapshots" in result.created
    role = aws.client("iam").get_role(RoleName="ai-platform-snapshots")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert aws.client("iam").get_role_policy(RoleName="ai-platform-snapshots", PolicyName="ai-platform-snapshots")
    [volume] = aws.client("ec2").describe_volumes(VolumeIds=[result.volume_id])["Volumes"]
    assert {"Key": names.SNAPSHOT_POLICY_TAG, "Value": "ai-platform"} in volume["Tags"]

    expect_existing(stubber, as_aws_returns(cfg))  # and nothing else: a write would be an unqueued call
    plan, result = launch_with(cfg, client, "beta")
    assert f"keep snapshot policy {POLICY_ID} as it is: daily at 05:00 UTC, 7 kept; weekly on SUN, 4 kept" in (
        plan.actions()
    )
    assert "reuse snapshot role ai-platform-snapshots (policy kept current)" in plan.actions()
    assert not [what for what in result.created if "snapshot" in what]


def test_a_changed_config_updates_the_policy(aws, baked, dlm):
    client, stubber = dlm
    before = config()
    expect_existing(stubber, as_aws_returns(before))
    changed = config(keep_daily=14, time_utc="05:30")
    stubber.add_response("update_lifecycle_policy", {}, {"PolicyId": POLICY_ID, **desired_policy(changed, ROLE_ARN)})
    lines: list[str] = []
    plan, _ = launch_with(changed, client, log=lines.append)
    assert plan.snapshot_policy.action == "update" and plan.snapshot_policy.changed == ["schedules"]
    assert any(line.startswith(f"updated snapshot policy {POLICY_ID} (schedules)") for line in lines)


def test_a_failed_launch_removes_the_policy_and_role_it_created(aws, baked, dlm, monkeypatch):
    client, stubber = dlm
    cfg = config()
    expect_none(stubber)
    expect_create(stubber, cfg)
    stubber.add_response("delete_lifecycle_policy", {}, {"PolicyId": POLICY_ID})  # the roll-back
    monkeypatch.setattr(launching, "start_in_group", refused)
    with pytest.raises(LaunchError) as failed:
        launch_with(cfg, client)
    assert f"snapshot policy {POLICY_ID}" in str(failed.value) and "snapshot role ai-platform-snapshots" in str(
        failed.value
    )
    roles = [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]
    assert "ai-platform-snapshots" not in roles


def test_a_failed_launch_keeps_a_policy_it_did_not_create(aws, baked, dlm, monkeypatch):
    client, stubber = dlm
    cfg = config()
    expect_existing(stubber, as_aws_returns(cfg))  # no delete queued: a roll-back of it would fail the test
    monkeypatch.setattr(launching, "start_in_group", refused)
    with pytest.raises(LaunchError) as failed:
        launch_with(cfg, client)
    assert f"snapshot policy {POLICY_ID}" in str(failed.value).split("kept:")[1]


def test_snapshots_off_makes_no_dlm_call_and_no_role(aws, baked, dlm):
    client, _ = dlm  # nothing queued: any DLM call fails
    plan, result = launch_with(config(enabled=False), client)
    assert plan.snapshot_policy.action == "off"
    assert [line for line in plan.actions() if "snapshot" in line] == [plan.snapshot_policy.line()]
    assert "ai-platform-snapshots" not in [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]
    assert not [what for what in result.created if "snapshot" in what]


def test_a_new_role_dlm_cannot_assume_yet_is_waited_for(dlm):
    client, stubber = dlm
    cfg = config()
    stubber.add_client_error("create_lifecycle_policy", "InvalidRequestException", "role cannot be assumed")
    expect_create(stubber, cfg)
    waited: list[float] = []
    plan = snapshot_policy.PolicyPlan("create", schedule="daily")
    made = snapshot_policy.apply_policy(client, cfg, plan, ROLE_ARN, True, lambda _l: None, sleep=waited.append)
    assert made == POLICY_ID and waited == [snapshot_policy.ROLE_WAIT_SECONDS]


def test_two_policies_on_the_platforms_tag_are_refused_by_name(dlm):
    client, stubber = dlm
    two = [{"PolicyId": f"policy-{n}", "PolicyType": "EBS_SNAPSHOT_MANAGEMENT"} for n in ("0a", "0b")]
    stubber.add_response("get_lifecycle_policies", {"Policies": two}, FIND)
    with pytest.raises(Exception, match="policy-0a, policy-0b"):
        snapshot_policy.find_policy(client, "ai-platform")


# launch --dry-run, destroy and status through the CLI


@pytest.fixture
def cli_dlm(dlm, monkeypatch):
    """The stubbed client as every AwsClients' dlm, for commands run through the CLI."""
    monkeypatch.setattr(AwsClients, "dlm", property(lambda _self: dlm[0]))
    return dlm


def write_config(tmp_path, extra: str = "") -> None:
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n{extra}")


def test_a_dry_run_only_reads_the_policy(aws, baked, builder, tmp_path, cli_dlm):
    _, stubber = cli_dlm
    write_config(tmp_path)
    expect_none(stubber)  # the read only: a create would be an unqueued call
    result = builder("--json", "launch", "alpha", "--dry-run")
    assert result.code == 0, result.err
    plan = json.loads(result.out)["plan"]
    assert any(line.startswith("create snapshot policy") for line in plan)
    assert "ai-platform-snapshots" not in [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]


def snapshot(ec2, volume_id: str, platform: str, instance: str, reason: str = "scheduled") -> str:
    tags = {names.PLATFORM_TAG: platform, names.INSTANCE_TAG: instance, names.ROLE_TAG: names.DATA_ROLE}
    tags[names.SNAPSHOT_REASON_TAG] = reason
    return ec2.create_snapshot(
        VolumeId=volume_id,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["SnapshotId"]


def data_volume(ec2, instance: str) -> str:
    """A data volume as launch makes it (tags and all), without the launch: destroy needs no more."""
    tags = {names.PLATFORM_TAG: "ai-platform", names.INSTANCE_TAG: instance, names.ROLE_TAG: names.DATA_ROLE}
    tags[names.SNAPSHOT_POLICY_TAG] = "ai-platform"
    return ec2.create_volume(
        AvailabilityZone=ZONE,
        Size=1,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["VolumeId"]


@pytest.fixture
def two_instances(aws, builder, tmp_path):
    """The data volumes of alpha and beta (their instances destroyed, volumes kept), with snapshots; and
    a snapshot of another platform's instance of the same name."""
    write_config(tmp_path)
    ec2 = aws.client("ec2")
    volumes = {instance: data_volume(ec2, instance) for instance in ("alpha", "beta")}
    snapshot_role.ensure_role(aws.client("iam"), config(), snapshot_role.role_policy(config(), "123456789012"))
    other = ec2.create_volume(AvailabilityZone=ZONE, Size=1)["VolumeId"]
    shots = {
        "alpha": [snapshot(ec2, volumes["alpha"], "ai-platform", "alpha", r) for r in ("scheduled", "before-upgrade")],
        "beta": [snapshot(ec2, volumes["beta"], "ai-platform", "beta")],
        "other": [snapshot(ec2, other, "another-platform", "alpha")],
    }
    return volumes, shots


def snapshot_ids(ec2) -> set[str]:
    return {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}


def test_status_shows_the_last_snapshot_and_its_age(aws, baked, builder, tmp_path):
    write_config(tmp_path)
    launched = builder("--json", "launch", "alpha")
    assert launched.code == 0, launched.err
    [before] = json.loads(builder("--json", "status").out)
    assert before["last_snapshot"] is None and before["snapshot_warning"] is None  # a new volume: none due yet
    assert "snapshot: none yet" in builder("status").out
    taken = snapshot(aws.client("ec2"), json.loads(launched.out)["volume_id"], "ai-platform", "alpha")
    [view] = json.loads(builder("--json", "status").out)
    assert view["last_snapshot"]["snapshot_id"] == taken and view["last_snapshot"]["reason"] == "scheduled"
    assert view["snapshot_warning"] is None
    text = builder("status", "alpha").out
    assert f"snapshot: {taken}, 0 h ago (scheduled, " in text and "WARNING" not in text


def test_destroy_keeps_the_policy_and_the_snapshots(aws, two_instances, builder, cli_dlm):
    # cli_dlm has nothing queued: any DLM call fails the test
    before = snapshot_ids(aws.client("ec2"))
    result = builder("--json", "destroy", "alpha")
    assert result.code == 0, result.err
    assert json.loads(result.out)["snapshots_state"] == "kept"
    assert snapshot_ids(aws.client("ec2")) == before
    assert "ai-platform-snapshots" in [r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]]


def test_delete_data_asks_and_deletes_only_that_instances_snapshots(aws, two_instances, builder, cli_dlm, monkeypatch):
    _, shots = two_instances
    ec2 = aws.client("ec2")
    before = snapshot_ids(ec2)
    monkeypatch.setattr("sys.stdin", io.StringIO("nope\n"))
    refused = builder("destroy", "alpha", "--delete-data")
    assert refused.code == 1 and "confirmation did not match" in refused.err
    assert "its 2 snapshots (" in refused.err and shots["alpha"][0] in refused.err  # named in the question
    assert snapshot_ids(ec2) == before

    # beta's data volume is left: the policy stays (no DLM call is queued), and so do beta's snapshots.
    monkeypatch.setattr("sys.stdin", io.StringIO("alpha\n"))
    done = builder("destroy", "alpha", "--delete-data")
    assert done.code == 0, done.err
    assert snapshot_ids(ec2) == before - set(shots["alpha"])
    assert "kept the snapshot policy of ai-platform: 1 other data volume of it left" in done.err


def test_the_last_instance_takes_the_policy_and_its_role_with_it(aws, two_instances, builder, cli_dlm, monkeypatch):
    volumes, shots = two_instances
    _, stubber = cli_dlm
    ec2 = aws.client("ec2")
    ec2.delete_volume(VolumeId=volumes["alpha"])  # as if alpha were gone already
    existing = as_aws_returns(config())
    expect_existing(stubber, existing)
    stubber.add_response("delete_lifecycle_policy", {}, {"PolicyId": POLICY_ID})
    monkeypatch.setattr("sys.stdin", io.StringIO("beta\n"))
    done = builder("--json", "destroy", "beta", "--delete-data")
    assert done.code == 0, done.err
    deleted = json.loads(done.out)["deleted"]
    assert "snapshot policy of ai-platform" in deleted and "snapshot role ai-platform-snapshots" in deleted
    assert shots["beta"][0] not in snapshot_ids(ec2) and shots["other"][0] in snapshot_ids(ec2)


def test_a_dry_run_of_delete_data_names_the_snapshots(aws, two_instances, builder, cli_dlm):
    _, shots = two_instances
    result = builder("--json", "destroy", "alpha", "--delete-data", "--dry-run")
    assert result.code == 0, result.err
    assert sorted(json.loads(result.out)["snapshots"]) == sorted(shots["alpha"])


NOW = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)


def taken(hours_ago: float) -> dict:
    return {"SnapshotId": "snap-1", "StartTime": NOW - timedelta(hours=hours_ago), "State": "completed", "Tags": []}


@pytest.mark.parametrize(
    "snapshot, volume_age_hours, enabled, warns",
    [
        (taken(20), 100, True, None),
        (taken(47), 100, True, None),
        (taken(49), 100, True, "the last snapshot is 49 h old, more than two schedule periods (48 h)"),
        (taken(100), 200, False, "the last snapshot is 4 days old"),  # an old one is old, on or off
        (None, 30, True, None),  # a new volume: its first snapshot is still to come
        (None, 49, True, "no snapshot of the data volume yet, 49 h after it was made"),
        (None, 400, False, None),  # snapshots off: none is expected
    ],
)
def test_status_warns_after_two_schedule_periods(snapshot, volume_age_hours, enabled, warns):
    summary, warning = snapshot_report(snapshot, NOW - timedelta(hours=volume_age_hours), enabled, NOW)
    if warns is None:
        assert warning is None
    else:
        assert warning is not None and warning.startswith(warns)
    if snapshot is not None:
        assert summary["age_hours"] == pytest.approx((NOW - snapshot["StartTime"]).total_seconds() / 3600)


@pytest.mark.parametrize(
    "setting, named",
    [
        ("time_utc: '5:00'", "backups.snapshots.time_utc"),
        ("keep_daily: 0", "backups.snapshots.keep_daily"),
        ("weekly_day: sunday", "backups.snapshots.weekly_day"),
        ("copy_to_region: us-east-1", "backups.snapshots.copy_to_region"),
        ("{copy_to_region: eu-west-1, copy_kms_key: alias/mine}", "copy_kms_key"),
        ("copy_kms_key: arn:aws:kms:eu-west-1:123456789012:key/abc", "copy_kms_key"),
    ],
)
def test_bad_snapshot_settings_are_refused_naming_the_field(builder, tmp_path, setting, named):
    block = setting if setting.startswith("{") else "{" + setting + "}"
    (tmp_path / "platform.yaml").write_text(f"version: 1\nbackups: {{snapshots: {block}}}\n")
    result = builder("config", "validate")
    assert result.code == 1 and named in result.err, result.err
