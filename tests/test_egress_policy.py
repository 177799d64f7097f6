"""The egress policy's plumbing, without Docker: the policy file the agent writes (from the config and
the VPC's ranges in the instance metadata), fail-open when the rules cannot be applied (reported,
retried by the health check), and the config's validation. The rules themselves run on real Docker
and iptables in tests/test_egress.py.

The instance metadata is tests/imds_standin.py (the real one exists only inside EC2); iptables is
replaced by a recording function here (`Settings.egress_apply`): these tests must not touch the host's
rules, which other tests' containers use at the same time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from firstboot_machine import Machine
from imds_standin import ImdsStandIn

from firstboot import egress, egress_policy, egress_report, instance_config
from firstboot.cli import main

UNITS = Path(__file__).resolve().parents[1] / "image/rootfs/etc/systemd/system"
UP = "Up 3 minutes (healthy)"


def _machine(tmp_path: Path, **config) -> Machine:
    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config(**config)
    machine.cloud_init("local-a")
    return machine


def test_the_agent_writes_the_policy_and_a_failure_to_apply_fails_open_reported_and_retried(tmp_path, capsys):
    machine = _machine(tmp_path, egress={"allow": ["10.9.0.0/16"], "offline": ["n8n"]})
    applied: list[egress.Policy] = []
    containers = {"ai-platform-data": [("postgres", UP)]}
    settings = machine.settings(containers=lambda project: containers.get(project, []), egress_apply=applied.append)
    assert main(["run"], settings) == 0
    written = json.loads((machine.paths.etc_dir / "egress.json").read_text())
    assert written == {
        "version": 1,
        "vpc": [],  # the local target: none (firstboot/egress_policy.py says why)
        "allow": ["10.9.0.0/16"],
        "offline_services": ["n8n"],
        "host_ports": [],
    }
    assert ("start", egress_report.EGRESS_UNIT) in machine.systemd.calls  # the rules follow the new file
    assert (machine.paths.etc_dir / "egress.json").stat().st_mode & 0o777 == 0o644
    capsys.readouterr()

    def refuse(policy):
        raise egress.EgressError("iptables-restore refused the egress rules: no such table")

    failing = machine.settings(containers=lambda project: containers.get(project, []), egress_apply=refuse)
    assert main(["egress"], failing) == 1  # dockerd's drop-in ignores it ("-"); the unit shows failed
    assert "ai-platform egress: NOT ENFORCED: iptables-restore refused" in capsys.readouterr().err
    assert main(["health"], failing) == 0
    said = capsys.readouterr().out
    assert "ai-platform egress: NOT ENFORCED" in said
    recorded = json.loads((machine.paths.state_dir / "health.json").read_text())
    assert recorded["egress"]["enforced"] is False
    assert machine.systemd.calls.count(("restart", egress_report.EGRESS_UNIT)) == 1  # tried again

    assert main(["egress"], settings) == 0  # the retry got through
    assert applied[-1].offline == ("172.20.0.40/32",) and applied[-1].allow == ("10.9.0.0/16",)
    capsys.readouterr()
    assert main(["health"], settings) == 0
    said = capsys.readouterr().out
    assert "ai-platform egress: enforced; no VPC range known; allowed 10.9.0.0/16; off the internet: n8n" in said
    assert machine.systemd.calls.count(("restart", egress_report.EGRESS_UNIT)) == 1  # no retry once in force
    assert main(["health"], settings) == 0
    assert "egress" not in capsys.readouterr().out  # unchanged: not said again


def test_a_policy_file_that_cannot_be_read_gets_the_defaults_and_says_so(tmp_path, capsys):
    machine = _machine(tmp_path)
    machine.paths.etc_dir.mkdir(parents=True, exist_ok=True)
    (machine.paths.etc_dir / "egress.json").write_text("{not json")
    applied: list[egress.Policy] = []
    assert main(["egress"], machine.settings(egress_apply=applied.append)) == 0
    assert applied[0].blocked() == (egress.TAILNET_V4, egress.LINK_LOCAL_V4)
    assert "enforced; defaults only" in capsys.readouterr().err


def test_dockerd_starts_even_when_the_rules_cannot_be_applied():
    drop_in = (UNITS / "docker.service.d/30-ai-platform-egress.conf").read_text()
    exec_lines = [line for line in drop_in.splitlines() if line.startswith("ExecStartPost=")]
    assert exec_lines == ["ExecStartPost=-/opt/ai-platform/agent/bin/firstboot egress"]
    unit = (UNITS / egress_report.EGRESS_UNIT).read_text()
    assert "ExecStart=/opt/ai-platform/agent/bin/firstboot egress" in unit


def test_the_vpc_ranges_come_from_the_instance_metadata():
    imds = ImdsStandIn("i-0123456789abcdef0", "us-east-1a", "us-east-1", vpc_cidr_blocks=("10.0.0.0/16", "10.1.0.0/16"))
    try:
        assert egress_policy.vpc_cidr_blocks(imds.url) == ["10.0.0.0/16", "10.1.0.0/16"]
        imds.fail_first = 1
        with pytest.raises(egress_policy.VpcUnknown, match="instance metadata"):
            egress_policy.vpc_cidr_blocks(imds.url)
    finally:
        imds.stop()


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"allow": ["10.0.0.300/24"]}, "egress.allow"),
        ({"allow": ["fd7a:115c:a1e0::/48"]}, "egress.allow"),
        ({"allow": "10.0.0.0/8"}, "egress.allow"),
        ({"offline": ["dify"]}, "egress.offline"),
        ({"deny": []}, "egress.deny"),
    ],
)
def test_the_instance_config_refuses_a_bad_egress_section(section, named):
    document = {
        "version": 1,
        "platform": "ai-platform",
        "instance": "alpha",
        "target": "aws",
        "region": "us-east-1",
        "egress": section,
    }
    with pytest.raises(instance_config.InstanceConfigError, match=named.replace(".", r"\.")):
        instance_config.parse_instance_config(document, "instance.json")


def test_the_config_reaches_the_instance_document_and_the_agent_reads_it():
    from builder.config.schema import PlatformConfig
    from builder.userdata import instance_document

    config = PlatformConfig.model_validate(
        {"version": 1, "security": {"egress": {"allow": ["10.0.5.0/24"]}}, "services": {"n8n": {"internet": False}}}
    )
    document = instance_document(config, "alpha", "aws")
    assert document["egress"] == {"allow": ["10.0.5.0/24"], "offline": ["n8n"]}
    parsed = instance_config.parse_instance_config(document, "instance.json")
    assert parsed.egress_allow == ("10.0.5.0/24",) and parsed.egress_offline == ("n8n",)
    assert "egress" not in instance_document(PlatformConfig.model_validate({"version": 1}), "alpha", "aws")


def test_a_machine_without_docker_writes_the_policy_and_applies_nothing(tmp_path):
    """No Docker, no container to police: the boot stays done, not degraded (CI's firstboot VM,
    whose image has no Docker, was degraded by the missing iptables)."""
    machine = _machine(tmp_path)
    settings = machine.settings(containers=lambda project: [("postgres", UP)], docker_installed=lambda: False)
    assert main(["run"], settings) == 0
    assert (machine.paths.etc_dir / "egress.json").exists()
    assert ("start", egress_report.EGRESS_UNIT) not in machine.systemd.calls
    status = json.loads((machine.paths.state_dir / "status.json").read_text())
    assert status["state"] == "done", status
    [stacks] = [step for step in status["steps"] if step["name"] == "stacks"]
    assert "no Docker on this machine" in stacks["detail"] and not stacks["warnings"]
