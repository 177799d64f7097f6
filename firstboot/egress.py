"""The egress policy for the platform's containers, enforced on the host with iptables.

Containers reach the internet (apps need their model providers) but not the VPC (or the local
instance's own network), not the tailnet (100.64.0.0/10), not link-local addresses (IMDS, AWS's time
and DNS addresses), and none of the host's own ports. The platform's containers reach each other:
traffic that leaves by one of the platform's bridges is left to Docker's own chains. What the owner
allows (`security.egress.allow`) is reachable anyway; a service cut off the internet
(`services.NAME.internet: false`) reaches only the platform's containers and those allowed ranges.

Two chains of our own, so that nothing else's rules are touched and a re-apply replaces them whole
(iptables-restore --noflush swaps a chain's rules in one commit: no moment without them):
- EGRESS, jumped to from DOCKER-USER for packets that come in by a platform bridge (forwarded:
  to the internet, the VPC, the tailnet);
- HOST, jumped to from INPUT for the same packets addressed to the host itself.
Neither chain ever ACCEPTs: a packet it lets by RETURNs to Docker's chains, which still decide
(published ports, `internal: true` networks, the isolation between bridges).

DNS: Docker's embedded resolver forwards a container's queries from inside the container's network
namespace to the host's nameservers, which on AWS sit in the VPC (its base + 2) or at 169.254.169.253.
Port 53 to those nameservers (read at apply time) is let by; nothing else to them.

IPv6: the platform's networks are made without --ipv6 (ai-platform-stack, the compose files), so a
container has no IPv6 address or route: the tailnet's fd7a:115c:a1e0::/48 is out of its reach
without a rule, and none is written.

Re-applied whenever dockerd starts (docker.service.d/30-ai-platform-egress.conf): after a reboot
the kernel has no rules, and a new dockerd re-inserts only its own jump to DOCKER-USER; and by
ai-platform-egress.service, which the agent starts when it wrote a new policy file.

When the rules cannot be applied: fail open, loudly. Docker and the stacks keep running without
the rules; the failure is on the console and in the health report (firstboot/egress_report.py:
`ai-platform egress: NOT ENFORCED: ...`, health.json's `egress`, `builder status`), and the health
check tries again each minute. Why not a closed fallback (no forwarding out of the platform's
bridges): the platform promises data and availability first, and closed would take every app off
its model providers and the owner's workflows off the internet until a person steps in; the
failures to expect (iptables missing or its kernel backend refusing) would also refuse the
fallback's own rules; and an open instance is what every instance was before this policy. A policy
file that cannot be read is narrower: the defaults (tailnet, link-local, the host's ports closed)
are applied instead, and the report says so.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

POLICY_PATH = Path("/etc/ai-platform/egress.json")
RESOLV_CONF_PATHS = (Path("/run/systemd/resolve/resolv.conf"), Path("/etc/resolv.conf"))
TAILNET_V4 = "100.64.0.0/10"
LINK_LOCAL_V4 = "169.254.0.0/16"
# Every Docker bridge of the instance: the instance runs the platform alone. br-+ is iptables' prefix match.
PLATFORM_INTERFACES = ("br-+", "docker0")
# The services with a fixed address on the ai-platform network (their compose files): the ones a
# policy can cut off the internet by source address. tests/test_egress.py checks them against the files.
SERVICE_ADDRESSES = {
    "ollama": "172.20.0.10",
    "litellm": "172.20.0.11",
    "anythingllm": "172.20.0.20",
    "clawdbot": "172.20.0.21",
    "n8n": "172.20.0.40",
}
# Not signal_api: it is on ai-platform-signal alone, without a fixed address (only OpenClaw and the
# edge reach it), and Signal's servers are all it goes out for: off the internet it would be useless.


class EgressError(Exception):
    """A policy that cannot be applied (a bad address in the policy file, iptables refusing)."""


@dataclass(frozen=True)
class Policy:
    """What containers coming in by `interfaces` may reach. Every range is IPv4 CIDR text."""

    vpc: tuple[str, ...] = ()  # the VPC's CIDR blocks (AWS, from the instance metadata); none locally
    allow: tuple[str, ...] = ()  # the owner's additions: reachable whatever else says
    offline: tuple[str, ...] = ()  # source addresses cut off from all but the platform and `allow`
    host_ports: tuple[int, ...] = ()  # TCP ports of the host the containers may reach
    nameservers: tuple[str, ...] = ()  # the host's resolvers: port 53 stays open to them
    interfaces: tuple[str, ...] = PLATFORM_INTERFACES
    chain_prefix: str = "AIP"  # tests run beside the platform's own chains under another prefix
    blocked_always: tuple[str, ...] = field(default=(TAILNET_V4, LINK_LOCAL_V4))

    @property
    def egress_chain(self) -> str:
        return f"{self.chain_prefix}-EGRESS"

    @property
    def host_chain(self) -> str:
        return f"{self.chain_prefix}-HOST"

    def blocked(self) -> tuple[str, ...]:
        return (*self.blocked_always, *self.vpc)


def parse_cidr(value: str, where: str) -> str:
    """An IPv4 network in CIDR form, normalised; EgressError naming `where` otherwise."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError):
        raise EgressError(f"{where}: {value!r} is not an IPv4 network in CIDR form (such as 10.0.0.0/16)") from None
    if network.version != 4:
        raise EgressError(f"{where}: {value!r} is IPv6; the platform's networks are IPv4 only")
    return str(network)


