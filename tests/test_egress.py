"""The egress policy (firstboot/egress.py) on this host's real Docker and iptables, with real containers.

Everything the test makes is its own, named after its process id: a Docker network with a bridge of
its own name and subnet (never the platform's `ai-platform` network, which other tests use at the
same time), a network namespace behind a veth pair that plays the world outside the host (an
"internet" address, a tailnet address in 100.64.0.0/10, a "VPC" range with a nameserver in it), and
chains under a prefix of its own, jumped to only for its own bridge. Every piece is removed at the
end, whether the test passed or not. The policy's rules are the ones the instance runs; only the
interface list, the chain prefix and the addresses are the test's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from standins.images import base_image

from firstboot import egress

ID = os.getpid() % 10000
K = os.getpid() % 250 + 1
BRIDGE = f"aipeg{ID}"
NETWORK = f"aipeg-test-{ID}"
NAMESPACE = f"aipeg-{ID}"
VETH_HOST, VETH_WORLD = f"aipegh{ID}", f"aipegw{ID}"
HOST_SIDE, WORLD_SIDE = f"198.18.{K}.1", f"198.18.{K}.2"  # the veth pair: WORLD_SIDE is "the internet"
TAILNET = f"100.127.{K}.2"
VPC, VPC_NAMESERVER, VPC_HOST = f"198.19.{K}.0/24", f"198.19.{K}.53", f"198.19.{K}.10"
CHAIN_PREFIX = f"AIPT{ID}"
STACKS = Path(__file__).resolve().parents[1] / "image/rootfs/opt/ai-platform/stacks"

# The world's side: a TCP server answering "ok" on 8080 on every address, and a UDP echo on the
# nameserver's 53 (bound to it: a reply must come from the address asked).
WORLD_SERVER = """
import socket, sys, threading
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((sys.argv[1], 53))
def echo():
    while True:
        data, peer = udp.recvfrom(512); udp.sendto(data, peer)
threading.Thread(target=echo, daemon=True).start()
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", 8080)); tcp.listen(64)
while True:
    connection, _ = tcp.accept(); connection.sendall(b"ok"); connection.close()
"""
# A platform service another container depends on (on the same network): answers "ok" on 8000.
DEPENDENCY_SERVER = """
import socket
tcp = socket.create_server(("0.0.0.0", 8000))
while True:
    connection, _ = tcp.accept(); connection.sendall(b"ok"); connection.close()
"""
# Run in a container: each target as (proto, host, port); prints {target: "ok" or the error's name}.
PROBE = """
import errno, json, socket, sys
results = {}
for target in sys.argv[1:]:
    proto, host, port = target.split(":")
    try:
        if proto == "tcp":
            with socket.create_connection((host, int(port)), timeout=4) as s:
                s.recv(2)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(4); s.connect((host, int(port))); s.send(b"q"); s.recv(16)
        results[target] = "ok"
    except socket.timeout:
        results[target] = "timeout"
    except OSError as e:
        results[target] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(results))
