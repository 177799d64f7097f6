"""`builder launch --target aws` against the EC2/IAM/STS API as moto models it (the real API is out of reach).

Where moto does not model a property (launch-template metadata options reaching the instance, volume
throughput, a group's instance maintenance policy), the test asserts on what the launch template
holds or on the request the builder sent. moto replaces a group's terminated instance, as EC2 Auto
Scaling does; it runs no status checks and no failed launches, so those are asserted as settings
(health check type, grace period) and with a scripted Auto Scaling client.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from conftest import AWS_ZONE as ZONE
from conftest import REPO
from moto_server import agent_attaches

from builder.aws import group as groups
from builder.aws import names
from builder.aws.clients import AwsClients
from builder.aws.launch import LaunchError, launch, plan_launch
from builder.config.schema import PlatformConfig


def config(**sections) -> PlatformConfig:
    return PlatformConfig.model_validate({"version": 1, "data_volume": {"availability_zone": ZONE}, **sections})


def our_resources(aws) -> dict:
    ec2, iam = aws.client("ec2"), aws.client("iam")
    return {
        "groups": [
            g["GroupName"]
            for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"].startswith("ai-platform")
        ],
        "roles": [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("ai-platform")],
        "profiles": [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]],
        "volumes": [
            v["VolumeId"]
            for v in ec2.describe_volumes(Filters=[{"Name": f"tag:{names.ROLE_TAG}", "Values": [names.DATA_ROLE]}])[
                "Volumes"
            ]
        ],
        "templates": [t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]],
        "scaling groups": [
            g["AutoScalingGroupName"]
            for g in aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        ],
        "template versions": [
            (v["LaunchTemplateName"], v["VersionNumber"], v["DefaultVersion"])
            for t in ec2.describe_launch_templates()["LaunchTemplates"]
            for v in ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"])[
                "LaunchTemplateVersions"
            ]
        ],
        "parameters": [
            p["Name"]
            for p in aws.client("ssm").describe_parameters()["Parameters"]
            if p["Name"].startswith("/ai-platform/instances/")
        ],
    }


NOTHING = {
    "groups": [],
    "roles": [],
    "profiles": [],
    "volumes": [],
    "templates": [],
    "scaling groups": [],
    "template versions": [],
    "parameters": [],
}


def run(cfg, instance="alpha", **kwargs):
    clients = AwsClients(cfg)
    sent = []
    for client, service in ((clients.ec2, "ec2"), (clients.autoscaling, "auto-scaling")):
        client.meta.events.register(
            f"provide-client-params.{service}.*", lambda params, model, **_: sent.append((model.name, dict(params)))
        )
    plan = plan_launch(clients, cfg, instance, kwargs.get("ami"))
    return launch(clients, cfg, plan, log=lambda _line: None), sent


def test_first_launch_creates_everything_with_the_right_properties(aws, baked, dlm_standin):
    result, sent = run(config())
    ec2, iam = aws.client("ec2"), aws.client("iam")

    instance = ec2.describe_instances(InstanceIds=[result.instance_id])["Reservations"][0]["Instances"][0]
    assert instance["ImageId"] == baked
    assert instance["Placement"]["AvailabilityZone"] == ZONE

    volume = ec2.describe_volumes(VolumeIds=[result.volume_id])["Volumes"][0]
    assert (volume["Size"], volume["VolumeType"], volume["Iops"], volume["Encrypted"]) == (100, "gp3", 3000, True)
    assert volume["AvailabilityZone"] == ZONE and volume["Attachments"] == []
    tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
    assert tags[names.PLATFORM_TAG] == "ai-platform" and tags[names.INSTANCE_TAG] == "alpha"
    assert tags[names.ROLE_TAG] == "data"
    create_volume = next(params for name, params in sent if name == "CreateVolume")
    assert create_volume["Throughput"] == 125  # moto does not keep throughput: the request must carry it

    group = ec2.describe_security_groups(GroupNames=["ai-platform-instances"])["SecurityGroups"][0]
    ingress = {
        (p["IpProtocol"], p["FromPort"], r.get("CidrIp") or r.get("CidrIpv6"))
        for p in group["IpPermissions"]
        for r in p.get("IpRanges", []) + p.get("Ipv6Ranges", [])
    }
    assert ingress == {("udp", 41641, "0.0.0.0/0"), ("udp", 41641, "::/0")}

    version = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")["LaunchTemplateVersions"][0]
    data = version["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Name": "ai-platform-alpha-firstboot"}  # moto does not pass it on
    profile = iam.get_instance_profile(InstanceProfileName="ai-platform-alpha-firstboot")["InstanceProfile"]
    assert [role["RoleName"] for role in profile["Roles"]] == ["ai-platform-alpha-firstboot"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeType"] == "gp3"
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 100

    policy = iam.get_role_policy(RoleName="ai-platform-alpha-firstboot", PolicyName="ai-platform-firstboot")
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    attach = statements["AttachItsVolumeToItself"]["Condition"]
    assert attach["StringEquals"][f"aws:ResourceTag/{names.INSTANCE_TAG}"] == "alpha"
    assert attach["StringEqualsIfExists"] == {f"aws:ResourceTag/{names.ROLE_TAG}": names.DATA_ROLE}
    tagging = statements["TagOnlyItselfWithItsStatus"]["Condition"]
    assert tagging["StringEquals"][f"aws:ResourceTag/{names.INSTANCE_TAG}"] == "alpha"
    assert statements["ReadOnlyItsParameters"]["Resource"] == [
        # The Drive's rclone config, when the owner stores one (services.gdrive is on by default).
        "arn:aws:ssm:us-east-1:123456789012:parameter/ai-platform/gdrive/rclone-config",
        "arn:aws:ssm:us-east-1:123456789012:parameter/ai-platform/instances/alpha/owner-credentials",
        "arn:aws:ssm:us-east-1:123456789012:parameter/ai-platform/tailscale/auth-key",
    ]
    assert sorted(result.created) == sorted(
        [
            f"new data volume {result.volume_id}",
            f"security group {group['GroupId']}",
            "role ai-platform-alpha-firstboot",
            "owner credentials /ai-platform/instances/alpha/owner-credentials",
            "launch template ai-platform-alpha",
            "auto scaling group ai-platform-alpha",
            "snapshot role ai-platform-snapshots",
            f"snapshot policy {next(iter(dlm_standin.policies))}",
        ]
    )
    assert tags[names.SNAPSHOT_POLICY_TAG] == "ai-platform"  # the one tag the snapshot policy targets

    [scaling] = aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert (scaling["MinSize"], scaling["MaxSize"], scaling["DesiredCapacity"]) == (1, 1, 1)
    zone_subnets = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [ZONE]}])["Subnets"]
    assert scaling["VPCZoneIdentifier"] in {subnet["SubnetId"] for subnet in zone_subnets}
    assert scaling["LaunchTemplate"]["Version"] == "$Default"
    assert (scaling["HealthCheckType"], scaling["HealthCheckGracePeriod"]) == ("EC2", 300)
    assert [i["InstanceId"] for i in scaling["Instances"]] == [result.instance_id]
    created = next(params for name, params in sent if name == "CreateAutoScalingGroup")
    # Never two instances at once: the data volume attaches to one only.
    assert created["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 0, "MaxHealthyPercentage": 100}
    assert "SubnetId" not in data["NetworkInterfaces"][0]  # the group's subnet applies


def test_a_terminated_instance_is_replaced_by_the_group_with_the_same_user_data(aws, baked):
    first, _ = run(config())
    ec2 = aws.client("ec2")

    agent_attaches(ec2, first.instance_id)
    ec2.terminate_instances(InstanceIds=[first.instance_id])  # as a user, or a failed status check, ends it
    replacement = groups.wait_for_instance(
        aws.client("autoscaling"), "ai-platform-alpha", not_one_of=(first.instance_id,)
    )
    assert agent_attaches(ec2, replacement).volume_id == first.volume_id
    instance = ec2.describe_instances(InstanceIds=[replacement])["Reservations"][0]["Instances"][0]
    assert instance["Placement"]["AvailabilityZone"] == ZONE  # where its data volume is
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert (tags[names.PLATFORM_TAG], tags[names.INSTANCE_TAG]) == ("ai-platform", "alpha")
    user_data = ec2.describe_instance_attribute(InstanceId=replacement, Attribute="userData")["UserData"]["Value"]
    first_data = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]["UserData"]
    # The same document: its agent finds the same data volume by its tags in this zone.
    assert user_data == first_data


def test_a_second_launch_after_destroy_reuses_the_volume_the_role_and_the_template(aws, baked, builder, tmp_path):
    first, _ = run(config())
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")
    assert builder("destroy", "alpha").code == 0
    assert aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    second, _ = run(config())
    assert second.volume_id == first.volume_id
    assert second.created == ["auto scaling group ai-platform-alpha"]
    assert second.template_version == 2


def test_a_running_instance_stops_a_second_launch_naming_it(aws, baked):
    first, _ = run(config())
    before = our_resources(aws)
    with pytest.raises(LaunchError, match=f"already runs as {first.instance_id}.*builder upgrade alpha"):
        run(config())
    assert our_resources(aws) == before


def test_a_volume_in_use_stops_the_launch_naming_the_instance(aws, baked):
    first, _ = run(config())
    ec2 = aws.client("ec2")
    groups.delete(aws.client("autoscaling"), ec2, "ai-platform-alpha", log=lambda _line: None)
    stray = ec2.run_instances(ImageId=baked, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": ZONE})
    stray_id = stray["Instances"][0]["InstanceId"]
    ec2.attach_volume(VolumeId=first.volume_id, InstanceId=stray_id, Device="/dev/sdf")
    before = our_resources(aws)
    with pytest.raises(LaunchError, match=f"attached to {stray_id} \\(running\\)"):
        run(config())
    assert our_resources(aws) == before
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")["LaunchTemplateVersions"]
    assert len(versions) == 1


def test_no_baked_image_is_a_clear_error_and_creates_nothing(aws):
    with pytest.raises(LaunchError, match="no baked image of platform ai-platform in this region"):
        run(config())
    assert our_resources(aws) == NOTHING
    with pytest.raises(LaunchError, match="image ami-12345678 does not exist or is deregistered"):
        run(config(), ami="ami-12345678")


def test_a_zone_without_a_subnet_is_a_clear_error(aws, baked):
    ec2 = aws.client("ec2")
    for subnet in ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    with pytest.raises(Exception, match="the default VPC has no subnet in us-east-1b"):
        run(config(data_volume={"availability_zone": "us-east-1b"}))
    assert our_resources(aws)["volumes"] == []


def test_over_limit_user_data_stops_before_any_write(aws, baked):
    import base64
    import hashlib

    keys = [
        "ssh-ed25519 " + base64.b64encode(b"".join(hashlib.sha512(bytes([i, j])).digest() for j in range(4))).decode()
        for i in range(96)
    ]
    with pytest.raises(Exception, match="over EC2's limit of 16384 bytes"):
        run(config(ssh={"authorized_keys": keys}))
    assert our_resources(aws) == NOTHING


def test_a_failure_part_way_rolls_back_what_this_launch_created(aws, baked):
    cfg = config()
    clients = AwsClients(cfg)

    def refuse(**_):
        raise ClientError({"Error": {"Code": "LimitExceeded", "Message": "no more groups"}}, "CreateAutoScalingGroup")

    clients.autoscaling.meta.events.register("before-call.auto-scaling.CreateAutoScalingGroup", refuse)
    plan = plan_launch(clients, cfg, "alpha")
    with pytest.raises(LaunchError) as error:
        launch(clients, cfg, plan, log=lambda _line: None)
    assert "no more groups" in str(error.value) and "kept: nothing" in str(error.value)
    assert our_resources(aws) == NOTHING  # the owner credentials it made too


def test_a_failed_launch_on_a_kept_volume_restores_the_template_and_names_what_it_kept(aws, baked, builder, tmp_path):
    """Once `kept: nothing` was said while the owner-credentials parameter and a new template version
    stayed behind."""
    first, _ = run(config())
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")
    assert builder("destroy", "alpha").code == 0
    before = our_resources(aws)
    cfg = config()
    clients = AwsClients(cfg)

    def refuse(**_):
        raise ClientError({"Error": {"Code": "LimitExceeded", "Message": "no more groups"}}, "CreateAutoScalingGroup")

    clients.autoscaling.meta.events.register("before-call.auto-scaling.CreateAutoScalingGroup", refuse)
    with pytest.raises(LaunchError) as error:
        launch(clients, cfg, plan_launch(clients, cfg, "alpha"), log=lambda _line: None)
    assert our_resources(aws) == before  # the template's default version as before, no new one
    said = str(error.value)
    assert f"data volume {first.volume_id}" in said and "owner credentials /ai-platform/instances/alpha" in said
    assert "kept: nothing" not in said and "launch template" in said


def test_ssh_rule_follows_the_config(aws, baked):
    run(config(aws={"ssh_ingress_cidrs": ["203.0.113.7/32"]}))
    ec2 = aws.client("ec2")
    group = ec2.describe_security_groups(GroupNames=["ai-platform-instances"])["SecurityGroups"][0]
    assert any(p["IpProtocol"] == "tcp" and p["FromPort"] == 22 for p in group["IpPermissions"])
    groups.delete(aws.client("autoscaling"), ec2, "ai-platform-alpha", log=lambda _line: None)
    run(config())
    group = ec2.describe_security_groups(GroupNames=["ai-platform-instances"])["SecurityGroups"][0]
    assert not any(p["IpProtocol"] == "tcp" for p in group["IpPermissions"])


def test_the_command_dry_run_changes_nothing(aws, baked, builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")
    result = builder("launch", "alpha", "--dry-run")
    assert result.code == 0, result.err
    assert "create data volume" in result.out and "create auto scaling group ai-platform-alpha" in result.out
    assert our_resources(aws) == NOTHING
    launched = builder("--json", "launch", "alpha")
    assert launched.code == 0, launched.err
    assert json.loads(launched.out)["instance_id"].startswith("i-")


def test_root_volume_initialization_rate_is_requested_when_configured(aws, baked):
    """moto ignores VolumeInitializationRate: the launch template the builder wrote must carry it."""
    run(config(image={"root_volume_initialization_rate_mibps": 200}))
    ec2 = aws.client("ec2")
    data = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")["LaunchTemplateVersions"][0]
    assert data["LaunchTemplateData"]["BlockDeviceMappings"][0]["Ebs"]["VolumeInitializationRate"] == 200


class ScriptedAutoScaling:
    """EC2 Auto Scaling as seen while it launches: no instance for `empty` looks, then one; moto
    cannot refuse a launch, so its failed activity is scripted here."""

    def __init__(self, empty: int, failure: str = ""):
        self.looks, self.empty, self.failure = 0, empty, failure

    def describe_auto_scaling_groups(self, AutoScalingGroupNames):
        self.looks += 1
        instances = [] if self.looks <= self.empty else [{"InstanceId": "i-new", "LifecycleState": "Pending"}]
        return {"AutoScalingGroups": [{"AutoScalingGroupName": AutoScalingGroupNames[0], "Instances": instances}]}

    def describe_scaling_activities(self, AutoScalingGroupName, MaxRecords):
        return {"Activities": [{"StatusCode": "Failed", "StatusMessage": self.failure}] if self.failure else []}


def test_the_groups_instance_is_waited_for_while_it_retries_a_refused_launch():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    refused = "Value (ai-platform-alpha-firstboot) for parameter iamInstanceProfile.name is invalid."
    assert groups.wait_for_instance(ScriptedAutoScaling(3, refused), "g", clock=lambda: now[0], sleep=sleep) == "i-new"
    with pytest.raises(groups.GroupError, match=r"started no instance within 60 s; its last failed launch: Value"):
        groups.wait_for_instance(ScriptedAutoScaling(99, refused), "g", timeout=60, clock=lambda: now[0], sleep=sleep)
    replaced = groups.wait_for_instance(ScriptedAutoScaling(0), "g", clock=lambda: now[0], sleep=sleep)
    with pytest.raises(groups.GroupError):  # the instance being replaced does not count
        groups.wait_for_instance(
            ScriptedAutoScaling(0), "g", not_one_of=(replaced,), timeout=1, clock=lambda: now[0], sleep=sleep
        )


def test_role_names_stay_within_iams_64_characters_and_apart():
    platform, first, second = "p" * 32, "a" * 30 + "1", "a" * 30 + "2"
    long_names = {names.role_name_for(platform, first), names.role_name_for(platform, second)}
    assert len(long_names) == 2 and all(len(name) <= 64 for name in long_names)
    assert names.role_name_for("ai-platform", "alpha") == "ai-platform-alpha-firstboot"  # short ones unchanged


def test_a_xen_instance_type_is_refused_before_anything_is_made(aws, baked):
    cfg = config(aws={"instance_type": "t2.micro"})
    before = our_resources(aws)
    with pytest.raises(LaunchError, match=r"t2.micro runs on Xen.*Nitro"):
        run(cfg)
    assert our_resources(aws) == before


def test_a_customer_key_on_the_data_volume_is_granted_to_the_role(aws, baked):
    key = aws.client("kms").create_key()["KeyMetadata"]
    aws.client("kms").create_alias(AliasName="alias/ai-data", TargetKeyId=key["KeyId"])
    run(config(data_volume={"availability_zone": ZONE, "kms_key_id": "alias/ai-data"}))
    policy = aws.client("iam").get_role_policy(
        RoleName="ai-platform-alpha-firstboot", PolicyName="ai-platform-firstboot"
    )
    [grant] = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "kms:CreateGrant"]
    assert grant["Resource"] == key["Arn"]  # the key itself: an alias would not match a grant's resource


def test_the_boto3_floor_knows_the_volume_initialization_rate():
    """botocore 1.38.10 is the first release whose EC2 model has VolumeInitializationRate (its wheels,
    1.38.9 and 1.38.10, compared); boto3 1.38.10 requires it. A lower floor lets pip keep an older
    boto3 that refuses image.root_volume_initialization_rate_mibps at launch."""
    import re

    import botocore.session
    import tomllib

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [floor] = [re.match(r"boto3>=([0-9.]+)", d).group(1) for d in dependencies if d.startswith("boto3")]
    assert tuple(map(int, floor.split("."))) >= (1, 38, 10)
    model = botocore.session.get_session().get_service_model("ec2")
    mapping = model.shape_for("LaunchTemplateEbsBlockDeviceRequest")
    assert "VolumeInitializationRate" in mapping.members


def test_a_parameter_under_a_customer_key_lets_the_role_decrypt_it_through_ssm(aws, baked):
    """SSM decrypts a SecureString with the caller's own kms:Decrypt: without it the agent cannot read
    the Tailscale key. aws/ssm needs nothing (the default parameters of the other tests)."""
    kms, ssm = aws.client("kms"), aws.client("ssm")
    key = kms.create_key()["KeyMetadata"]
    ssm.put_parameter(
        Name="/ai-platform/tailscale/auth-key", Value="k", Type="SecureString", KeyId=key["KeyId"], Overwrite=True
    )
    run(config())
    policy = aws.client("iam").get_role_policy(
        RoleName="ai-platform-alpha-firstboot", PolicyName="ai-platform-firstboot"
    )
    [decrypt] = [s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "kms:Decrypt"]
    assert decrypt["Resource"] == [key["Arn"]]


def test_destroy_with_its_data_leaves_nothing_of_the_instance_behind(aws, baked, builder, tmp_path, monkeypatch):
    """`destroy --delete-data` once left the role, instance profile, launch template and security
    group without a word."""
    import io
    import sys

    run(config())
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("alpha\n"))
    result = builder("destroy", "alpha", "--delete-data")
    assert result.code == 0, result.err
    assert our_resources(aws) == NOTHING
    for what in (
        "owner credentials",
        "launch template ai-platform-alpha",
        "role and instance profile",
        "security group",
    ):
        assert what in result.out, result.out


def test_a_closed_stdin_at_the_confirmation_is_exit_1_and_deletes_nothing(aws, baked, builder, tmp_path, monkeypatch):
    """It once exited 130, as if interrupted."""
    import io
    import sys

    run(config())
    (tmp_path / "platform.yaml").write_text(f"version: 1\ndata_volume: {{availability_zone: {ZONE}}}\n")
    before = our_resources(aws)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    result = builder("destroy", "alpha", "--delete-data")
    assert result.code == 1 and "standard input is closed" in result.err, result.err
    assert our_resources(aws) == before


def test_with_an_oauth_client_the_role_reads_it_and_not_the_reusable_key(aws, baked):
    """One compromised instance must not hold the platform's reusable key: with tailscale.oauth_client_parameter
    the role may read the OAuth client (each instance mints its own key) and the auth key parameter no more."""
    run(config(tailscale={"oauth_client_parameter": "/ai-platform/tailscale/oauth-client"}))
    policy = aws.client("iam").get_role_policy(
        RoleName="ai-platform-alpha-firstboot", PolicyName="ai-platform-firstboot"
    )
    [read] = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "ReadOnlyItsParameters"]
    tailnet = [arn for arn in read["Resource"] if "/tailscale/" in arn]
    assert tailnet == ["arn:aws:ssm:us-east-1:123456789012:parameter/ai-platform/tailscale/oauth-client"]