def load_policy(path: Path = POLICY_PATH, resolv_confs: Sequence[Path] = RESOLV_CONF_PATHS) -> Policy:
    """The policy the agent wrote (its file, `policy_document`), or the defaults before it has: the
    tailnet, link-local and the host's ports are closed from Docker's first start on a new instance."""
    document: dict = {}
    if path.exists():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EgressError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(document, dict):
        raise EgressError(f"{path}: must be a JSON object")
    ports = document.get("host_ports", [])
    if not isinstance(ports, list) or not all(isinstance(port, int) and 0 < port < 65536 for port in ports):
        raise EgressError(f"{path}: host_ports: {ports!r} must be TCP ports (1-65535)")
    offline = document.get("offline_services", [])
    unknown = [name for name in offline if name not in SERVICE_ADDRESSES]
    if not isinstance(offline, list) or unknown:
        raise EgressError(f"{path}: offline_services: {offline!r} may name only {', '.join(SERVICE_ADDRESSES)}")
    return Policy(
        vpc=tuple(parse_cidr(c, f"{path}: vpc") for c in document.get("vpc", [])),
        allow=tuple(parse_cidr(c, f"{path}: allow") for c in document.get("allow", [])),
        offline=tuple(f"{SERVICE_ADDRESSES[name]}/32" for name in offline),
        host_ports=tuple(ports),
        nameservers=host_nameservers(resolv_confs),
    )


def default_policy(resolv_confs: Sequence[Path] = RESOLV_CONF_PATHS) -> Policy:
    """What applies when the policy file cannot be read: the tailnet, link-local and the host's ports."""
    return Policy(nameservers=host_nameservers(resolv_confs))


def policy_document(vpc: Sequence[str], allow: Sequence[str], offline_services: Sequence[str]) -> dict:
    """The policy file's content (/etc/ai-platform/egress.json), as the agent writes it from the
    instance's config and, on AWS, the VPC's ranges from the instance metadata."""
    unknown = [name for name in offline_services if name not in SERVICE_ADDRESSES]
    if unknown:
        raise EgressError(
            f"services.{unknown[0]}.internet: false is only possible for {', '.join(SERVICE_ADDRESSES)} "
            "(the services with a fixed address on the platform's network)"
        )
    return {
        "version": 1,
        "vpc": [parse_cidr(c, "vpc") for c in vpc],
        "allow": [parse_cidr(c, "security.egress.allow") for c in allow],
        "offline_services": list(offline_services),
        "host_ports": [],
    }


