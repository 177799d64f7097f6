"""Valid settings that expose the platform beyond the tailnet: warnings, never errors (an owner may mean them)."""

from __future__ import annotations

import ipaddress

from builder.config.schema import EdgeService, PlatformConfig

# Tailscale's addresses: IPv4 from the CGNAT range, IPv6 from its own ULA prefix.
TAILNET_NETWORKS = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd7a:115c:a1e0::/48"))


def risks(config: PlatformConfig) -> list[tuple[str, str]]:
    """(dotted key path, message) for each setting that opens the platform to more than the tailnet."""
    found = []
    for index, cidr in enumerate(config.aws.ssh_ingress_cidrs):
        if ipaddress.ip_network(cidr).prefixlen == 0:
            found.append(
                (
                    f"aws.ssh_ingress_cidrs.{index}",
                    f"{cidr} opens SSH (22/tcp) to the whole internet: anyone may try to log in; list only "
                    "your own addresses (e.g. 203.0.113.7/32), or leave it empty and come in over the tailnet",
                )
            )
    ports = ", ".join(map(str, _edge_ports(config)))
    for index, address in enumerate(config.edge.bind):
        if address == "tailscale":
            continue
        ip = ipaddress.ip_address(address)
        if ip.is_unspecified:
            where = (
                f"{address} publishes the edge (ports {ports}) on every address of the instance, not only the tailnet"
            )
        elif ip.is_loopback or any(ip in network for network in TAILNET_NETWORKS):
            continue
        else:
            where = f"{address} publishes the edge (ports {ports}) on an address outside the tailnet"
        found.append(
            (
                f"edge.bind.{index}",
                f"{where}: whoever reaches it reaches the apps' logins (on AWS only the security group still "
                "stands in between); bind 'tailscale' (the node's tailnet address) and 127.0.0.1 instead",
            )
        )
    return found


def _edge_ports(config: PlatformConfig) -> list[int]:
    ports = [config.edge.port]
    ports += [s.edge_port for s in config.services.seed().values() if isinstance(s, EdgeService) and s.enabled]
    ports += [s.edge_port for _, s in sorted(config.services.custom.items()) if s.enabled and s.edge_port]
    return ports
