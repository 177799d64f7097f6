"""Every IAM document builder writes, linted by parliament (offline, against AWS's own list of actions,
resources and condition keys: moto enforces none of them), and what each statement allows."""

from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

from builder.aws import iam, names
from builder.aws.secrets import secret_parameters
from builder.config.schema import PlatformConfig
from builder.owner_credentials import parameter_name

POLICY = iam.instance_policy("ai-platform", "alpha", "us-east-1", "123456789012", ["/ai-platform/tailscale/auth-key"])


def findings(document: dict) -> list[str]:
    return [f"{f.issue}: {f.detail}" for f in analyze_policy_string(json.dumps(document)).findings]


def test_the_instance_policy_uses_only_documented_actions_resources_and_condition_keys():
    assert findings(POLICY) == []


def test_the_trust_policy_lets_only_ec2_assume_the_role():
    """A trust policy has a Principal and no Resource, which parliament's identity-policy checks refuse."""
    assert iam.TRUST_POLICY["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]


def test_the_lint_can_fail():
    """The key this policy used before: parliament names it."""
    broken = json.loads(json.dumps(POLICY))
    broken["Statement"][2]["Condition"] = {"StringEquals": {"aws:ARN": "${ec2:SourceInstanceARN}"}}
    assert any("Unknown condition aws:ARN for action ec2:CreateTags" in f for f in findings(broken))


def test_each_statement_allows_only_what_the_agent_needs():
    allowed = {s["Sid"]: (s["Action"], s["Resource"]) for s in POLICY["Statement"]}
    assert allowed == {
        "FindTheDataVolume": ("ec2:DescribeVolumes", "*"),
        "AttachItsVolumeToItself": (
            "ec2:AttachVolume",
            ["arn:aws:ec2:us-east-1:123456789012:volume/*", "arn:aws:ec2:us-east-1:123456789012:instance/*"],
        ),
        "TagOnlyItselfWithItsStatus": ("ec2:CreateTags", "arn:aws:ec2:us-east-1:123456789012:instance/*"),
        "ReadOnlyItsParameters": (
            "ssm:GetParameter",
            ["arn:aws:ssm:us-east-1:123456789012:parameter/ai-platform/tailscale/auth-key"],
        ),
    }
    tag_keys = POLICY["Statement"][2]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]
    assert set(tag_keys) == {
        names.STATUS_TAG,
        names.STATUS_DETAIL_TAG,
        names.HEALTH_TAG,
        names.BACKUP_TAG,
        names.DISK_TAG,
        names.CERTIFICATE_TAG,
        names.READAHEAD_TAG,
    }
    assert all(s["Effect"] == "Allow" and "*" not in s["Action"] for s in POLICY["Statement"])


def test_a_data_volume_under_a_customer_key_gets_a_grant_for_ec2_only():
    key = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
    policy = iam.instance_policy("ai-platform", "alpha", "us-east-1", "123456789012", [], volume_key_arn=key)
    assert findings(policy) == []
    [grant] = [s for s in policy["Statement"] if s["Action"] == "kms:CreateGrant"]
    assert grant["Resource"] == key and grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert not [s for s in POLICY["Statement"] if s["Action"].startswith("kms:")]  # none without a key


