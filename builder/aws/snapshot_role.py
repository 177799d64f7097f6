"""The role Amazon Data Lifecycle Manager assumes to run a platform's snapshot policy.

One role per platform, made by the first launch and its policy kept current by each. Its statements
are written here rather than AWS's managed policy `AWSDataLifecycleManagerServiceRole` (the one the
documented default role `AWSDataLifecycleManagerDefaultRole` uses): that policy lets DLM create,
copy and delete every snapshot in the account and manage EventBridge rules for event-based policies.
This role may snapshot only volumes carrying the platform's snapshot-policy tag and delete only
snapshots tagged for the platform, in aws.region and the copy region; KMS only on the customer keys
a copy needs. parliament lints it (tests/test_iam_policies.py).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from builder.aws import names
from builder.aws.iam import partition_of, role_exists
from builder.config.schema import PlatformConfig

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "dlm.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
POLICY_NAME = "ai-platform-snapshots"


def role_arn(config: PlatformConfig, account: str) -> str:
    return f"arn:{partition_of(config.aws.region)}:iam::{account}:role/{names.snapshot_role_name(config.name)}"


def role_policy(config: PlatformConfig, account: str, key_arns: list[str] | None = None) -> dict:
    """`key_arns`: the customer-managed keys a cross-region copy uses (the volume's, the copy's)."""
    arn = f"arn:{partition_of(config.aws.region)}"
    settings = config.backups.snapshots
    regions = [config.aws.region] + ([settings.copy_to_region] if settings.copy_to_region else [])
    snapshots = [f"{arn}:ec2:{region}::snapshot/*" for region in regions]  # snapshot ARNs name no account
    statements: list[dict[str, Any]] = [
        {
            # The Describe calls support no resource-level permissions: "*" is the only form AWS accepts.
            "Sid": "SeeVolumesAndSnapshots",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeVolumes",
                "ec2:DescribeSnapshots",
                "ec2:DescribeInstances",
                "ec2:DescribeAvailabilityZones",
            ],
            "Resource": "*",
        },
        {
            "Sid": "SnapshotOnlyThePlatformsDataVolumes",
            "Effect": "Allow",
            "Action": "ec2:CreateSnapshot",
            "Resource": f"{arn}:ec2:{config.aws.region}:{account}:volume/*",
            "Condition": {"StringEquals": {f"aws:ResourceTag/{names.SNAPSHOT_POLICY_TAG}": config.name}},
        },
        {
            # CreateSnapshot is authorized on the new snapshot too, which has no tags to check yet.
            "Sid": "MakeAndTagSnapshots",
            "Effect": "Allow",
            "Action": ["ec2:CreateSnapshot", "ec2:CreateTags"],
            "Resource": snapshots,
        },
        {
            # Its snapshots carry the volume's tags (the policy copies them): retention deletes only those.
            "Sid": "DeleteOnlyThePlatformsSnapshots",
            "Effect": "Allow",
            "Action": "ec2:DeleteSnapshot",
            "Resource": snapshots,
            "Condition": {"StringEquals": {f"aws:ResourceTag/{names.PLATFORM_TAG}": config.name}},
        },
    ]
    if settings.copy_to_region:
        statements.append(
            {"Sid": "CopyToTheCopyRegion", "Effect": "Allow", "Action": "ec2:CopySnapshot", "Resource": snapshots}
        )
    if settings.copy_to_region and key_arns:
        # A copy reads the snapshot under the volume's key and writes it under the copy's key.
        keys = sorted(set(key_arns))
        statements.append(
            {
                "Sid": "UseTheKeysOfTheCopies",
                "Effect": "Allow",
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": keys,
            }
        )
        statements.append(
            {
                "Sid": "LetEbsUseTheKeysOfTheCopies",
                "Effect": "Allow",
                "Action": "kms:CreateGrant",
                "Resource": keys,
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def copy_key_arns(clients: Any, config: PlatformConfig) -> list[str]:
    """The customer keys a cross-region copy needs (none without a copy): the data volume's and the copy's."""
    settings = config.backups.snapshots
    if not settings.copy_to_region:
        return []
    keys = [settings.copy_kms_key] if settings.copy_kms_key else []
    if config.data_volume.kms_key_id:
        keys.append(clients.client("kms").describe_key(KeyId=config.data_volume.kms_key_id)["KeyMetadata"]["Arn"])
    return keys


def ensure_role(iam: Any, config: PlatformConfig, policy: dict) -> tuple[str, bool]:
    """The role with its policy as given; (its ARN, whether this call created it)."""
    name = names.snapshot_role_name(config.name)
    created = not role_exists(iam, name)
    if created:
        arn = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"Data Lifecycle Manager: snapshots of the data volumes of platform {config.name}",
            Tags=names.tags(config.name),
        )["Role"]["Arn"]
    else:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    return arn, created


def delete_role(iam: Any, platform: str) -> bool:
    """Remove the role and its policy; False when there was none."""
    name = names.snapshot_role_name(platform)
    if not role_exists(iam, name):
        return False
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        iam.delete_role_policy(RoleName=name, PolicyName=POLICY_NAME)
    iam.delete_role(RoleName=name)
    return True
