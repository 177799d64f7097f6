"""`builder launch --target aws`: one platform instance with its data volume, in one command.

First a plan that only reads (what exists, what would be created, the user-data size); it stops a
launch that cannot work before anything is created: no AMI, a volume held by another instance, no
subnet in the volume's zone, user-data over EC2's limit, an instance still running. Then the
launch: every resource it creates is recorded, and a failure part way removes them again in reverse
order (a new data volume too: it never held data), saying what it kept.

The instance itself is started by an Auto Scaling group of one (builder/aws/group.py), which
replaces it when it is terminated or fails its status checks.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from builder import owner_credentials
from builder.aws import gpu, group, iam, names, network, snapshot_policy, snapshot_role
from builder.aws import schedule as group_schedule
from builder.aws.clients import AwsClients
from builder.aws.instances import data_volume
from builder.aws.schedule import SchedulePlan
from builder.aws.secrets import tailnet_credential_parameter
from builder.aws.snapshot_policy import PolicyPlan
from builder.config.schema import PlatformConfig
from builder.errors import BuilderError
from builder.userdata import UserData, instance_document, render_user_data

NEW_VERSION = "new version"


class LaunchError(BuilderError):
    pass


@dataclass
class LaunchPlan:
    platform: str
    instance: str
    ami_id: str
    root_device: str
    zone: str
    subnet_id: str
    vpc_id: str
    volume_id: str | None  # None: to be created
    security_group_id: str | None  # None: to be created
    role_exists: bool
    template_id: str | None  # None: to be created
    group_exists: bool
    user_data: UserData
    snapshot_policy: PolicyPlan = field(default_factory=lambda: PolicyPlan("off"))
    snapshot_role_exists: bool = False
    volume_lacks_snapshot_tag: bool = False  # a data volume made before the snapshot policy
    schedule: SchedulePlan | None = None  # the group's scheduled actions (aws.schedule)

    def actions(self) -> list[str]:
        def verb(existing: str | None, what: str) -> str:
            return f"reuse {what} {existing}" if existing else f"create {what}"

        return [
            f"image {self.ami_id}",
            f"zone {self.zone}, subnet {self.subnet_id}",
            verb(self.volume_id, "data volume"),
            verb(self.security_group_id, "security group"),
            ("reuse" if self.role_exists else "create") + " role and instance profile (policy kept current)",
            *self._snapshot_actions(),
            ("new version of launch template " + self.template_id) if self.template_id else "create launch template",
            f"user-data {len(self.user_data.payload)} bytes{' (gzip)' if self.user_data.compressed else ''}",
            ("bring auto scaling group back to one instance" if self.group_exists else "create auto scaling group")
            + f" {self.group_name} (one instance in {self.zone}, replaced when it fails)",
            *(self.schedule.lines() if self.schedule else []),
        ]

    def _snapshot_actions(self) -> list[str]:
        actions = []
        if self.volume_id and self.volume_lacks_snapshot_tag:
            tag = f"{names.SNAPSHOT_POLICY_TAG}={self.platform}"
            actions.append(f"tag data volume {self.volume_id} {tag} (the snapshot policy's target)")
        if self.snapshot_policy.action != "off":
            role = names.snapshot_role_name(self.platform)
            verb = "reuse" if self.snapshot_role_exists else "create"
            actions.append(f"{verb} snapshot role {role} (policy kept current)")
        return [*actions, self.snapshot_policy.line()]

    @property
    def group_name(self) -> str:
        return names.group_name(self.platform, self.instance)


@dataclass
class LaunchResult:
    instance_id: str
    volume_id: str
    template_version: int
    created: list[str] = field(default_factory=list)


def plan_launch(clients: AwsClients, config: PlatformConfig, instance: str, ami_id: str | None = None) -> LaunchPlan:
    """Everything the launch needs to know, by reading only."""
    ec2 = clients.ec2
    _require_nitro(ec2, config.aws.instance_type)
    image = find_image(ec2, config.name, ami_id, gpu.instance_variant(ec2, config.aws.instance_type))
    existing_group = group.find(clients.autoscaling, names.group_name(config.name, instance))
    running = group.live_instance(existing_group)
    if running:
        raise LaunchError(
            f"{config.name}/{instance} already runs as {running} (auto scaling group "
            f"{existing_group['AutoScalingGroupName']}): `builder upgrade {instance}` moves it to a new image, "
            f"`builder destroy {instance}` ends it and keeps the data volume"
        )
    volume = data_volume(ec2, config.name, instance)
    if volume and volume.get("Attachments"):
        holder = volume["Attachments"][0]["InstanceId"]
        state = _instance_state(ec2, holder)
        raise LaunchError(
            f"data volume {volume['VolumeId']} of {config.name}/{instance} is attached to {holder} ({state}); "
            f"destroy or stop that instance first (`builder destroy {instance}` keeps the volume)"
        )
    zone = volume["AvailabilityZone"] if volume else config.data_volume.availability_zone
    subnet = network.subnet_for(ec2, config.aws.subnet_id, zone)
    document = instance_document(config, instance, "aws", volume_id=volume["VolumeId"] if volume else None)
    user_data = render_user_data(config, document)  # raises before any write if it is too large
    template = find_template(ec2, names.launch_template_name(config.name, instance))
    snapshots, snapshot_role_exists = PolicyPlan("off"), False
    if config.backups.snapshots.enabled:
        role_arn = snapshot_role.role_arn(config, clients.account_id)
        snapshots = snapshot_policy.plan_policy(clients.dlm, config, role_arn)
        snapshot_role_exists = iam.role_exists(clients.iam, names.snapshot_role_name(config.name))
    volume_tags = {tag["Key"]: tag["Value"] for tag in (volume or {}).get("Tags", [])}
    return LaunchPlan(
        platform=config.name,
        instance=instance,
        ami_id=image["ImageId"],
        root_device=image.get("RootDeviceName", "/dev/sda1"),
        zone=subnet["AvailabilityZone"],
        subnet_id=subnet["SubnetId"],
        vpc_id=subnet["VpcId"],
        volume_id=volume["VolumeId"] if volume else None,
        security_group_id=network.find_security_group(ec2, config.name, subnet["VpcId"]),
        role_exists=iam.role_exists(clients.iam, names.role_name_for(config.name, instance)),
        template_id=template["LaunchTemplateId"] if template else None,
        group_exists=existing_group is not None,
        user_data=user_data,
        snapshot_policy=snapshots,
        snapshot_role_exists=snapshot_role_exists,
        volume_lacks_snapshot_tag=volume is not None and volume_tags.get(names.SNAPSHOT_POLICY_TAG) != config.name,
        schedule=group_schedule.plan(
            clients.autoscaling if existing_group else None,
            config.aws.schedule,
            names.group_name(config.name, instance),
        ),
    )


def launch(clients: AwsClients, config: PlatformConfig, plan: LaunchPlan, log: Callable[[str], None]) -> LaunchResult:
    ec2 = clients.ec2
    undo: list[tuple[str, Callable[[], None]]] = []
    try:
        volume_id = plan.volume_id or _create_volume(ec2, config, plan, undo, log)
        group_id, group_created = network.ensure_security_group(
            ec2, config.name, plan.vpc_id, list(config.aws.ssh_ingress_cidrs)
        )
        if group_created:
            log(f"created security group {group_id}")
            undo.append((f"security group {group_id}", lambda: ec2.delete_security_group(GroupId=group_id)))
        role = names.role_name_for(config.name, plan.instance)
        made: list[str] = []
        owner = owner_credentials.ensure_aws(clients.client("ssm"), config, plan.instance, log, made)
        if made and plan.volume_id is None:  # new logins for a new volume: nothing else opens with them
            ssm = clients.client("ssm")
            undo.append((f"owner credentials {owner}", lambda: ssm.delete_parameter(Name=owner)))
        parameters = [tailnet_credential_parameter(config), owner]
        parameters += [
            p for p in (config.providers.anthropic_api_key_parameter, config.providers.openai_api_key_parameter) if p
        ]
        if config.services.gdrive.enabled:  # its rclone config, when the owner stores one
            parameters.append(config.services.gdrive.rclone_config_parameter)
        key = config.data_volume.kms_key_id
        key_arn = clients.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"] if key else None
        policy = iam.instance_policy(
            config.name,
            plan.instance,
            config.aws.region,
            clients.account_id,
            parameters,
            volume_key_arn=key_arn,
            parameter_key_arns=iam.parameter_key_arns(clients.client("ssm"), clients.client("kms"), parameters),
        )
        if iam.ensure_role(clients.iam, role, policy, names.tags(config.name, plan.instance)):
            log(f"created role and instance profile {role}")
            undo.append((f"role {role}", lambda: iam.delete_role(clients.iam, role)))
        _ensure_snapshots(clients, config, plan, volume_id, undo, log)
        template_id, version = _put_template(ec2, config, plan, group_id, role, undo, log)
        instance_id = start_in_group(clients, config, plan, template_id, undo, log)
        if plan.schedule is not None:  # after the group exists; a new group's are removed with it
            group_schedule.apply(clients.autoscaling, plan.schedule, log)
        log(f"launched {instance_id} from {plan.ami_id} (launch template version {version})")
    except Exception as exc:
        removed = _roll_back(undo, log)
        kept = ", ".join(_kept(config, plan)) or "nothing"
        detail = exc.response["Error"]["Message"] if hasattr(exc, "response") else str(exc)
        raise LaunchError(
            f"launch of {plan.instance} failed: {detail}. Rolled back: {', '.join(removed) or 'nothing was created'}; "
            f"kept: {kept}."
        ) from exc
    created = [what for what, _ in undo if not what.startswith(NEW_VERSION)]  # a version is not a resource
    return LaunchResult(instance_id, volume_id, version, created)


def _kept(config: PlatformConfig, plan: LaunchPlan) -> list[str]:
    """What a failed launch leaves on purpose: what existed before it, which a later launch reuses."""
    kept = []
    if plan.volume_id:
        kept.append(f"data volume {plan.volume_id}")
        kept.append(f"owner credentials {owner_credentials.parameter_name(config, plan.instance)} (they open its apps)")
    if plan.security_group_id:
        kept.append(f"security group {plan.security_group_id}")
    if plan.role_exists:
        kept.append(f"role {names.role_name_for(config.name, plan.instance)}")
    if plan.snapshot_role_exists:
        kept.append(f"snapshot role {names.snapshot_role_name(config.name)}")
    if plan.snapshot_policy.action == "update":
        kept.append(f"snapshot policy {plan.snapshot_policy.policy_id} (as the config has it)")
    elif plan.snapshot_policy.action == "keep":
        kept.append(f"snapshot policy {plan.snapshot_policy.policy_id}")
    if plan.template_id:
        kept.append(f"launch template {plan.template_id} (its default version as before)")
    if plan.group_exists:
        kept.append(f"auto scaling group {plan.group_name}")
    return kept


def _ensure_snapshots(clients: AwsClients, config: PlatformConfig, plan: LaunchPlan, volume_id: str, undo, log):
    """The data volume under the platform's snapshot policy: its target tag, the role DLM assumes, the
    policy itself (created, updated or left as it is, as planned)."""
    if plan.volume_id and plan.volume_lacks_snapshot_tag:
        clients.ec2.create_tags(Resources=[volume_id], Tags=[{"Key": names.SNAPSHOT_POLICY_TAG, "Value": config.name}])
        log(f"tagged data volume {volume_id} {names.SNAPSHOT_POLICY_TAG}={config.name}")
    if plan.snapshot_policy.action == "off":
        return
    account = clients.account_id
    policy = snapshot_role.role_policy(config, account, snapshot_role.copy_key_arns(clients, config))
    role_arn, created = snapshot_role.ensure_role(clients.iam, config, policy)
    role = names.snapshot_role_name(config.name)
    if created:
        log(f"created snapshot role {role}")
        undo.append((f"snapshot role {role}", lambda: snapshot_role.delete_role(clients.iam, config.name)))
    made = snapshot_policy.apply_policy(clients.dlm, config, plan.snapshot_policy, role_arn, created, log)
    if made:
        undo.append((f"snapshot policy {made}", lambda: clients.dlm.delete_lifecycle_policy(PolicyId=made)))


def _create_volume(ec2: Any, config: PlatformConfig, plan: LaunchPlan, undo: list, log) -> str:
    settings = config.data_volume
    arguments: dict[str, Any] = {
        "AvailabilityZone": plan.zone,
        "Size": settings.size_gib,
        "VolumeType": settings.type,
        "Encrypted": settings.encrypted,
        "TagSpecifications": [
            {
                "ResourceType": "volume",
                "Tags": names.tags(
                    config.name,
                    plan.instance,
                    **{names.ROLE_TAG: names.DATA_ROLE, names.SNAPSHOT_POLICY_TAG: config.name},
                ),
            }
        ],
    }
    if settings.iops is not None:
        arguments["Iops"] = settings.iops
    if settings.throughput_mibps is not None:
        arguments["Throughput"] = settings.throughput_mibps
    if settings.kms_key_id:
        arguments["KmsKeyId"] = settings.kms_key_id
    volume_id = ec2.create_volume(**arguments)["VolumeId"]
    # A brand-new volume holds no data yet: removing it on a failed launch loses nothing.
    undo.append((f"new data volume {volume_id}", lambda: ec2.delete_volume(VolumeId=volume_id)))
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 2, "MaxAttempts": 60})
    log(f"created data volume {volume_id} in {plan.zone}")
    return volume_id


def root_volume(config: PlatformConfig) -> dict:
    ebs = {"VolumeSize": config.image.root_volume_size_gib, "VolumeType": "gp3", "DeleteOnTermination": True}
    if config.image.root_volume_initialization_rate_mibps:
        ebs["VolumeInitializationRate"] = config.image.root_volume_initialization_rate_mibps
    return ebs


def _put_template(ec2: Any, config: PlatformConfig, plan: LaunchPlan, group_id: str, role: str, undo, log):
    data = {
        "ImageId": plan.ami_id,
        "InstanceType": config.aws.instance_type,
        "IamInstanceProfile": {"Name": role},
        # The subnet is the group's (VPCZoneIdentifier): with a network interface, the security
        # groups must be on it.
        "NetworkInterfaces": [{"DeviceIndex": 0, "Groups": [group_id]}],
        # IMDSv2 only, and one hop: containers on the instance cannot reach the metadata service.
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
        # The root volume comes from the AMI's snapshot, encrypted by the bake (image.encrypted); EBS takes
        # no encryption setting for a volume made from a snapshot.
        "BlockDeviceMappings": [{"DeviceName": plan.root_device, "Ebs": root_volume(config)}],
        "UserData": base64.b64encode(plan.user_data.payload).decode(),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": names.tags(config.name, plan.instance)},
            {"ResourceType": "volume", "Tags": names.tags(config.name, plan.instance, **{names.ROLE_TAG: "root"})},
        ],
    }
    name = names.launch_template_name(config.name, plan.instance)
    if plan.template_id is None:
        created = ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=data,
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": names.tags(config.name, plan.instance)}],
        )["LaunchTemplate"]
        template_id = created["LaunchTemplateId"]
        undo.append((f"launch template {name}", lambda: ec2.delete_launch_template(LaunchTemplateId=template_id)))
        log(f"created launch template {name}")
        return template_id, created["LatestVersionNumber"]
    template_id = plan.template_id
    previous = ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0]
    version = ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData=data)[
        "LaunchTemplateVersion"
    ]["VersionNumber"]
    ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(version))

    def restore() -> None:  # the default it had, and no version left behind by a failed launch
        ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=str(previous["DefaultVersionNumber"]))
        ec2.delete_launch_template_versions(LaunchTemplateId=template_id, Versions=[str(version)])

    undo.append((f"{NEW_VERSION} {version} of launch template {name}", restore))
    log(f"launch template {name}: version {version}")
    return plan.template_id, version


def start_in_group(clients: AwsClients, config: PlatformConfig, plan: LaunchPlan, template_id: str, undo, log) -> str:
    """Create the group of one (or bring it back to one instance) and wait for its instance. EC2
    Auto Scaling retries a refused launch by itself, such as a new instance profile that IAM has not
    yet made visible to EC2."""
    name = plan.group_name
    tags = names.tags(config.name, plan.instance)
    if group.ensure(clients.autoscaling, name, template_id, plan.subnet_id, tags):
        log(f"created auto scaling group {name} (one instance, replaced when it fails)")
        undo.append((f"auto scaling group {name}", lambda: group.delete(clients.autoscaling, clients.ec2, name, log)))
    return group.wait_for_instance(clients.autoscaling, name)


def _roll_back(undo: list[tuple[str, Callable[[], None]]], log) -> list[str]:
    removed = []
    for what, action in reversed(undo):
        try:
            action()
            removed.append(what)
            log(f"rolled back {what}")
        except Exception as exc:  # keep going: every other resource still has to go
            log(f"could not roll back {what}: {exc}")
    return removed


def xen_refusal(described: dict) -> str | None:
    """Why an instance type (as DescribeInstanceTypes gives it) cannot run the platform, or None. The
    agent finds the data volume by its NVMe serial: Xen types (t2, m4, c4…) give it none, and the
    first boot would wait for a device that never shows up."""
    if described.get("Hypervisor") != "xen":
        return None
    return (
        f"aws.instance_type: {described['InstanceType']} runs on Xen, where EBS volumes carry no NVMe serial "
        "and the agent cannot find the data volume; choose a Nitro type (m6i, m7i, t3, g5, …)"
    )


def _require_nitro(ec2: Any, instance_type: str) -> None:
    found = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    if found and (refusal := xen_refusal(found[0])):
        raise LaunchError(f"{refusal}. Nothing was changed.")


def find_image(ec2: Any, platform: str, ami_id: str | None, variant: str | None = None) -> dict:
    """--ami's image, or the newest baked one; with `variant`, the newest of that variant (the
    instance type's: builder/aws/gpu.py), and an error naming aws.instance_type when only the other
    variant was baked."""
    if ami_id:
        images = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [ami_id]}])["Images"]
        if not images or images[0].get("State") != "available":
            raise LaunchError(f"image {ami_id} does not exist or is deregistered in this region")
        return images[0]
    images = ec2.describe_images(
        Owners=["self"],
        Filters=[
            {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    if not images:
        raise LaunchError(
            f"no baked image of platform {platform} in this region: run `builder bake --target aws`, or pass --ami"
        )
    if variant is not None:
        fitting = [image for image in images if _variant(image) == variant]
        if not fitting:
            other = _variant(images[0])
            raise LaunchError(
                f"aws.instance_type: the baked images of platform {platform} are {other} images, and this "
                f"instance type needs the {variant} image"
                + (" (it has an NVIDIA GPU, by EC2's GpuInfo)" if variant == gpu.GPU else " (it has no NVIDIA GPU)")
                + ": bake one with this instance type (`builder bake --target aws`), or choose a type that fits "
                f"the {other} image. Nothing was changed."
            )
        images = fitting
    return max(images, key=lambda image: image.get("CreationDate", ""))


def _variant(image: dict) -> str:
    from builder.bake.aws_images import TAG_VARIANT

    tags = {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}
    return tags.get(TAG_VARIANT, gpu.CPU)  # images baked before the GPU image are cpu images


def find_template(ec2: Any, name: str) -> dict | None:
    templates = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [name]}])
    return templates["LaunchTemplates"][0] if templates["LaunchTemplates"] else None


def _instance_state(ec2: Any, instance_id: str) -> str:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["State"]["Name"] if reservations else "unknown"
