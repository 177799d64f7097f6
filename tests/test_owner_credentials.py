"""The owner's credentials: made by builder at an instance's first launch, kept where `builder
credentials` shows them again and the agent reads them, never in the user-data."""

from __future__ import annotations

import base64
import json
import stat

from firstboot_machine import OWNER, Machine
from test_launch_aws import config, run

from builder import owner_credentials
from builder.config.schema import PlatformConfig
from builder.local.qemu import qemu_command
from builder.userdata import instance_document, render_user_data
from firstboot.cli import main as firstboot_main

NAMES = {
    "EDGE_OWNER_PASSWORD",
    "OPENCLAW_GATEWAY_TOKEN",
    "ANYTHINGLLM_AUTH_TOKEN",
    "DIFY_INIT_PASSWORD",
    "N8N_OWNER_PASSWORD",
    # Not logins, but what the owner types: LiteLLM's admin key (its UI), Dify's LiteLLM key.
    "LITELLM_MASTER_KEY",
    "LITELLM_KEY_DIFY",
}


def test_the_contract_names_the_owners_logins():
    assert {c.name for c in owner_credentials.owner_credentials()} == NAMES


def test_an_aws_launch_makes_them_once_and_lets_only_its_role_read_them(aws, baked, builder):
    cfg = config()
    run(cfg)
    ssm = aws.client("ssm")
    parameter = owner_credentials.parameter_name(cfg, "alpha")
    stored = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    first = json.loads(stored["Value"])
    assert set(first) == NAMES and all(len(value) >= 24 for value in first.values())
    policy = aws.client("iam").get_role_policy(
        RoleName="ai-platform-alpha-firstboot", PolicyName="ai-platform-firstboot"
    )
    readable = next(s for s in policy["PolicyDocument"]["Statement"] if s["Action"] == "ssm:GetParameter")["Resource"]
    assert any(arn.endswith(f":parameter{parameter}") for arn in readable)
    # The Drive's rclone config, when the owner stores one (services.gdrive is on by default).
    assert any(arn.endswith(":parameter/ai-platform/gdrive/rclone-config") for arn in readable)

    # A second launch (a new instance on the same volume, after destroy) keeps them.
    from builder.aws import group

    group.delete(aws.client("autoscaling"), aws.client("ec2"), "ai-platform-alpha", log=lambda _line: None)
    run(cfg)
    assert json.loads(ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]) == first

    shown = builder("--json", "credentials", "alpha")
    assert shown.code == 0, shown.err
    rows = {row["credential"]: row for row in json.loads(shown.out)["credentials"]}
    assert {name: row["value"] for name, row in rows.items()} == first
    assert rows["OPENCLAW_GATEWAY_TOKEN"]["url"].endswith(f"/clawdbot/#token={first['OPENCLAW_GATEWAY_TOKEN']}")
    assert rows["LITELLM_MASTER_KEY"]["url"].endswith("/litellm/ui/")
    assert "http://litellm:4000/v1" in rows["LITELLM_KEY_DIFY"]["what"]

    # Never in what the instance is launched with.
    user_data = render_user_data(cfg, instance_document(cfg, "alpha", "aws")).mime
    for value in first.values():
        assert value not in user_data and base64.b64encode(value.encode()).decode()[:20] not in user_data


def test_a_local_instance_gets_them_from_a_private_file_through_fw_cfg(tmp_path, builder):
    cfg = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "state")}})
    path = owner_credentials.ensure_local(cfg, "alpha")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    made = json.loads(path.read_text())
    assert owner_credentials.ensure_local(cfg, "alpha") == path and json.loads(path.read_text()) == made
    command = qemu_command(
        kernel=None,
        initrd=None,
        root=tmp_path / "r",
        data_disk=tmp_path / "d",
        data_serial="vol0",
        seed=tmp_path / "s",
        serial_log=tmp_path / "c",
        fw_cfg={owner_credentials.FW_CFG_NAME: path},
    )
    assert f"name={owner_credentials.FW_CFG_NAME},file={path}" in command
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\n")
    shown = builder("--json", "credentials", "alpha", "--target", "local")
    assert shown.code == 0, shown.err
    assert {row["credential"]: row["value"] for row in json.loads(shown.out)["credentials"]} == made
    assert builder("credentials", "nobody", "--target", "local").code == 1


def test_the_agent_puts_the_delivered_credentials_in_the_env(tmp_path):
    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    assert firstboot_main(["run"], machine.settings()) == 0
    env = machine.env()
    assert {name: env[name] for name in NAMES} == OWNER
    status = machine.status()
    assert all(value not in json.dumps(status) for value in OWNER.values())


def test_without_delivery_the_volume_keeps_stand_bys_and_the_boot_says_so(tmp_path):
    machine = Machine(tmp_path / "m")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config(owner_credentials=None)
    machine.cloud_init("local-a")
    assert firstboot_main(["run"], machine.settings()) == 2  # done, with a warning
    env = machine.env()
    assert all(env[name] and env[name] != OWNER[name] for name in NAMES)
    assert "no owner credentials" in json.dumps(machine.status())
    again = machine.env()
    assert firstboot_main(["run"], machine.settings()) == 2
    assert machine.env() == again  # the stand-bys are kept, not made anew at every boot


def test_only_the_enabled_services_credentials_are_shown(builder, tmp_path):
    """Dify off: its init password and its LiteLLM key are not printed (they open nothing), and it says so."""
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\nservices:\n  dify: {{enabled: false}}\n"
    )
    cfg = PlatformConfig.model_validate(
        {"version": 1, "local": {"state_dir": str(tmp_path / "state")}, "services": {"dify": {"enabled": False}}}
    )
    made = json.loads(owner_credentials.ensure_local(cfg, "alpha").read_text())
    shown = builder("--json", "credentials", "alpha", "--target", "local")
    assert shown.code == 0, shown.err
    document = json.loads(shown.out)
    assert {row["credential"] for row in document["credentials"]} == NAMES - {"DIFY_INIT_PASSWORD", "LITELLM_KEY_DIFY"}
    assert document["not_shown"] == [
        {"credential": "DIFY_INIT_PASSWORD", "disabled": ["dify"]},
        {"credential": "LITELLM_KEY_DIFY", "disabled": ["dify"]},
    ]
    text = builder("credentials", "alpha", "--target", "local").out
    assert made["DIFY_INIT_PASSWORD"] not in text and made["LITELLM_KEY_DIFY"] not in text
    assert "not shown, as their services are disabled (services.dify): Dify init password, Dify's LiteLLM key" in text
    assert made["N8N_OWNER_PASSWORD"] in text

    # LiteLLM off too: its master key goes, and Dify's key is Dify's and LiteLLM's.
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\nservices:\n  dify: {{enabled: false}}\n"
        "  litellm: {enabled: false}\n"
    )
    document = json.loads(builder("--json", "credentials", "alpha", "--target", "local").out)
    assert {row["credential"] for row in document["not_shown"]} == {
        "DIFY_INIT_PASSWORD",
        "LITELLM_KEY_DIFY",
        "LITELLM_MASTER_KEY",
    }
    assert next(r for r in document["not_shown"] if r["credential"] == "LITELLM_KEY_DIFY")["disabled"] == [
        "litellm",
        "dify",
    ]
