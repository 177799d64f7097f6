"""`builder preflight --target aws`: what an account lacks, found by reading only, before a bake or launch.

Each check is one function of (clients, config) that returns a `Check`: ok, fail (the bake or launch
would fail; the line says how to fix it) or warn (could not be read, e.g. a permission the caller
lacks; it never stops anything). `bake --target aws` and `launch` run their own subset first and
stop on a failure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from builder.aws import gpu, network
from builder.aws.clients import AwsClients
from builder.aws.errors import explain
from builder.aws.launch import xen_refusal
from builder.aws.secrets import OPTIONAL_SECRETS, secret_parameters
from builder.config.schema import PlatformConfig
from builder.words import counted

AUTOSCALING_ROLE = "AWSServiceRoleForAutoScaling"
# Tailscale reaches its control server and relays over the internet; the agent calls EC2, SSM and
# STS. Both need a way out of the subnet.
NEEDS_A_WAY_OUT = "the agent's AWS calls and Tailscale need a way out"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "fail" or "warn"
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "fail": "FAIL", "warn": "warn"}[self.status]
        return f"{mark} {self.name}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")

    def to_json(self) -> dict:
        return asdict(self)


def _error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code, message = exc.response["Error"].get("Code"), exc.response["Error"].get("Message", "")
        if "<html" in message:  # an endpoint that answered with an error page, not the API
            message = "no API answer"
        return f"{code}: {message}".strip()
    return str(exc)


def credentials(clients: AwsClients, config: PlatformConfig) -> Check:
    from builder.aws.iam import partition_of

    try:
        me = clients.sts.get_caller_identity()
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        # The cause in words: a dead network or a region that does not answer is not a credential.
        what, fix = explain(exc) or (_error(exc), "")
        return Check("credentials", "fail", what, fix)
    return Check(
        "credentials",
        "ok",
        f"account {me['Account']} as {me['Arn']}; region {config.aws.region} "
        f"(partition {partition_of(config.aws.region)})",
    )


def subnet(clients: AwsClients, config: PlatformConfig) -> Check:
    """The subnet the instance (and the bake's build instance) lands in, and its way out."""
    try:
        found, default = _subnet_and_default_route(clients.ec2, config)
    except network.NetworkError as exc:
        return Check("subnet", "fail", str(exc), "set aws.subnet_id to a subnet in the data volume's zone")
    name = _subnet_name(found)
    if default is None:
        return Check(
            "subnet",
            "fail",
            f"{name} has no default route: {NEEDS_A_WAY_OUT}",
            "route 0.0.0.0/0 to a NAT gateway, or to an internet gateway with public IPs on launch",
        )
    if default.get("GatewayId", "").startswith("igw-"):
        if not found.get("MapPublicIpOnLaunch"):
            return Check(
                "subnet",
                "fail",
                f"{name} routes to {default['GatewayId']} but gives instances no public IP: {NEEDS_A_WAY_OUT}",
                f"aws ec2 modify-subnet-attribute --subnet-id {found['SubnetId']} --map-public-ip-on-launch, "
                "or use a subnet behind a NAT gateway",
            )
        return Check("subnet", "ok", f"{name}, out through {default['GatewayId']} with public IPs")
    return Check("subnet", "ok", f"{name}, out through {_way_out(default)}")


def build_ssh(clients: AwsClients, config: PlatformConfig) -> Check:
    """Whether Packer, on this host, can SSH to the bake's build instance. packer.pkr.hcl gives it
    no other way in (no Session Manager, no bastion): Packer connects to the instance's public IP,
    or its private one when it has none, and the temporary security group admits SSH only from this
    host's public address (temporary_security_group_source_public_ip). In a subnet without an
    internet gateway nothing outside the VPC reaches the instance, and a connection to its private
    address comes from a private one the group does not admit, even from inside the VPC. (Packer 1.6.6's group
    admits any address, so there a host inside the VPC would get in; the check holds to current
    Packer's.)"""
    try:
        found, default = _subnet_and_default_route(clients.ec2, config)
    except network.NetworkError:
        return Check("build SSH", "warn", "no subnet to check (see the subnet check)")
    name, gateway = _subnet_name(found), (default or {}).get("GatewayId", "")
    if default is None or (gateway.startswith("igw-") and not found.get("MapPublicIpOnLaunch")):
        return Check("build SSH", "warn", f"{name} has no way in or out yet (see the subnet check)")
    if gateway.startswith("igw-"):
        return Check("build SSH", "ok", f"the build instance gets a public IP in {name}, reached through {gateway}")
    way = _way_out(default)
    return Check(
        "build SSH",
        "fail",
        f"{name} goes out through {way}, not an internet gateway: Packer's SSH cannot reach the build "
        "instance from outside the VPC, nor from inside it (the bake's security group admits only this "
        "host's public address; packer.pkr.hcl has no Session Manager or bastion option)",
        "bake in a public subnet (a 0.0.0.0/0 route to an internet gateway, public IPs on launch): "
        "`builder --set aws.subnet_id=subnet-... bake --target aws`; the instances may stay in this one",
    )


# The platform's Docker network (image/rootfs/opt/ai-platform/stacks/*/compose.yaml: fixed addresses,
# the edge at .2); fixed, not configurable: every compose file and the egress policy name its addresses.
DOCKER_NETWORK = "172.20.0.0/16"


def vpc_range(clients: AwsClients, config: PlatformConfig) -> Check:
    """A warning when the launch subnet's VPC overlaps the platform's Docker network: on the instance the
    bridge's route wins, so the VPC's addresses there are out of reach, the VPC resolver (its base + 2,
    172.20.0.2 in a 172.20.0.0/16 VPC) among them, which is the edge's fixed address."""
    try:
        found = network.subnet_for(clients.ec2, config.aws.subnet_id, config.data_volume.availability_zone)
        [vpc] = clients.ec2.describe_vpcs(VpcIds=[found["VpcId"]])["Vpcs"]
    except network.NetworkError:
        return Check("VPC range", "warn", "no subnet to check (see the subnet check)")
    blocks = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", []) if a.get("CidrBlock")]
    blocks = blocks or [vpc["CidrBlock"]]
    docker = ipaddress.ip_network(DOCKER_NETWORK)
    overlapping = [block for block in blocks if ipaddress.ip_network(block).overlaps(docker)]
    if not overlapping:
        return Check("VPC range", "ok", f"{found['VpcId']} ({', '.join(blocks)}) is clear of {DOCKER_NETWORK}")
    resolver = ipaddress.ip_network(overlapping[0])[2]
    clash = (
        f"; its resolver {resolver} is the edge's fixed address: the instance resolves no name"
        if resolver in docker
        else ""
    )
    return Check(
        "VPC range",
        "warn",
        f"{found['VpcId']}'s {', '.join(overlapping)} overlaps the platform's Docker network {DOCKER_NETWORK} "
        f"(fixed): the instance cannot reach those VPC addresses{clash}",
        "launch into a VPC (aws.subnet_id) whose ranges leave out 172.20.0.0/16",
    )


def _subnet_and_default_route(ec2: Any, config: PlatformConfig) -> tuple[dict, dict | None]:
    """The subnet (see network.subnet_for, whose NetworkError this raises) and its usable 0.0.0.0/0 route."""
    found = network.subnet_for(ec2, config.aws.subnet_id, config.data_volume.availability_zone)
    table = _route_table(ec2, found)
    default = next(
        (route for route in (table or {}).get("Routes", []) if route.get("DestinationCidrBlock") == "0.0.0.0/0"),
        None,
    )
    if default is not None and default.get("State") == "blackhole":
        default = None
    return found, default


def _subnet_name(found: dict) -> str:
    return f"{found['SubnetId']} ({found['AvailabilityZone']}, {found['VpcId']})"


def _way_out(route: dict) -> str:
    return route.get("NatGatewayId") or route.get("TransitGatewayId") or route.get("NetworkInterfaceId") or "?"


def _route_table(ec2: Any, found: dict) -> dict | None:
    explicit = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [found["SubnetId"]]}])
    if explicit["RouteTables"]:
        return explicit["RouteTables"][0]
    main = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [found["VpcId"]]}, {"Name": "association.main", "Values": ["true"]}]
    )
    return main["RouteTables"][0] if main["RouteTables"] else None


