"""Does the configured machine fit the platform? Said before anything runs, from public figures."""

from __future__ import annotations

import pytest

from builder import capacity
from builder.config.schema import PlatformConfig
from builder.images import load_lock

VARIABLES = [pin.variable for pin in load_lock()]


def config(**sections) -> PlatformConfig:
    return PlatformConfig.model_validate({"version": 1, **sections})


def test_every_locked_image_and_service_has_a_figure_with_its_source():
    assert set(VARIABLES) <= set(capacity.IMAGE_GB)
    assert all(source for _, source in capacity.IMAGE_GB.values())
    assert set(capacity.enabled_services(config())) <= set(capacity.SERVICE_MIB)


def test_the_defaults_fit_the_whole_platform_with_the_default_models():
    assert capacity.check_disk(config(), "local", VARIABLES) == []
    assert capacity.check_disk(config(), "aws", VARIABLES) == []
    assert capacity.check_memory(config(), "local") == []


def test_a_disk_too_small_for_the_images_and_models_is_named():
    [finding] = capacity.check_disk(config(local={"disk_size_gib": 20}), "local", VARIABLES)
    assert finding.setting == "local.disk_size_gib" and finding.needed > 40
    assert "local.disk_size_gib is 20 GiB" in finding.message()
    [aws] = capacity.check_disk(config(image={"root_volume_size_gib": 30}), "aws", VARIABLES)
    assert aws.setting == "image.root_volume_size_gib"


def test_a_model_of_unknown_size_is_said_not_counted():
    [finding] = capacity.check_disk(
        config(local={"disk_size_gib": 10}, ollama={"models": ["mistral:7b"]}), "local", VARIABLES
    )
    assert "size unknown: mistral:7b" in finding.message()


def test_memory_follows_the_enabled_services():
    small = config(local={"memory_mib": 8192})
    [finding] = capacity.check_memory(small, "local")
    assert finding.setting == "local.memory_mib" and finding.needed > 20000
    lean = config(
        local={"memory_mib": 8192},
        services={name: {"enabled": False} for name in ("ollama", "dify", "anythingllm", "clawdbot")},
    )
    assert capacity.check_memory(lean, "local") == []


def test_bake_and_launch_dry_runs_say_it_before_anything_runs(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {tmp_path / 's'}, disk_size_gib: 20, memory_mib: 4096}}\n"
    )
    baked = builder("bake", "--target", "local", "--dry-run")
    assert baked.code == 0, baked.err
    assert "local.disk_size_gib is 20 GiB" in baked.out + baked.err
    launched = builder("launch", "alpha", "--target", "local", "--dry-run")
    assert launched.code == 0 and "local.memory_mib is 4096 MiB" in launched.err


@pytest.mark.usefixtures("baked")
def test_an_aws_instance_type_too_small_is_named(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(
        "version: 1\naws: {instance_type: t3.small}\ndata_volume: {availability_zone: us-east-1a}\n"
    )
    planned = builder("launch", "alpha", "--dry-run")
    assert planned.code == 0, planned.err
    assert "aws.instance_type (t3.small) is 2048 MiB" in planned.err
