"""A laboratory for the egress policy (firstboot/egress.py) on this host's real Docker and iptables,
for tests/test_egress.py and bench/egress_rules.py.

Everything it makes is its own, named after the process id: a Docker network with a bridge of its
own name and subnet (never the platform's `ai-platform` network, which other tests use at the same
time), a network namespace behind a veth pair that plays the world outside the host (an "internet"
address, a tailnet address in 100.64.0.0/10, a "VPC" range with a nameserver in it), a server on
the host itself, and chains under a prefix of its own, jumped to only from its own bridge. Every
piece is removed on the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading

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


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
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


@contextlib.contextmanager
def egress_lab():
    """The test's network, containers and outside world; everything removed on the way out."""
    image = base_image()
    cleanups = []
    try:
        run("ip", "netns", "add", NAMESPACE)
        cleanups.append(lambda: run("ip", "netns", "delete", NAMESPACE, check=False))
        run("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_WORLD)
        cleanups.append(lambda: run("ip", "link", "delete", VETH_HOST, check=False))
        run("ip", "link", "set", VETH_WORLD, "netns", NAMESPACE)
        run("ip", "addr", "add", f"{HOST_SIDE}/30", "dev", VETH_HOST)
        run("ip", "link", "set", VETH_HOST, "up")
        inside = ("ip", "netns", "exec", NAMESPACE)
        run(*inside, "ip", "addr", "add", f"{WORLD_SIDE}/30", "dev", VETH_WORLD)
        for address in (TAILNET, VPC_NAMESERVER, VPC_HOST):
            run(*inside, "ip", "addr", "add", f"{address}/32", "dev", "lo")
        run(*inside, "ip", "link", "set", "lo", "up")
        run(*inside, "ip", "link", "set", VETH_WORLD, "up")
        run(*inside, "ip", "route", "add", "default", "via", HOST_SIDE)
        for destination in (f"{TAILNET}/32", VPC):  # routes on the host, through our veth only
            run("ip", "route", "add", destination, "via", WORLD_SIDE, "dev", VETH_HOST)
        world = subprocess.Popen([*inside, "python3", "-c", WORLD_SERVER, VPC_NAMESERVER])
        cleanups.append(world.kill)

        subnet = None
        for third in range(200, 250):  # a /24 of its own: another worker's networks take theirs
            candidate = f"10.213.{(K + third) % 250}.0/24"
            made = run(
                "docker", "network", "create", "--driver", "bridge", "--subnet", candidate,
                "--opt", f"com.docker.network.bridge.name={BRIDGE}", NETWORK, check=False,
            )  # fmt: skip
            if made.returncode == 0:
                subnet = candidate
                break
        assert subnet, "no free /24 in 10.213.0.0/16 for the test's network"
        cleanups.append(lambda: run("docker", "network", "rm", NETWORK, check=False))
        prefix = subnet.rsplit(".", 1)[0]
        gateway, client, dependency = f"{prefix}.1", f"{prefix}.10", f"{prefix}.20"
        containers = {
            "client": (client, ["sleep", "infinity"]),
            "dependency": (dependency, ["python3", "-c", DEPENDENCY_SERVER]),
        }
        for role, (address, command) in containers.items():
            name = f"{NETWORK}-{role}"
            cleanups.append(lambda name=name: run("docker", "rm", "-f", name, check=False))
            run("docker", "run", "-d", "--name", name, "--network", NETWORK, "--ip", address, image, *command)
        host_port = HostPort(gateway)
        cleanups.append(host_port.server.close)
        yield {
            "client": f"{NETWORK}-client",
            "neighbour": f"{NETWORK}-dependency",  # another container of the network, not cut off
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
        egress.remove(lab_policy())
        for cleanup in reversed(cleanups):
            cleanup()
        for destination in (f"{TAILNET}/32", VPC):
            run("ip", "route", "delete", destination, check=False)


def lab_policy(**changes) -> egress.Policy:
    fields = {
        "vpc": (VPC,),
        "nameservers": (VPC_NAMESERVER,),
        "interfaces": (BRIDGE,),
        "chain_prefix": CHAIN_PREFIX,
    }
    return egress.Policy(**{**fields, **changes})


def probe(lab, targets: dict[str, str] | None = None, container: str | None = None) -> dict[str, str]:
    """From the client container (or `container`): each target's "ok" or the error's name (EHOSTUNREACH, ...)."""
    targets = targets or lab["targets"]
    out = run("docker", "exec", container or lab["client"], "python3", "-c", PROBE, *targets.values()).stdout
    results = json.loads(out)
    return {name: results[target] for name, target in targets.items()}