def _zone(ec2: Any, config: PlatformConfig) -> str | None:
    """The data volume's zone, or (none configured) the zone of the subnet a launch would pick."""
    if config.data_volume.availability_zone:
        return config.data_volume.availability_zone
    try:
        return network.subnet_for(ec2, config.aws.subnet_id, None)["AvailabilityZone"]
    except network.NetworkError:
        return None


def instance_type(clients: AwsClients, config: PlatformConfig) -> Check:
    ec2 = clients.ec2
    wanted, zone = config.aws.instance_type, _zone(ec2, config)
    if zone is None:
        return Check("instance type", "warn", f"no zone to look in (see the subnet check); {wanted} not checked")
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [wanted]}, {"Name": "location", "Values": [zone]}],
    )["InstanceTypeOfferings"]
    if not offered:
        return Check(
            "instance type",
            "fail",
            f"{wanted} is not offered in {zone}, where the data volume is",
            "choose another aws.instance_type (`aws ec2 describe-instance-type-offerings --location-type "
            f"availability-zone --filters Name=location,Values={zone}`)",
        )
    described = ec2.describe_instance_types(InstanceTypes=[wanted])["InstanceTypes"][0]
    if refusal := xen_refusal(described):
        return Check("instance type", "fail", refusal)
    vcpus = described["VCpuInfo"]["DefaultVCpus"]
    memory = described["MemoryInfo"]["SizeInMiB"] // 1024
    detail = f"{wanted} in {zone}: Nitro, {vcpus} vCPUs, {memory} GiB"
    gpus = gpu.gpus_of(described)  # EC2's GpuInfo: the image variant follows it (builder/aws/gpu.py)
    if gpus is not None:
        detail += f", {gpus.text()}: the {gpu.variant_of(described)} image"
    return Check("instance type", "ok", detail)


