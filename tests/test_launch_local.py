"""`builder launch --target local` without an image. The launch itself (followed, listed, refused
while running, destroyed cleanly, launched again on the same data disk, its data deleted on request)
is tested on the baked image, as a user launches it: tests/test_chain_local.py."""

from __future__ import annotations

import json


def test_no_local_image_is_a_clear_error(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'empty'}}}\n")
    result = builder("launch", "alpha", "--target", "local")
    assert result.code == 1
    assert "no local image of ai-platform yet" in result.err and "builder bake --target local" in result.err


def local_config(tmp_path, extra: str = "") -> None:
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'empty'}}}\n{extra}")


def test_a_dry_run_without_a_local_image_says_so_as_the_launch_does(builder, tmp_path):
    """Never 'would boot' an image that is not there: the dry run fails as the launch would (exit 1)."""
    local_config(tmp_path)
    result = builder("launch", "demo", "--target", "local", "--dry-run")
    assert result.code == 1, result.out
    assert "would boot" not in result.out
    assert "no local image of ai-platform yet" in result.err and "builder bake --target local" in result.err
    assert not (tmp_path / "empty").exists()  # a dry run writes nothing


def test_local_status_names_the_state_dir_not_a_region(builder, tmp_path):
    local_config(tmp_path)
    result = builder("status", "--target", "local")
    assert result.code == 0, result.err
    assert f"no instance of ai-platform under {tmp_path / 'empty' / 'ai-platform' / 'instances'}" in result.out
    assert "us-east-1" not in result.out


def test_local_credentials_hint_launches_locally(builder, tmp_path):
    local_config(tmp_path)
    result = builder("credentials", "demo", "--target", "local")
    assert result.code == 1
    assert "`builder launch demo --target local` makes them" in result.err


def test_the_configs_target_is_every_commands_default(builder, tmp_path):
    """One rule: --target, else the config's `target` (aws unless set), for bake as for the rest."""
    local_config(tmp_path)
    assert json.loads(builder("--json", "userdata", "demo").out)["target"] == "aws"
    assert json.loads(builder("--json", "--set", "target=local", "userdata", "demo").out)["target"] == "local"
    local_config(tmp_path, "target: local\n")
    assert json.loads(builder("--json", "userdata", "demo").out)["target"] == "local"
    assert json.loads(builder("--json", "userdata", "demo", "--target", "aws").out)["target"] == "aws"
    status = builder("status")
    assert status.code == 0 and "under" in status.out and "local.state_dir" in status.out
    launched = builder("launch", "demo", "--dry-run")
    assert launched.code == 1 and "no local image" in launched.err
    credentials = builder("credentials", "demo")
    assert "`builder launch demo --target local` makes them" in credentials.err
    refused = builder("bake", "--dry-run", "--packer-var", "aws_ssh_host=192.0.2.1")
    assert refused.code == 1 and "it needs --target aws" in refused.err  # bake followed `target: local`


def test_a_dry_run_with_a_local_image_names_it(builder, tmp_path):
    from builder.config.schema import PlatformConfig
    from builder.local.instances import LocalImage, register_image

    local_config(tmp_path)
    disk = tmp_path / "root.qcow2"
    disk.write_bytes(b"\0")
    register_image(
        PlatformConfig(version=1, local={"state_dir": str(tmp_path / "empty")}), LocalImage(disk, None, None)
    )
    planned = builder("launch", "demo", "--target", "local", "--dry-run")
    assert planned.code == 0, planned.err
    assert f"would boot demo from {disk} under qemu" in planned.out and "(created)" in planned.out
    document = json.loads(builder("--json", "launch", "demo", "--target", "local", "--dry-run").out)
    assert document["image"] == str(disk) and document["data_disk_state"] == "created"
    assert not (tmp_path / "empty" / "ai-platform" / "data").exists()  # a dry run makes no data disk


def test_local_status_shows_the_last_good_on_volume_backup_from_the_console(builder, tmp_path):
    """Locally the agent's lines reach the console (firstboot health); status reads the last one."""
    from builder.config.schema import PlatformConfig
    from builder.local.instances import LocalInstance

    local_config(tmp_path)
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "empty")}})
    instance = LocalInstance(config, "alpha")
    instance.directory.mkdir(parents=True)
    (instance.directory / "state.json").write_text(
        json.dumps({"instance_id": "local-0123", "pid": 2**22 + 1, "launched_at": 0})  # a pid no process has
    )
    instance.console.write_text(
        "ai-platform backup: last good none; none yet\r\n"
        "ai-platform health: 9/9 healthy\r\n"
        "ai-platform backup: last good 20250612T033000Z (1.2 GiB); warning: older than 48 h\r\n"
    )
    text = builder("status", "--target", "local").out
    assert "on-volume backup: last good 2025-06-12 03:30 UTC (" in text and "1.2 GiB); WARNING: older than 48 h" in text
    [view] = json.loads(builder("--json", "status", "--target", "local").out)
    assert view["backup"]["last_good"] == "20250612T033000Z" and view["backup"]["warning"] == "older than 48 h"
    assert view["backup"]["taken_at"] == "2025-06-12T03:30:00Z" and view["backup"]["age_hours"] > 48


def test_no_backup_line_yet_is_none_and_a_failed_first_attempt_is_a_warning():
    from builder.backup_status import describe, summary

    assert describe("-") is None  # no word from the agent yet: nothing shown
    failed = describe("ai-platform backup: last good none; warning: last attempt 2025-06-15T03:30:00Z failed: no space")
    assert summary(failed) == "none yet; WARNING: last attempt 2025-06-15T03:30:00Z failed: no space"
    assert summary(describe("ai-platform backup: last good none; none yet")) == "none yet"