"""

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "info"], capture_output=True).returncode != 0
    or os.geteuid() != 0
    or shutil.which("iptables") is None,
    reason="needs a running dockerd, iptables and root (network namespaces)",
)


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result


class HostPort:
    """A TCP server on the host itself, on the test network's gateway address: a host port no
    container is meant to reach."""

    def __init__(self, address: str):
        self.server = socket.create_server((address, 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.server.accept()
                connection.sendall(b"ok")
                connection.close()


@pytest.fixture(scope="module")
def lab():
    image = base_image()
    cleanups = []
    try:
        _run("ip", "netns", "add", NAMESPACE)
        cleanups.append(lambda: _run("ip", "netns", "delete", NAMESPACE, check=False))
        _run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_WORLD)
        cleanups.append(lambda: _run("ip", "link", "delete", VETH_HOST, check=False))
        _run("ip", "link", "set", VETH_WORLD, "netns", NAMESPACE)
        _run("ip", "addr", "add", f"{HOST_SIDE}/30", "dev", VETH_HOST)
        _run("ip", "link", "set", VETH_HOST, "up")
        inside = ("ip", "netns", "exec", NAMESPACE)
        _run(*inside, "ip", "addr", "add", f"{WORLD_SIDE}/30", "dev", VETH_WORLD)
        for address in (TAILNET, VPC_NAMESERVER, VPC_HOST):
            _run(*inside, "ip", "addr", "add", f"{address}/32", "dev", "lo")
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "link", "set", VETH_WORLD, "up")
        _run(*inside, "ip", "route", "add", "default", "via", HOST_SIDE)
        for destination in (f"{TAILNET}/32", VPC):  # routes on the host, through our veth only
            _run("ip", "route", "add", destination, "via", WORLD_SIDE, "dev", VETH_HOST)
        world = subprocess.Popen([*inside, "python3", "-c", WORLD_SERVER, VPC_NAMESERVER])
        cleanups.append(world.kill)

        subnet = None
        for third in range(200, 250):  # a /24 of its own: another worker's networks take theirs
            candidate = f"10.213.{(K + third) % 250}.0/24"
            made = _run(
                "docker", "network", "create", "--driver", "bridge", "--subnet", candidate,
                "--opt", f"com.docker.network.bridge.name={BRIDGE}", NETWORK, check=False,
            )  # fmt: skip
            if made.returncode == 0:
                subnet = candidate
                break
        assert subnet, "no free /24 in 10.213.0.0/16 for the test's network"
        cleanups.append(lambda: _run("docker", "network", "rm", NETWORK, check=False))
        prefix = subnet.rsplit(".", 1)[0]
        gateway, client, dependency = f"{prefix}.1", f"{prefix}.10", f"{prefix}.20"
        containers = {
            "client": (client, ["sleep", "infinity"]),
            "dependency": (dependency, ["python3", "-c", DEPENDENCY_SERVER]),
        }
        for role, (address, command) in containers.items():
            name = f"{NETWORK}-{role}"
            cleanups.append(lambda name=name: _run("docker", "rm", "-f", name, check=False))
            _run("docker", "run", "-d", "--name", name, "--network", NETWORK, "--ip", address, image, *command)
        host_port = HostPort(gateway)
        cleanups.append(host_port.server.close)
        yield {
            "client": f"{NETWORK}-client",
            "client_address": client,
            "targets": {
                "internet": f"tcp:{WORLD_SIDE}:8080",
                "tailnet": f"tcp:{TAILNET}:8080",
                "vpc": f"tcp:{VPC_HOST}:8080",
                "vpc_dns": f"udp:{VPC_NAMESERVER}:53",
                "vpc_nameserver_other_port": f"tcp:{VPC_NAMESERVER}:8080",
                "host_port": f"tcp:{gateway}:{host_port.port}",
                "dependency": f"tcp:{dependency}:8000",
            },
        }
    finally:
        egress.remove(_policy())
        for cleanup in reversed(cleanups):
            cleanup()
        for destination in (f"{TAILNET}/32", VPC):
            _run("ip", "route", "delete", destination, check=False)


def _policy(**changes) -> egress.Policy:
    fields = {
        "private": (VPC,),
        "nameservers": (VPC_NAMESERVER,),
        "interfaces": (BRIDGE,),
        "chain_prefix": CHAIN_PREFIX,
    }
    return egress.Policy(**{**fields, **changes})


def _probe(lab) -> dict[str, str]:
    targets = lab["targets"]
    out = _run("docker", "exec", lab["client"], "python3", "-c", PROBE, *targets.values()).stdout
    results = json.loads(out)
    return {name: results[target] for name, target in targets.items()}


def _rules_mentioning(word: str) -> list[str]:
    listing = _run("iptables", "-w", "-S").stdout.splitlines()
    return [line for line in listing if word in line]


def test_policy_on_real_containers(lab):
    # Without the rules everything is reachable: what follows could fail.
    before = _probe(lab)
    assert set(before.values()) == {"ok"}, before

    egress.apply(_policy())
    enforced = _probe(lab)
    assert enforced["internet"] == "ok", enforced
    assert enforced["dependency"] == "ok", enforced
    assert enforced["vpc_dns"] == "ok", enforced  # the host's nameserver, in the VPC: port 53 only
    for closed in ("tailnet", "vpc", "vpc_nameserver_other_port"):
        assert enforced[closed] == "EHOSTUNREACH", (closed, enforced)  # rejected at once, not timed out
    assert enforced["host_port"] == "ECONNREFUSED", enforced

    # Applied again, with the owner's additions: the chains replaced, one jump per chain still.
    client = lab["client_address"]
    egress.apply(_policy(allow=(f"{TAILNET}/32",), offline=(f"{client}/32",)))
    again = _probe(lab)
    assert again["tailnet"] == "ok", again  # security.egress.allow
    assert again["internet"] == "EHOSTUNREACH", again  # services.NAME.internet: false
    assert again["dependency"] == "ok", again  # still reaches the platform's containers
    assert again["vpc"] == "EHOSTUNREACH", again
    assert len(_rules_mentioning(f"-i {BRIDGE} -j {CHAIN_PREFIX}-EGRESS")) == 1
    assert len(_rules_mentioning(f"-i {BRIDGE} -j {CHAIN_PREFIX}-HOST")) == 1

    egress.remove(_policy())
    assert _rules_mentioning(CHAIN_PREFIX) == []
    assert set(_probe(lab).values()) == {"ok"}


def test_service_addresses_match_the_compose_files():
    """A service is cut off the internet by its fixed address: the table must follow the files."""
    found = {}
    for name in egress.SERVICE_ADDRESSES:
        compose = yaml.safe_load((STACKS / name / "compose.yaml").read_text())
        for service in compose["services"].values():
            networks = service.get("networks")
            network = networks.get("ai-platform") if isinstance(networks, dict) else None
            if network and network.get("ipv4_address"):
                found[name] = network["ipv4_address"]
    assert found == egress.SERVICE_ADDRESSES


def test_rules_order_and_defaults(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fd00::1\n")
    policy_file = tmp_path / "egress.json"
    policy_file.write_text(json.dumps(egress.policy_document(["10.0.0.0/16"], ["10.0.5.0/24"], ["n8n"])))
    policy = egress.load_policy(policy_file, [resolv])
    assert policy.nameservers == ("10.0.0.2",)
    rules = egress.restore_input(policy).splitlines()
    position = {rule: index for index, rule in enumerate(rules)}
    dns = position["-A AIP-EGRESS -d 10.0.0.2/32 -p udp --dport 53 -j RETURN"]
    allowed = position["-A AIP-EGRESS -d 10.0.5.0/24 -j RETURN"]
    vpc = position["-A AIP-EGRESS -d 10.0.0.0/16 -j REJECT --reject-with icmp-admin-prohibited"]
    offline = position["-A AIP-EGRESS -s 172.20.0.40/32 -j REJECT --reject-with icmp-admin-prohibited"]
    assert position["-A AIP-EGRESS -o br-+ -j RETURN"] < dns < allowed < vpc < offline
    assert "-A AIP-EGRESS -d 100.64.0.0/10 -j REJECT --reject-with icmp-admin-prohibited" in rules
    assert "-A AIP-EGRESS -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited" in rules
    # Before the agent has written its file: the defaults, the tailnet and link-local closed.
    defaults = egress.load_policy(tmp_path / "missing.json", [resolv])
    assert defaults.blocked() == (egress.TAILNET_V4, egress.LINK_LOCAL_V4)


@pytest.mark.parametrize(
    ("private", "allow", "offline", "named"),
    [
        ([], ["10.0.0.300/24"], [], "security.egress.allow"),
        ([], ["fd7a:115c:a1e0::/48"], [], "security.egress.allow"),
        ([], [], ["dify"], "services.dify.internet"),
    ],
)
def test_bad_policy_names_the_field(private, allow, offline, named):
    with pytest.raises(egress.EgressError, match=named.replace(".", r"\.")):
        egress.policy_document(private, allow, offline)