def _family_letters(instance_type: str) -> str:
    """The family's letters, as the On-Demand quotas name them: m6i.large -> M, vt1.3xlarge -> VT."""
    return re.match(r"[a-z]+", instance_type.split(".")[0].split("-")[0]).group(0).upper()


def _quota_for(quotas: list[dict], letters: str) -> dict | None:
    """The 'Running On-Demand ... instances' quota whose name lists these family letters."""
    for quota in quotas:
        name = quota.get("QuotaName", "")
        listed = re.findall(r"[A-Za-z]+", name.removeprefix("Running On-Demand"))
        if name.startswith("Running On-Demand") and name.endswith("instances") and letters in listed:
            return quota
    return None


def vcpu_quota(clients: AwsClients, config: PlatformConfig) -> Check:
    """Headroom in the On-Demand vCPU quota of the instance type's family, by Service Quotas' own
    names (no quota code is assumed) and the vCPUs of the instances running in that family now."""
    ec2 = clients.ec2
    wanted = config.aws.instance_type
    try:
        quotas = []
        paginator = clients.client("service-quotas").get_paginator("list_service_quotas")
        for page in paginator.paginate(ServiceCode="ec2"):
            quotas += page["Quotas"]
    except (ClientError, BotoCoreError) as exc:
        return Check("vCPU quota", "warn", f"could not read EC2's quotas ({_error(exc)}); not checked")
    letters = _family_letters(wanted)
    quota = _quota_for(quotas, letters)
    if quota is None:
        return Check("vCPU quota", "warn", f"no On-Demand quota names family {letters}; not checked")
    types = {wanted}
    running = []
    filters = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                if _quota_for([quota], _family_letters(instance["InstanceType"])):
                    running.append(instance["InstanceType"])
                    types.add(instance["InstanceType"])
    vcpus = {
        t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"]
        for t in ec2.describe_instance_types(InstanceTypes=sorted(types))["InstanceTypes"]
    }
    used, limit, needed = sum(vcpus[t] for t in running), int(quota["Value"]), vcpus[wanted]
    detail = f"{quota['QuotaName']}: {used} of {limit} vCPUs in use, {wanted} needs {needed}"
    if used + needed > limit:
        return Check(
            "vCPU quota",
            "fail",
            detail,
            f"ask for more in Service Quotas (ec2 {quota['QuotaCode']}), or stop other instances of that family",
        )
    return Check("vCPU quota", "ok", detail)


