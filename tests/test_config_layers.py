"""Precedence: built-in defaults < file < environment < flags, and where each value came from."""

from __future__ import annotations

import json

from conftest import EXAMPLE_CONFIG


def _show(builder, *args):
    result = builder("--json", "config", "show", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_no_file_means_built_in_defaults(builder):
    shown = _show(builder)
    assert shown["file"] is None
    assert shown["config"]["aws"]["region"] == "us-east-1"
    assert set(shown["sources"].values()) == {"default"}
    # Safe defaults: encrypted, private, no inbound port but Tailscale's.
    assert shown["config"]["data_volume"]["encrypted"] is True
    assert shown["config"]["image"]["encrypted"] is True
    assert shown["config"]["image"]["share_with_accounts"] == []
    assert shown["config"]["aws"]["ssh_ingress_cidrs"] == []


def test_each_layer_overrides_the_one_below(builder, tmp_path, monkeypatch):
    (tmp_path / "platform.yaml").write_text(
        "version: 1\naws:\n  region: eu-west-1\n  instance_type: t3.large\ndata_volume:\n  size_gib: 200\n"
    )
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("BUILDER__DATA_VOLUME__SIZE_GIB", "300")
    shown = _show(builder, "--set", "data_volume.size_gib=400")
    config, sources = shown["config"], shown["sources"]

    assert config["aws"]["instance_type"] == "t3.large"
    assert sources["aws.instance_type"] == "platform.yaml:4"
    assert config["aws"]["region"] == "eu-central-1"
    assert sources["aws.region"] == "environment variable AWS_REGION"
    assert config["data_volume"]["size_gib"] == 400
    assert sources["data_volume.size_gib"] == "flag --set data_volume.size_gib=400"
    assert sources["data_volume.type"] == "default"

    shown = _show(builder, "--region", "ap-south-1")
    assert shown["config"]["aws"]["region"] == "ap-south-1"
    assert shown["sources"]["aws.region"] == "flag --region"


def test_aws_region_wins_over_aws_default_region(builder, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert _show(builder)["config"]["aws"]["region"] == "eu-west-3"
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert _show(builder)["config"]["aws"]["region"] == "eu-north-1"


def test_aws_profile_from_environment_and_flag(builder, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "team")
    assert _show(builder)["sources"]["aws.profile"] == "environment variable AWS_PROFILE"
    assert _show(builder, "--profile", "ops")["config"]["aws"]["profile"] == "ops"


def test_config_file_from_environment_variable_and_flag(builder, tmp_path, monkeypatch):
    (tmp_path / "a.yaml").write_text("version: 1\nname: alpha\n")
    (tmp_path / "b.yaml").write_text("version: 1\nname: beta\n")
    monkeypatch.setenv("BUILDER_CONFIG", "a.yaml")
    assert _show(builder)["config"]["name"] == "alpha"
    assert _show(builder, "--config", "b.yaml")["config"]["name"] == "beta"


def test_global_options_work_before_and_after_the_command(builder):
    before = builder("--json", "--region", "eu-west-2", "config", "show")
    after = builder("config", "show", "--region", "eu-west-2", "--json")
    assert before.code == after.code == 0
    assert json.loads(before.out) == json.loads(after.out)
    assert json.loads(after.out)["config"]["aws"]["region"] == "eu-west-2"


def test_environment_values_are_typed(builder, monkeypatch):
    monkeypatch.setenv("BUILDER__SERVICES__DIFY__ENABLED", "false")
    monkeypatch.setenv("BUILDER__OLLAMA__MODELS", "[llama3.2:3b]")
    config = _show(builder)["config"]
    assert config["services"]["dify"]["enabled"] is False
    assert config["ollama"]["models"] == ["llama3.2:3b"]


def test_a_list_is_replaced_whole_not_merged(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text("version: 1\nollama:\n  models: ['qwen2.5:7b', 'llama3.2:3b']\n")
    shown = _show(builder, "--set", "ollama.models=[deepseek-r1:7b]")
    assert shown["config"]["ollama"]["models"] == ["deepseek-r1:7b"]
    assert shown["sources"]["ollama.models"] == "flag --set ollama.models=[deepseek-r1:7b]"


def test_a_disabled_service_frees_its_port(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text(
        "version: 1\nservices:\n  dify: {enabled: false}\n  n8n: {edge_port: 8445}\n"
    )
    assert _show(builder)["config"]["services"]["n8n"]["edge_port"] == 8445


def test_show_annotates_every_value_with_its_source(builder, tmp_path):
    (tmp_path / "platform.yaml").write_text("version: 1\naws:\n  region: eu-west-1\n")
    result = builder("config", "show")
    assert result.code == 0
    lines = result.out.splitlines()
    region = next(line for line in lines if line.strip().startswith("region:"))
    assert region.split("#")[1].strip() == "platform.yaml:3"
    instance_type = next(line for line in lines if line.strip().startswith("instance_type:"))
    assert instance_type.split("#")[1].strip() == "default"


def test_show_output_is_yaml_that_validates_again(builder, tmp_path):
    """What `config show` prints is itself a complete config file."""
    result = builder("config", "show", "--config", str(EXAMPLE_CONFIG), "--set", "name=roundtrip")
    (tmp_path / "shown.yaml").write_text(result.out)
    again = builder("--json", "config", "show", "--config", "shown.yaml")
    assert again.code == 0, again.err
    assert json.loads(again.out)["config"]["name"] == "roundtrip"


def test_validate_reports_success(builder):
    result = builder("config", "validate", str(EXAMPLE_CONFIG))
    assert result.code == 0
    assert result.out.strip() == f"{EXAMPLE_CONFIG}: valid (version 1, platform 'ai-platform')"