@pytest.mark.parametrize("region, partition", [("us-gov-west-1", "aws-us-gov"), ("cn-north-1", "aws-cn")])
def test_arns_name_the_regions_own_partition(region, partition):
    """GovCloud and China are partitions of their own: an arn:aws:... resource matches nothing there."""
    policy = iam.instance_policy("ai-platform", "alpha", region, "123456789012", ["/ai-platform/tailscale/auth-key"])
    resources = [
        r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert [r for r in resources if r != "*" and not r.startswith(f"arn:{partition}:")] == []


def test_parameters_under_a_customer_key_get_decrypt_through_ssm_only():
    key = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
    policy = iam.instance_policy("ai-platform", "alpha", "us-east-1", "123456789012", ["/p"], parameter_key_arns=[key])
    assert findings(policy) == []
    [decrypt] = [s for s in policy["Statement"] if s["Action"] == "kms:Decrypt"]
    assert decrypt["Resource"] == [key]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.us-east-1.amazonaws.com"}}


def test_the_policy_with_every_optional_statement_at_once_lints_clean():
    """All optional config on (a customer key on the data volume, every parameter the instance may
    read, each under a customer key of its own): the statements must also hold together."""
    volume_key = "arn:aws:kms:us-east-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
    parameter_keys = [
        "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
        "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000",
    ]
    config = PlatformConfig.model_validate(
        {
            "version": 1,
            "providers": {
                "anthropic_api_key_parameter": "/ai-platform/providers/anthropic",
                "openai_api_key_parameter": "/ai-platform/providers/openai",
            },
            "services": {"gdrive": {"enabled": True}},
        }
    )
    # What launch lets the instance read: its secrets (each set here) and its owner credentials.
    parameters = [p for p in secret_parameters(config).values() if p] + [parameter_name(config, "alpha")]
    assert len(parameters) == 5
    policy = iam.instance_policy(
        "ai-platform",
        "alpha",
        "us-east-1",
        "123456789012",
        parameters,
        volume_key_arn=volume_key,
        parameter_key_arns=parameter_keys,
    )
    assert [s["Sid"] for s in policy["Statement"]] == [
        "FindTheDataVolume",
        "AttachItsVolumeToItself",
        "TagOnlyItselfWithItsStatus",
        "LetEc2UseTheDataVolumesKey",
        "ReadOnlyItsParameters",
        "DecryptItsParametersThroughSsm",
    ]
    assert findings(policy) == []
    [read] = [s for s in policy["Statement"] if s["Sid"] == "ReadOnlyItsParameters"]
    assert len(read["Resource"]) == len(parameters)


# The role Data Lifecycle Manager assumes for a platform's snapshot policy (builder/aws/snapshot_role.py)

SNAPSHOT_CONFIG = PlatformConfig(version=1)
COPY_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
VOLUME_KEY = "arn:aws:kms:us-east-1:123456789012:key/3210abcd-0123-4567-89ab-0123456789ab"


# CreateSnapshot is authorized on the volume and on the new snapshot: the volume's statement checks
# its tag, the snapshot's cannot (a new snapshot has none yet), so they are two statements, as AWS's
# own EC2 examples write it. parliament checks each statement alone and names the resource the other
# one holds: exactly these two findings are expected.
SPLIT_CREATE_SNAPSHOT = [
    "RESOURCE_MISMATCH: [{'action': 'ec2:CreateSnapshot', 'required_format': 'arn:*:ec2:*::snapshot/*'}]",
    "RESOURCE_MISMATCH: [{'action': 'ec2:CreateSnapshot', 'required_format': 'arn:*:ec2:*:*:volume/*'}]",
]


def test_the_snapshot_role_uses_only_documented_actions_resources_and_condition_keys():
    from builder.aws import snapshot_role

    copying = PlatformConfig.model_validate(
        {"version": 1, "backups": {"snapshots": {"copy_to_region": "eu-west-1", "copy_kms_key": COPY_KEY}}}
    )
    assert findings(snapshot_role.role_policy(SNAPSHOT_CONFIG, "123456789012")) == SPLIT_CREATE_SNAPSHOT
    assert findings(snapshot_role.role_policy(copying, "123456789012", [COPY_KEY, VOLUME_KEY])) == SPLIT_CREATE_SNAPSHOT


def test_the_snapshot_role_snapshots_only_the_platforms_tagged_volumes_and_deletes_only_its_snapshots():
    from builder.aws import snapshot_role

    policy = snapshot_role.role_policy(SNAPSHOT_CONFIG, "123456789012")
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements) == {
        "SeeVolumesAndSnapshots",
        "SnapshotOnlyThePlatformsDataVolumes",
        "MakeAndTagSnapshots",
        "DeleteOnlyThePlatformsSnapshots",
    }  # no copy, no KMS without a copy region
    create = statements["SnapshotOnlyThePlatformsDataVolumes"]
    assert create["Resource"] == "arn:aws:ec2:us-east-1:123456789012:volume/*"
    assert create["Condition"] == {"StringEquals": {f"aws:ResourceTag/{names.SNAPSHOT_POLICY_TAG}": "ai-platform"}}
    delete = statements["DeleteOnlyThePlatformsSnapshots"]
    assert delete["Condition"] == {"StringEquals": {f"aws:ResourceTag/{names.PLATFORM_TAG}": "ai-platform"}}
    assert delete["Resource"] == ["arn:aws:ec2:us-east-1::snapshot/*"]
    assert all("*" not in s["Action"] for s in policy["Statement"])


def test_a_copy_region_adds_copy_and_only_the_named_keys():
    from builder.aws import snapshot_role

    copying = PlatformConfig.model_validate({"version": 1, "backups": {"snapshots": {"copy_to_region": "eu-west-1"}}})
    policy = snapshot_role.role_policy(copying, "123456789012", [VOLUME_KEY])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["CopyToTheCopyRegion"]["Resource"] == [
        "arn:aws:ec2:us-east-1::snapshot/*",
        "arn:aws:ec2:eu-west-1::snapshot/*",
    ]
    assert statements["UseTheKeysOfTheCopies"]["Resource"] == [VOLUME_KEY]
    assert statements["LetEbsUseTheKeysOfTheCopies"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_the_snapshot_roles_trust_policy_lets_only_dlm_assume_it():
    from builder.aws import snapshot_role

    assert snapshot_role.TRUST_POLICY["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]


def test_the_snapshot_role_lint_can_fail():
    from builder.aws import snapshot_role

    broken = snapshot_role.role_policy(SNAPSHOT_CONFIG, "123456789012")
    broken["Statement"][1]["Action"] = "ec2:CreateSnapshotz"
    assert any(f.startswith("UNKNOWN_ACTION") and "ec2:CreateSnapshotz" in f for f in findings(broken))