def ssm_parameters(clients: AwsClients, config: PlatformConfig) -> Check:
    """The parameters the instance reads: the Tailscale key (required), provider keys (when set)."""
    named = [p for name, p in secret_parameters(config).items() if p and name not in OPTIONAL_SECRETS]
    try:
        found = {
            p["Name"]: p
            for p in clients.client("ssm").describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": named}]
            )["Parameters"]
        }
    except (ClientError, BotoCoreError) as exc:
        return Check("SSM parameters", "warn", f"could not list them ({_error(exc)}); not checked")
    missing = [name for name in named if name not in found]
    if missing:
        return Check(
            "SSM parameters",
            "fail",
            f"{', '.join(missing)} not found in {config.aws.region}",
            "store each with `builder secrets set` (SecureString)"
            + (
                "; the OAuth client with `builder secrets set-tailscale-oauth`"
                if config.tailscale.oauth_client_parameter in missing
                else ""
            ),
        )
    keys = sorted({p.get("KeyId", "alias/aws/ssm") for p in found.values() if p.get("Type") == "SecureString"})
    return Check("SSM parameters", "ok", f"{', '.join(named)} present (keys: {', '.join(keys) or 'none'})")


def kms_keys(clients: AwsClients, config: PlatformConfig) -> Check:
    """Every customer key the config names, and those of its SecureString parameters: there and
    enabled; the AMI's key usable by Auto Scaling, and not AWS-managed when the AMI is shared."""
    region = config.aws.region
    wanted = []  # (what names it, key, region)
    if config.data_volume.kms_key_id:
        wanted.append(("data_volume.kms_key_id", config.data_volume.kms_key_id, region))
    if config.image.kms_key_id:
        wanted.append(("image.kms_key_id", config.image.kms_key_id, region))
    for copy_region, key in sorted(config.image.region_kms_key_ids.items()):
        wanted.append((f"image.region_kms_key_ids.{copy_region}", key, copy_region))
    problems, fixes, seen, unread = [], [], [], []
    try:
        wanted += [(f"SSM parameter {name}", key, region) for name, key in _parameter_keys(clients, config)]
    except (ClientError, BotoCoreError) as exc:
        unread.append(f"the SSM parameters' keys not read ({_error(exc)})")
    if not wanted:
        return Check("KMS keys", "warn" if unread else "ok", "; ".join(unread) or "none configured (aws/ebs)")
    shared = bool(config.image.share_with_accounts) and config.image.encrypted
    kms_of: dict[str, Any] = {}  # a key is found only through KMS in its own region
    for setting, key, key_region in wanted:
        if key_region not in kms_of:
            kms_of[key_region] = clients.client("kms", None if key_region == region else key_region)
        kms = kms_of[key_region]
        try:
            metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"{setting} {key}: {_error(exc)}")
            fixes.append(f"check {setting} (a key of {key_region})")
            continue
        if metadata.get("KeyState") != "Enabled":
            problems.append(f"{setting} {key} is {metadata.get('KeyState')}")
            fixes.append(f"enable {key}")
            continue
        seen.append(f"{setting} {metadata['KeyId']} enabled")
        ami_key = setting.startswith("image.")
        # AWS refuses to share an AMI whose snapshots are under an AWS-managed key (aws/ebs), whichever
        # name the config gives it; `config validate` catches only the alias.
        if ami_key and shared and metadata.get("KeyManager") == "AWS":
            problems.append(f"{setting} {key} is AWS-managed, and image.share_with_accounts is set")
            fixes.append(
                f"set {setting} to a customer-managed key of {key_region} whose key policy lets "
                f"{', '.join(config.image.share_with_accounts)} use it (AWS cannot share AMIs under aws/ebs)"
            )
        # The group launches from the AMI as its service-linked role, which a customer key must name.
        customer_ami_key = setting == "image.kms_key_id" and metadata.get("KeyManager") == "CUSTOMER"
        if customer_ami_key and not _autoscaling_may_use(kms, metadata):
            problems.append(f"{setting} {key}: its key policy and grants do not name {AUTOSCALING_ROLE}")
            fixes.append(
                f"let {AUTOSCALING_ROLE} use {key} (AWS: Required AWS KMS key policy for use with "
                "encrypted volumes), or the group cannot launch from the AMI"
            )
    if problems:
        return Check("KMS keys", "fail", "; ".join(problems + unread), "; ".join(fixes))
    return Check("KMS keys", "warn" if unread else "ok", "; ".join(seen + unread))


def _parameter_keys(clients: AwsClients, config: PlatformConfig) -> list[tuple[str, str]]:
    """(parameter, key) for each stored SecureString parameter the config names under a key of its
    own: aws/ssm, SSM's default, is AWS-managed and always there. The instance decrypts with it."""
    named = [parameter for parameter in secret_parameters(config).values() if parameter]
    found = clients.client("ssm").describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": named}]
    )["Parameters"]
    return [
        (p["Name"], p["KeyId"])
        for p in sorted(found, key=lambda p: p["Name"])
        if p.get("Type") == "SecureString" and p.get("KeyId") and p["KeyId"] != "alias/aws/ssm"
    ]


