"""What `builder destroy NAME --delete-data` removes besides the instance and its data volume:
everything that existed only for that instance (its owner credentials, launch template, role and
instance profile) and the platform's security group once no other instance uses it. Each is
named as it goes; one that cannot go is named with the reason, and the rest still go."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from builder import owner_credentials
from builder.aws import iam, names
from builder.aws.launch import find_template
from builder.config.schema import PlatformConfig


def delete_instance_resources(
    clients: Any, config: PlatformConfig, instance: str, log: Callable[[str], None]
) -> list[str]:
    """Delete what only `instance` used; returns what was deleted. Run after its instance ended."""
    ec2 = clients.ec2
    deleted: list[str] = []

    def attempt(what: str, action: Callable[[], bool]) -> None:
        try:
            if action():
                deleted.append(what)
                log(f"deleted {what}")
        except Exception as exc:  # keep going: every other resource still has to go
            detail = exc.response["Error"]["Message"] if hasattr(exc, "response") else str(exc)
            log(f"kept {what}: {detail}")

    ssm = clients.client("ssm")
    parameter = owner_credentials.parameter_name(config, instance)
    attempt(f"owner credentials {parameter}", lambda: owner_credentials.delete_aws(ssm, config, instance))
    template = names.launch_template_name(config.name, instance)

    def launch_template() -> bool:
        found = find_template(ec2, template)
        if found:
            ec2.delete_launch_template(LaunchTemplateId=found["LaunchTemplateId"])
        return found is not None

    attempt(f"launch template {template}", launch_template)
    role = names.role_name_for(config.name, instance)

    def role_and_profile() -> bool:
        if not iam.role_exists(clients.iam, role):
            return False
        iam.delete_role(clients.iam, role)
        return True

    attempt(f"role and instance profile {role}", role_and_profile)
    for group in _platform_security_groups(ec2, config.name):
        if _in_use(ec2, group["GroupId"]):
            log(f"kept security group {group['GroupId']}: another instance of {config.name} uses it")
            continue
        attempt(f"security group {group['GroupId']}", _deleter(ec2, group["GroupId"]))
    return deleted


def _deleter(ec2: Any, group_id: str) -> Callable[[], bool]:
    def delete() -> bool:
        ec2.delete_security_group(GroupId=group_id)
        return True

    return delete


def _platform_security_groups(ec2: Any, platform: str) -> list[dict]:
    return ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [names.security_group_name(platform)]}]
    )["SecurityGroups"]


def _in_use(ec2: Any, group_id: str) -> bool:
    interfaces = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group_id]}])
    if interfaces["NetworkInterfaces"]:
        return True
    running = ec2.describe_instances(
        Filters=[
            {"Name": "instance.group-id", "Values": [group_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    return bool(running)
