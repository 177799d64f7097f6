"""The instance's egress policy file, /etc/ai-platform/egress.json, written by the agent's `stacks`
step from the per-instance config (`egress`: the owner's allowed ranges, the services cut off the
internet) and the network the instance runs in; firstboot/egress.py turns it into rules.

The VPC's ranges: on AWS from the instance metadata (IMDSv2: the primary interface's MAC, then
`network/interfaces/macs/<mac>/vpc-ipv4-cidr-blocks`, every block of the VPC, secondary ones too).
On the local target none: the guest sits on qemu's user network (10.0.2.0/24), whose 10.0.2.2 is
the developer machine's loopback, where the tests' mirrors are served; it is the developer's own
machine, so it is left open (the tailnet, link-local and the guest's own ports are closed as anywhere).
0644: the file holds ranges and service names, no secret.
"""

from __future__ import annotations

import json
from pathlib import Path

from firstboot import egress, identity

POLICY_NAME = "egress.json"
_METADATA = "/latest/meta-data"


class VpcUnknown(Exception):
    """The metadata service did not give the VPC's ranges (a passing outage, or not EC2)."""


def vpc_cidr_blocks(endpoint: str, timeout: float = 2) -> list[str]:
    """Every IPv4 CIDR block of the instance's VPC, from IMDSv2."""
    try:
        token = identity.metadata_request(
            "PUT",
            f"{endpoint}/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": str(identity.TOKEN_TTL_SECONDS)},
            timeout,
        )
        headers = {"X-aws-ec2-metadata-token": token}
        mac = identity.metadata_request("GET", f"{endpoint}{_METADATA}/mac", headers, timeout).strip()
        blocks = identity.metadata_request(
            "GET", f"{endpoint}{_METADATA}/network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks", headers, timeout
        )
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise VpcUnknown(f"the VPC's ranges from the instance metadata at {endpoint}: {exc}") from None
    return [line.strip() for line in blocks.splitlines() if line.strip()]


def write_policy(etc_dir: Path, document: dict) -> bool:
    """The policy file, written only when it changed; True when it did."""
    from firstboot.status import write_atomic

    path = etc_dir / POLICY_NAME
    text = json.dumps(document, indent=2) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    etc_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode=0o644)
    return True


def document_for(config, vpc: list[str]) -> dict:
    """The file's content for this instance (its config already validated the ranges and names)."""
    return egress.policy_document(vpc, config.egress_allow, config.egress_offline)
