"""The instance's role: exactly what the firstboot agent needs, for this platform instance only.

One role and instance profile per platform instance (created once, reused after, its policy kept
current at every launch): attach only volumes tagged for this instance, to itself only; tag only
itself, and only with the status tags; read only its own SSM parameters. "Its own" is said by the
platform and instance tags the launch puts on the instance and its volume.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from builder.aws import names


def partition_of(region: str) -> str:
    """The ARN partition of a region (aws, aws-us-gov, aws-cn, ...), from botocore's endpoint data."""
    import botocore.session  # deferred: the CLI's other commands never load botocore's data

    return botocore.session.get_session().get_partition_for_region(region)


TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
POLICY_NAME = "ai-platform-firstboot"


def instance_policy(
    platform: str,
    instance: str,
    region: str,
    account: str,
    parameters: list[str],
    volume_key_arn: str | None = None,
    parameter_key_arns: list[str] | None = None,
) -> dict:
    """`volume_key_arn`: the customer-managed KMS key of the data volume, whose attach needs a grant.
    `parameter_key_arns`: customer-managed keys of its SecureString parameters, which it must decrypt."""
    # "This platform instance's" is said by its tags, which the launch sets on the instance and its
    # volume and which the agent cannot change (it may only tag its status keys): documented
    # condition keys of AttachVolume and CreateTags (aws:ResourceTag/…), linted with parliament.
    arn = f"arn:{partition_of(region)}"
    its_own = {
        "StringEquals": {
            f"aws:ResourceTag/{names.PLATFORM_TAG}": platform,
            f"aws:ResourceTag/{names.INSTANCE_TAG}": instance,
        }
    }
    statements = [
        # DescribeVolumes supports no resource-level permissions: "*" is the only form AWS accepts.
        {"Sid": "FindTheDataVolume", "Effect": "Allow", "Action": "ec2:DescribeVolumes", "Resource": "*"},
        {
            # Both resources of the call, the volume and the instance, must be this platform instance's.
            "Sid": "AttachItsVolumeToItself",
            "Effect": "Allow",
            "Action": "ec2:AttachVolume",
            "Resource": [f"{arn}:ec2:{region}:{account}:volume/*", f"{arn}:ec2:{region}:{account}:instance/*"],
            # …and the volume its data volume (the instance carries no role tag, hence IfExists).
            "Condition": {**its_own, "StringEqualsIfExists": {f"aws:ResourceTag/{names.ROLE_TAG}": names.DATA_ROLE}},
        },
        {
            "Sid": "TagOnlyItselfWithItsStatus",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": f"{arn}:ec2:{region}:{account}:instance/*",
            "Condition": {
                **its_own,
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": [
                        names.STATUS_TAG,
                        names.STATUS_DETAIL_TAG,
                        names.HEALTH_TAG,
                        names.BACKUP_TAG,
                        names.DISK_TAG,
                        names.CERTIFICATE_TAG,
                        names.READAHEAD_TAG,
                    ]
                },
            },
        },
    ]
    if volume_key_arn:
        # Attaching a volume under a customer-managed key makes EC2 create a grant for the instance,
        # with the caller's permission; only for AWS resources, only on that key.
        statements.append(
            {
                "Sid": "LetEc2UseTheDataVolumesKey",
                "Effect": "Allow",
                "Action": "kms:CreateGrant",
                "Resource": volume_key_arn,
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
            }
        )
    if parameters:
        statements.append(
            {
                "Sid": "ReadOnlyItsParameters",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": [f"{arn}:ssm:{region}:{account}:parameter{name}" for name in sorted(set(parameters))],
            }
        )
    if parameter_key_arns:
        # GetParameter with decryption under a customer key is the caller's kms:Decrypt; only
        # through SSM in this region.
        statements.append(
            {
                "Sid": "DecryptItsParametersThroughSsm",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": sorted(set(parameter_key_arns)),
                "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def parameter_key_arns(ssm: Any, kms: Any, parameters: list[str]) -> list[str]:
    """The customer-managed keys (ARNs) of those SecureString parameters that exist; aws/ssm needs no
    statement (its key policy lets the account's principals use it through SSM)."""
    if not parameters:
        return []
    found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": parameters}])
    arns = set()
    for parameter in found["Parameters"]:
        key = parameter.get("KeyId")
        if parameter.get("Type") != "SecureString" or not key or key == "alias/aws/ssm":
            continue
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
        if metadata.get("KeyManager") == "CUSTOMER":
            arns.add(metadata["Arn"])
    return sorted(arns)


def role_exists(iam: Any, name: str) -> bool:
    try:
        iam.get_role(RoleName=name)
        return True
    except iam.exceptions.NoSuchEntityException:
        return False


def ensure_role(iam: Any, name: str, policy: dict, tags: list[dict]) -> bool:
    """The role and its instance profile of the same name; True when this call created them."""
    created = not role_exists(iam, name)
    if created:
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description="The AI platform's firstboot agent on one platform instance",
            Tags=tags,
        )
    iam.put_role_policy(RoleName=name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(policy))
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = iam.create_instance_profile(InstanceProfileName=name, Tags=tags)["InstanceProfile"]
    if name not in [role["RoleName"] for role in profile.get("Roles", [])]:
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return created


def delete_role(iam: Any, name: str) -> None:
    """Undo ensure_role (only for a role this launch created)."""
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=name)
    for call, arguments in (
        (iam.delete_instance_profile, {"InstanceProfileName": name}),
        (iam.delete_role_policy, {"RoleName": name, "PolicyName": POLICY_NAME}),
        (iam.delete_role, {"RoleName": name}),
    ):
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            call(**arguments)
