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


def test_every_default_model_has_a_published_size():
    """The default embedding model too: none of the defaults is counted as 0 GB."""
    assert {capacity.model_size(model).how for model in config().ollama.baked} == {"published"}


def test_big_models_of_unrecorded_size_are_estimated_from_their_tags_and_fire_the_check():
    """Two 8-14B models on a 48 GiB disk: about 14 GB more, once counted as 0."""
    big = config(
        local={"disk_size_gib": 48},
        ollama={"models": ["llama3.1:8b", "qwen2.5:14b"]},
        routing={"tiers": {"simple": "local", "medium": "local"}},
    )
    [finding] = capacity.check_disk(big, "local", VARIABLES)
    assert finding.needed > 48
    message = finding.message()
    assert "size estimated from the tag's parameter count: llama3.1:8b, qwen2.5:14b" in message
    assert "run `builder images lock` to record their sizes" in message
    estimates = [capacity.model_size(model) for model in ("llama3.1:8b", "qwen2.5:14b")]
    assert all(size.how == "estimate" for size in estimates)
    assert 13 < sum(size.gb for size in estimates) < 16
    # Recorded sizes (the lock's, from the models' manifests) are counted as they are, estimate or not.
    recorded = {"llama3.1:8b": 1_000_000_000, "qwen2.5:14b": 1_000_000_000}
    assert capacity.check_disk(big, "local", VARIABLES, recorded) == []


@pytest.mark.parametrize(
    "model, billions", [("qwen2.5:14b", 14), ("qwen2.5:1.5b", 1.5), ("mixtral:8x7b", 56), ("x:137m", 0.137)]
)
def test_the_parameter_count_is_read_from_the_tag(model, billions):
    assert capacity.parameter_billions(model) == pytest.approx(billions)


def test_a_tag_naming_wider_weights_is_estimated_bigger():
    assert capacity.model_size("qwen2.5:7b-instruct-fp16").gb == pytest.approx(14)
    assert capacity.model_size("qwen2.5:7b-instruct-q8_0").gb > capacity.model_size("qwen2.5:7b-instruct").gb


def test_a_model_whose_tag_names_no_size_is_said_unknown_not_counted():
    [finding] = capacity.check_disk(
        config(local={"disk_size_gib": 10}, ollama={"models": ["phi3:mini"]}), "local", VARIABLES
    )
    assert "size unknown, not counted: phi3:mini" in finding.message()
    assert "builder images lock" in finding.message()


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
    launched = builder("launch", "alpha", "--target", "local", "--dry-run")  # no local image yet: exit 1,
    assert launched.code == 1 and "local.memory_mib is 4096 MiB" in launched.err  # the note said first


@pytest.mark.usefixtures("baked")
def test_an_aws_instance_type_too_small_is_named(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(
        "version: 1\naws: {instance_type: t3.small}\ndata_volume: {availability_zone: us-east-1a}\n"
    )
    planned = builder("launch", "alpha", "--dry-run")
    assert planned.code == 0, planned.err
    assert "aws.instance_type (t3.small) is 2048 MiB" in planned.err