def _autoscaling_may_use(kms: Any, metadata: dict) -> bool:
    try:
        policy = kms.get_key_policy(KeyId=metadata["KeyId"], PolicyName="default")["Policy"]
    except (ClientError, BotoCoreError):
        policy = ""
    if AUTOSCALING_ROLE in policy:
        return True
    try:
        grants = kms.list_grants(KeyId=metadata["KeyId"])["Grants"]
    except (ClientError, BotoCoreError):
        return False
    return any(AUTOSCALING_ROLE in grant.get("GranteePrincipal", "") for grant in grants)


def base_ami(clients: AwsClients, config: PlatformConfig) -> Check:
    from builder.bake.bake import base_ami_owner, newest_base_ami
    from builder.errors import BuilderError

    variant = gpu.instance_variant(clients.ec2, config.aws.instance_type)
    settings = (
        "image.gpu_base_ami_owner / image.gpu_base_ami_name_filter"
        if variant == gpu.GPU
        else ("image.base_ami_owner / image.base_ami_name_filter")
    )
    try:
        found = newest_base_ami(clients.ec2, config, variant)
    except BuilderError as exc:
        return Check("base AMI", "fail", str(exc), f"set {settings}")
    owner = config.image.gpu_base_ami_owner if variant == gpu.GPU else base_ami_owner(config)
    return Check("base AMI", "ok", f"{found} (owner {owner}) for the {variant} image")


ALL: dict[str, Callable[[AwsClients, PlatformConfig], Check]] = {
    "credentials": credentials,
    "subnet": subnet,
    "VPC range": vpc_range,
    "build SSH": build_ssh,
    "instance type": instance_type,
    "vCPU quota": vcpu_quota,
    "SSM parameters": ssm_parameters,
    "KMS keys": kms_keys,
    "base AMI": base_ami,
}
FOR_LAUNCH = ("credentials", "subnet", "VPC range", "instance type", "vCPU quota", "SSM parameters", "KMS keys")
FOR_BAKE = ("credentials", "subnet", "build SSH", "instance type", "KMS keys", "base AMI")
# No vCPU quota: an upgrade ends the instance before it starts the next, of the same type.
FOR_UPGRADE = ("credentials", "subnet", "VPC range", "instance type", "SSM parameters", "KMS keys")


def run(clients: AwsClients, config: PlatformConfig, names: tuple[str, ...] = tuple(ALL)) -> list[Check]:
    checks = []
    for name in names:
        if name != "credentials" and checks and checks[0].status == "fail":
            break  # without credentials every other check only repeats that
        checks.append(ALL[name](clients, config))
    return checks


def summary(checks: list[Check], planned: int | None = None) -> str:
    """The last line of `builder preflight`: how many of how many checks failed (or that all passed)."""
    ran = len(checks)
    failed = sum(check.status == "fail" for check in checks)
    warned = sum(check.status == "warn" for check in checks)
    warnings = f", {counted(warned, 'warning')}" if warned else ""
    if not failed:
        return f"preflight: ok ({counted(ran, 'check')} passed{warnings})"
    line = f"preflight: FAILED: {failed} of {counted(ran, 'check')} failed{warnings}"
    skipped = (planned or ran) - ran
    if skipped:
        line += f"; {counted(skipped, 'other check')} not run (without credentials they only repeat that)"
    return line


def require(
    clients: AwsClients,
    config: PlatformConfig,
    names: tuple[str, ...],
    what: str,
    note: Callable[[str], None] = lambda _line: None,
) -> list[Check]:
    """Run `names` before `what`; raise with every failed line (nothing has been changed). Each
    warning goes to `note`."""
    from builder.errors import BuilderError

    checks = run(clients, config, names)
    for check in checks:
        if check.status == "warn":
            note(f"note: {check.line()}")
    failed = [check for check in checks if check.status == "fail"]
    if failed:
        lines = "\n".join(f"  {check.line()}" for check in failed)
        raise BuilderError(
            f"{what} stopped before changing anything; the account lacks:\n{lines}\n"
            "(`builder preflight` runs every check)"
        )
    return checks
