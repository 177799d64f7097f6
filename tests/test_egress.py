"""The egress policy (firstboot/egress.py) on this host's real Docker and iptables, with real containers.

Everything the test makes is its own (tests/egress_lab.py: a network, bridge, subnet, network
namespace, chain prefix of its own, all removed at the end whatever happened). The policy's rules
are the ones the instance runs; only the interface list, the chain prefix and the addresses are the test's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from egress_lab import BRIDGE, CHAIN_PREFIX, TAILNET, egress_lab, lab_policy, probe, run

from firstboot import egress

STACKS = Path(__file__).resolve().parents[1] / "image/rootfs/opt/ai-platform/stacks"

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "info"], capture_output=True).returncode != 0
    or os.geteuid() != 0
    or shutil.which("iptables") is None,
    reason="needs a running dockerd, iptables and root (network namespaces)",
)


@pytest.fixture(scope="module")
def lab():
    with egress_lab() as made:
        yield made


def _rules_mentioning(word: str) -> list[str]:
    listing = run("iptables", "-w", "-S").stdout.splitlines()
    return [line for line in listing if word in line]


def test_policy_on_real_containers(lab):
    # Without the rules everything is reachable: what follows could fail.
    before = probe(lab)
    assert set(before.values()) == {"ok"}, before

    egress.apply(lab_policy())
    enforced = probe(lab)
    assert enforced["internet"] == "ok", enforced
    assert enforced["dependency"] == "ok", enforced
    assert enforced["vpc_dns"] == "ok", enforced  # the host's nameserver, in the VPC: port 53 only
    for closed in ("tailnet", "vpc", "vpc_nameserver_other_port"):
        assert enforced[closed] == "EHOSTUNREACH", (closed, enforced)  # rejected at once, not timed out
    assert enforced["host_port"] == "ECONNREFUSED", enforced

    # Applied again, with the owner's additions: the chains replaced, one jump per chain still.
    client = lab["client_address"]
    egress.apply(lab_policy(allow=(f"{TAILNET}/32",), offline=(f"{client}/32",)))
    again = probe(lab)
    assert again["tailnet"] == "ok", again  # security.egress.allow
    assert again["internet"] == "EHOSTUNREACH", again  # services.NAME.internet: false
    internet = {"internet": lab["targets"]["internet"]}
    assert probe(lab, internet, container=lab["neighbour"]) == {"internet": "ok"}  # its neighbour is not cut off
    assert again["dependency"] == "ok", again  # still reaches the platform's containers
    assert again["vpc"] == "EHOSTUNREACH", again
    assert len(_rules_mentioning(f"-i {BRIDGE} -j {CHAIN_PREFIX}-EGRESS")) == 1
    assert len(_rules_mentioning(f"-i {BRIDGE} -j {CHAIN_PREFIX}-HOST")) == 1

    egress.remove(lab_policy())
    assert _rules_mentioning(CHAIN_PREFIX) == []
    assert set(probe(lab).values()) == {"ok"}


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
