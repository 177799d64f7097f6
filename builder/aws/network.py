"""Where an instance goes: a subnet in its data volume's zone, behind a security group that lets in
nothing but Tailscale's WireGuard port (and SSH only from the CIDRs the config names)."""

from __future__ import annotations

from typing import Any

from builder.aws import names
from builder.errors import BuilderError


class NetworkError(BuilderError):
    pass


def default_vpc(ec2: Any) -> str:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise NetworkError("this region has no default VPC: set aws.subnet_id in the platform config")
    return vpcs[0]["VpcId"]


def subnet_for(ec2: Any, subnet_id: str | None, zone: str | None) -> dict:
    """The configured subnet (checked against the zone), or a default-VPC subnet in the zone."""
    if subnet_id:
        found = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])["Subnets"]
        if not found:
            raise NetworkError(f"aws.subnet_id {subnet_id} does not exist in this region")
        if zone and found[0]["AvailabilityZone"] != zone:
            raise NetworkError(
                f"aws.subnet_id {subnet_id} is in {found[0]['AvailabilityZone']}, but the data volume is in {zone}: "
                "a volume cannot cross zones; pick a subnet in that zone"
            )
        return found[0]
    filters = [{"Name": "vpc-id", "Values": [default_vpc(ec2)]}]
    if zone:
        filters.append({"Name": "availability-zone", "Values": [zone]})
    subnets = sorted(ec2.describe_subnets(Filters=filters)["Subnets"], key=lambda s: s["AvailabilityZone"])
    if not subnets:
        raise NetworkError(
            f"the default VPC has no subnet in {zone}, where the data volume is: create one there, or set "
            "aws.subnet_id to a subnet in that zone"
        )
    return subnets[0]


def desired_ingress(ssh_cidrs: list[str]) -> set[tuple[str, int, str]]:
    rules = {("udp", names.TAILSCALE_PORT, "0.0.0.0/0"), ("udp", names.TAILSCALE_PORT, "::/0")}
    rules |= {("tcp", 22, cidr) for cidr in ssh_cidrs}
    return rules


def find_security_group(ec2: Any, platform: str, vpc_id: str) -> str | None:
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [names.security_group_name(platform)]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ]
    )["SecurityGroups"]
    return groups[0]["GroupId"] if groups else None


def ensure_security_group(ec2: Any, platform: str, vpc_id: str, ssh_cidrs: list[str]) -> tuple[str, bool]:
    """The platform's group in this VPC with exactly the wanted inbound rules; (id, created now)."""
    group_id = find_security_group(ec2, platform, vpc_id)
    created = group_id is None
    if created:
        group_id = ec2.create_security_group(
            GroupName=names.security_group_name(platform),
            Description="AI platform instances: Tailscale only",
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": names.tags(platform)}],
        )["GroupId"]
    current = _ingress(ec2, group_id)
    wanted = desired_ingress(ssh_cidrs)
    if current - wanted:
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=_permissions(current - wanted))
    if wanted - current:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=_permissions(wanted - current))
    return group_id, created


def _ingress(ec2: Any, group_id: str) -> set[tuple[str, int, str]]:
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    rules = set()
    for permission in group.get("IpPermissions", []):
        for ip_range in permission.get("IpRanges", []):
            rules.add((permission["IpProtocol"], permission.get("FromPort", -1), ip_range["CidrIp"]))
        for ip_range in permission.get("Ipv6Ranges", []):
            rules.add((permission["IpProtocol"], permission.get("FromPort", -1), ip_range["CidrIpv6"]))
    return rules


def _permissions(rules: set[tuple[str, int, str]]) -> list[dict]:
    permissions = []
    for protocol, port, cidr in sorted(rules):
        ranges = {"Ipv6Ranges": [{"CidrIpv6": cidr}]} if ":" in cidr else {"IpRanges": [{"CidrIp": cidr}]}
        permissions.append({"IpProtocol": protocol, "FromPort": port, "ToPort": port, **ranges})
    return permissions
