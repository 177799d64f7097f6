"""What `builder destroy NAME --delete-data` removes besides the instance and its data volume:
everything that existed only for that instance (its owner credentials, launch template, role and
instance profile, the snapshots of its data volume, confirmed with it) and what the platform shares
once no other instance needs it (its security group; its snapshot policy and that policy's role
once no data volume of the platform is left). Each is named as it goes; one that cannot go is
named with the reason, and the rest still go."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from builder import owner_credentials
from builder.aws import iam, names, snapshot_policy, snapshot_role
from builder.aws.launch import find_template
from builder.config.schema import PlatformConfig
from builder.words import counted


def delete_instance_resources(
    clients: Any,
    config: PlatformConfig,
    instance: str,
    log: Callable[[str], None],
    snapshots: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
) -> list[str]:
    """Delete what only `instance` used; returns what was deleted. Run after its instance ended and its
    data volume went. `snapshots`: (region, id) of its data volume's snapshots, as the user confirmed them."""
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
    gone = 0
    for region, snapshot_id in snapshots:
        regional = ec2 if region == config.aws.region else clients.client("ec2", region)
        try:
            regional.delete_snapshot(SnapshotId=snapshot_id)
            gone += 1
        except Exception as exc:  # keep going: the others still go
            detail = exc.response["Error"]["Message"] if hasattr(exc, "response") else str(exc)
            log(f"kept snapshot {snapshot_id} ({region}): {detail}")
    if gone:
        log(f"deleted {counted(gone, 'snapshot')} of {instance}'s data volume")
        deleted.append(f"{counted(gone, 'snapshot')} of its data volume")
    _delete_snapshot_policy_if_unused(clients, config, attempt, log)
    for group in _platform_security_groups(ec2, config.name):
        if _in_use(ec2, group["GroupId"]):
            log(f"kept security group {group['GroupId']}: another instance of {config.name} uses it")
            continue
        attempt(f"security group {group['GroupId']}", _deleter(ec2, group["GroupId"]))
    return deleted


def _delete_snapshot_policy_if_unused(clients: Any, config: PlatformConfig, attempt, log) -> None:
    """The platform's snapshot policy and its role serve every data volume of the platform: they go
    with the last one. With backups.snapshots.enabled false builder touches no policy."""
    if not config.backups.snapshots.enabled:
        return
    volumes = clients.ec2.describe_volumes(
        Filters=[
            {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [config.name]},
            {"Name": f"tag:{names.ROLE_TAG}", "Values": [names.DATA_ROLE]},
        ]
    )["Volumes"]
    if volumes:
        log(f"kept the snapshot policy of {config.name}: {counted(len(volumes), 'other data volume')} of it left")
        return
    attempt(
        f"snapshot policy of {config.name}", lambda: snapshot_policy.delete_policy(clients.dlm, config.name) is not None
    )
    role = names.snapshot_role_name(config.name)
    attempt(f"snapshot role {role}", lambda: snapshot_role.delete_role(clients.iam, config.name))


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