def describe(policy: Policy) -> str:
    """What the policy closes beyond the defaults, for the report line."""
    names = {f"{address}/32": name for name, address in SERVICE_ADDRESSES.items()}
    parts = [f"VPC {', '.join(policy.vpc)} closed" if policy.vpc else "no VPC range known"]
    if policy.allow:
        parts.append(f"allowed {', '.join(policy.allow)}")
    if policy.offline:
        parts.append(f"off the internet: {', '.join(names.get(a, a) for a in policy.offline)}")
    return "; ".join(parts)


def host_nameservers(paths: Sequence[Path] = RESOLV_CONF_PATHS) -> tuple[str, ...]:
    """The IPv4 nameservers dockerd forwards to: systemd-resolved's upstream list when there is one
    (Docker reads that file when /etc/resolv.conf names only 127.0.0.53), else /etc/resolv.conf.
    Loopback ones are left out: dockerd asks those from the host's own namespace."""
    for path in paths:
        if not path.exists():
            continue
        found = []
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(words[1])
                except ValueError:
                    continue
                if address.version == 4 and not address.is_loopback:
                    found.append(str(address))
        return tuple(found)
    return ()


def restore_input(policy: Policy) -> str:
    """iptables-restore input (for --noflush) that (re)writes both chains whole."""
    egress, host = policy.egress_chain, policy.host_chain
    lines = ["*filter", f":{egress} - [0:0]", f":{host} - [0:0]"]
    lines.append(f"-A {egress} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    for interface in policy.interfaces:  # to another container: Docker's chains decide
        lines.append(f"-A {egress} -o {interface} -j RETURN")
    for server in policy.nameservers:
        for protocol in ("udp", "tcp"):
            lines.append(f"-A {egress} -d {server}/32 -p {protocol} --dport 53 -j RETURN")
    for cidr in policy.allow:
        lines.append(f"-A {egress} -d {cidr} -j RETURN")
    for cidr in policy.blocked():
        lines.append(f"-A {egress} -d {cidr} -j REJECT --reject-with icmp-admin-prohibited")
    for source in policy.offline:
        lines.append(f"-A {egress} -s {source} -j REJECT --reject-with icmp-admin-prohibited")
    lines.append(f"-A {host} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    for port in policy.host_ports:
        lines.append(f"-A {host} -p tcp --dport {port} -j RETURN")
    # A reset for TCP: a client is told at once, not left to its connect timeout.
    lines.append(f"-A {host} -p tcp -j REJECT --reject-with tcp-reset")
    lines.append(f"-A {host} -j REJECT --reject-with icmp-admin-prohibited")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def jumps(policy: Policy) -> list[tuple[str, list[str]]]:
    """(chain, rule) for every jump into our chains, one per platform interface."""
    return [
        (chain, ["-i", interface, "-j", target])
        for interface in policy.interfaces
        for chain, target in (("DOCKER-USER", policy.egress_chain), ("INPUT", policy.host_chain))
    ]


def apply(policy: Policy, run=subprocess.run) -> None:
    """Write both chains (atomically) and make sure every jump to them is in place, at the top.
    Converges: running it again changes nothing but the chains' content."""
    _iptables(run, "-N", "DOCKER-USER", check=False)  # dockerd makes it; before dockerd, so do we
    restored = run(["iptables-restore", "--noflush", "-w"], input=restore_input(policy), capture_output=True, text=True)
    if restored.returncode != 0:
        raise EgressError(f"iptables-restore refused the egress rules: {restored.stderr.strip()}")
    for chain, rule in jumps(policy):
        if _iptables(run, "-C", chain, *rule, check=False).returncode != 0:
            _iptables(run, "-I", chain, "1", *rule)


def remove(policy: Policy, run=subprocess.run) -> None:
    """Take out every jump and both chains; what is not there is passed over."""
    for chain, rule in jumps(policy):
        while _iptables(run, "-C", chain, *rule, check=False).returncode == 0:
            _iptables(run, "-D", chain, *rule)
    for chain in (policy.egress_chain, policy.host_chain):
        _iptables(run, "-F", chain, check=False)
        _iptables(run, "-X", chain, check=False)


def _iptables(run, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    result = run(["iptables", "-w", *arguments], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise EgressError(f"iptables {' '.join(arguments)}: {result.stderr.strip()}")
    return result
