"""The stacks' per-instance files the agent renders (firstboot/stack_config.py).

LiteLLM's config is checked by loading it as LiteLLM does (yaml.safe_load); the edge's files are
checked by the real nginx and compose in test_stack_files.py and test_stack_docker.py.
"""

from __future__ import annotations

import json

import pytest
import yaml
from stack_fixtures import STACKS_DIR

from firstboot import stack_config
from firstboot.instance_config import StackSettings

SETTINGS = StackSettings()


def routes(config: dict) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for entry in config["model_list"]:
        table.setdefault(entry["model_name"], []).append(entry["litellm_params"]["model"])
    return table


def test_without_cloud_keys_every_route_stays_local():
    config = yaml.safe_load(json.dumps(stack_config.litellm_config(SETTINGS, [])))
    table = routes(config)
    assert table["local"] == ["ollama_chat/llama3.2:3b"]
    assert table["smart"] == ["ollama_chat/deepseek-r1:7b"]
    assert not any(model.startswith(("anthropic/", "openai/")) for models in table.values() for model in models)
    assert all(
        e["litellm_params"]["api_base"] == "http://ollama:11434"
        for e in config["model_list"]
        if e["litellm_params"]["model"].startswith("ollama_chat/")
    )
    assert config["router_settings"]["fallbacks"] == [{"local": ["smart"]}, {"smart": ["local"]}]
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_claude_takes_complex_queries_when_its_key_exists_and_falls_back_to_gpt_then_local():
    config = stack_config.litellm_config(SETTINGS, ["anthropic", "openai"])
    table = routes(config)
    assert table["smart"] == ["anthropic/claude-sonnet-4-5"]
    assert table["gpt"] == ["openai/gpt-4o"]
    assert config["router_settings"]["fallbacks"][1] == {"smart": ["gpt", "local"]}
    keys = [e["litellm_params"].get("api_key") for e in config["model_list"] if "api_key" in e["litellm_params"]]
    assert set(keys) == {"os.environ/ANTHROPIC_API_KEY", "os.environ/OPENAI_API_KEY"}  # never the key itself


def test_edge_publishes_every_address_and_only_enabled_apps_ports():
    override = stack_config.edge_compose_override(SETTINGS, ["100.64.0.7", "127.0.0.1"], ["litellm", "n8n"])
    ports = {(p["host_ip"], p["published"], p["target"]) for p in override["services"]["edge"]["ports"]}
    assert ports == {
        ("100.64.0.7", "8443", 8443),
        ("100.64.0.7", "8446", 8446),
        ("127.0.0.1", "8443", 8443),
        ("127.0.0.1", "8446", 8446),
    }


def test_tailscale_address_is_skipped_quietly_without_a_tailnet_and_named_with_one():
    assert stack_config.edge_addresses(SETTINGS, "", tailnet=False) == (["127.0.0.1"], [])
    addresses, warnings = stack_config.edge_addresses(SETTINGS, "", tailnet=True)
    assert addresses == ["127.0.0.1"] and "no tailnet address" in warnings[0]
    assert stack_config.edge_addresses(SETTINGS, "100.64.0.7", tailnet=True)[0] == ["100.64.0.7", "127.0.0.1"]


def test_instance_conf_maps_the_apps_host_ports_and_the_owner_credential(tmp_path):
    text = stack_config.edge_instance_conf(
        StackSettings(app_ports={"anythingllm": 9444, "dify": 8445, "n8n": 8446}), "pw"
    )
    assert 'map "" $edge_port_anythingllm { default 9444; }' in text
    assert '"Basic b3duZXI6cHc=" 1;' in text  # base64("owner:pw")
    with pytest.raises(stack_config.StackConfigError, match="EDGE_OWNER_PASSWORD"):
        stack_config.edge_instance_conf(SETTINGS, "")


def test_files_are_written_once_with_their_modes(tmp_path):
    files = stack_config.StackFiles(
        tmp_path / "litellm/config.yaml", tmp_path / "edge", tmp_path / "compose", STACKS_DIR
    )
    env = {"EDGE_OWNER_PASSWORD": "pw"}
    changed, _ = stack_config.write_stack_files(files, SETTINGS, ["litellm"], env, [], "", tailnet=False)
    assert len(changed) == 4
    assert oct((tmp_path / "edge/instance.conf").stat().st_mode & 0o777) == "0o600"
    assert stack_config.write_stack_files(files, SETTINGS, ["litellm"], env, [], "", tailnet=False)[0] == []
    with pytest.raises(stack_config.StackConfigError, match="no address"):
        stack_config.write_stack_files(
            files, StackSettings(edge_bind=("tailscale",)), ["litellm"], env, [], "", tailnet=False
        )


LOCAL = StackSettings(edge_bind=("10.0.2.15",), public_host="127.0.0.1", public_ports={8443: 40001, 8446: 40004})


def test_public_urls_name_the_port_a_client_uses():
    assert stack_config.public_url(SETTINGS, "n8n", "ai-platform-demo.tail1234.ts.net") == (
        "https://ai-platform-demo.tail1234.ts.net:8446"
    )
    # A local VM: loopback and the forwarded port, whatever the node calls itself.
    assert stack_config.public_url(LOCAL, "n8n", "ai-platform-demo") == "https://127.0.0.1:40004"


def test_redirects_and_the_index_use_the_forwarded_ports():
    assert 'map "" $edge_port_n8n { default 40004; }' in stack_config.edge_instance_conf(LOCAL, "pw")
    index = stack_config.edge_index_conf(LOCAL, ["n8n", "litellm"])
    assert "https://$host:40004/" in index and "https://$host:40001/litellm/" in index


def test_openclaw_gets_every_origin_the_owner_opens_it_from():
    origins = stack_config.control_ui_origins(SETTINGS, ["demo.tail1234.ts.net", "demo", "100.64.0.7"])
    assert origins == ["https://demo.tail1234.ts.net:8443", "https://demo:8443", "https://100.64.0.7:8443"]
    assert stack_config.control_ui_origins(LOCAL, ["demo", ""]) == ["https://127.0.0.1:40001", "https://demo:40001"]
    template = (STACKS_DIR / "clawdbot/openclaw.json").read_text()
    rendered = json.loads(stack_config.openclaw_config(template, origins))
    assert rendered["gateway"]["controlUi"] == {"basePath": "/clawdbot", "allowedOrigins": origins}
    assert rendered["gateway"]["auth"]["token"] == "${OPENCLAW_GATEWAY_TOKEN}"  # never the secret itself


def test_the_openclaw_config_is_rendered_only_for_an_instance_that_runs_it(tmp_path):
    files = stack_config.StackFiles(
        tmp_path / "litellm/config.yaml", tmp_path / "edge", tmp_path / "compose", STACKS_DIR
    )
    env = {"EDGE_OWNER_PASSWORD": "pw"}
    stack_config.write_stack_files(files, SETTINGS, ["litellm"], env, [], "", tailnet=False)
    assert not files.openclaw_config.exists()
    stack_config.write_stack_files(
        files, SETTINGS, ["clawdbot"], env, [], "100.64.0.7", node_names=["demo.tail1234.ts.net"]
    )
    origins = json.loads(files.openclaw_config.read_text())["gateway"]["controlUi"]["allowedOrigins"]
    assert origins == ["https://demo.tail1234.ts.net:8443", "https://100.64.0.7:8443"]
