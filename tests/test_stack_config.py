"""The stacks' per-instance files the agent renders (firstboot/apps/, written by firstboot/stack_config.py).

LiteLLM's config is checked by loading it as LiteLLM does (yaml.safe_load); the edge's files are
checked by the real nginx and compose in test_stack_files.py and test_stack_docker.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from stack_fixtures import STACKS_DIR

from firstboot import instance_config, stack_config
from firstboot.apps import MODULES, clawdbot, edge, litellm, n8n
from firstboot.instance_config import StackSettings

SETTINGS = StackSettings()


def routes(config: dict) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for entry in config["model_list"]:
        table.setdefault(entry["model_name"], []).append(entry["litellm_params"]["model"])
    return table


def test_without_cloud_keys_every_route_stays_local():
    config = yaml.safe_load(json.dumps(litellm.litellm_config(SETTINGS, [])))
    table = routes(config)
    assert table["local"] == ["ollama_chat/llama3.2:3b"]
    assert table["smart"] == ["ollama_chat/deepseek-r1:7b"]
    assert not any(model.startswith(("anthropic/", "openai/")) for models in table.values() for model in models)
    assert all(
        e["litellm_params"]["api_base"] == "http://ollama:11434"
        for e in config["model_list"]
        if e["litellm_params"]["model"].startswith("ollama_chat/")
    )
    # Both routes are the same Ollama: a fallback from one to the other would wait on it twice.
    assert config["router_settings"]["fallbacks"] == []
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_the_baked_embedding_model_is_the_embed_route_through_ollama():
    config = litellm.litellm_config(StackSettings(embedding_model="nomic-embed-text:v1.5"), [])
    [embed] = [e for e in config["model_list"] if e["model_name"] == "embed"]
    assert embed["litellm_params"] == {"model": "ollama/nomic-embed-text:v1.5", "api_base": "http://ollama:11434"}
    assert embed["model_info"] == {"mode": "embedding"}
    # Never a chat route's model, and no chat route falls back to it.
    assert "embed" not in json.dumps(config["router_settings"])


def test_claude_takes_complex_queries_when_its_key_exists_and_falls_back_to_gpt_then_local():
    config = litellm.litellm_config(SETTINGS, ["anthropic", "openai"])
    table = routes(config)
    assert table["smart"] == ["anthropic/claude-sonnet-4-5"]
    assert table["gpt"] == ["openai/gpt-4o"]
    assert config["router_settings"]["fallbacks"] == [
        {"local": ["smart"]},
        {"smart": ["gpt", "local"]},
        {"auto": ["local"]},  # keyed by the name asked for: a failing cloud tier gives way to local
    ]
    # A cloud endpoint that never answers gives way in seconds: its own timeouts, no SDK retries.
    cloud = [e["litellm_params"] for e in config["model_list"] if e["model_name"] in ("smart", "gpt", "claude")]
    assert all((p["timeout"], p["stream_timeout"], p["max_retries"]) == (45, 20, 0) for p in cloud)
    assert config["router_settings"]["retry_policy"]["TimeoutErrorRetries"] == 0
    assert config["router_settings"]["max_fallbacks"] == 2
    keys = [e["litellm_params"].get("api_key") for e in config["model_list"] if "api_key" in e["litellm_params"]]
    assert set(keys) == {"os.environ/ANTHROPIC_API_KEY", "os.environ/OPENAI_API_KEY"}  # never the key itself


def test_edge_publishes_every_address_and_only_enabled_apps_ports():
    override = edge.edge_compose_override(SETTINGS, ["100.64.0.7", "127.0.0.1"], ["litellm", "n8n"])
    ports = {(p["host_ip"], p["published"], p["target"]) for p in override["services"]["edge"]["ports"]}
    assert ports == {
        ("100.64.0.7", "8443", 8443),
        ("100.64.0.7", "8446", 8446),
        ("127.0.0.1", "8443", 8443),
        ("127.0.0.1", "8446", 8446),
    }


def test_tailscale_address_is_skipped_quietly_without_a_tailnet_and_named_with_one():
    assert edge.edge_addresses(SETTINGS, "", tailnet=False) == (["127.0.0.1"], [])
    addresses, warnings = edge.edge_addresses(SETTINGS, "", tailnet=True)
    assert addresses == ["127.0.0.1"] and "no tailnet address" in warnings[0]
    assert edge.edge_addresses(SETTINGS, "100.64.0.7", tailnet=True)[0] == ["100.64.0.7", "127.0.0.1"]


def test_instance_conf_maps_the_apps_host_ports_and_the_owner_credential(tmp_path):
    text = edge.edge_instance_conf(StackSettings(app_ports={"anythingllm": 9444, "dify": 8445, "n8n": 8446}), "pw")
    assert 'map "" $edge_port_anythingllm { default 9444; }' in text
    assert '"Basic b3duZXI6cHc=" 1;' in text  # base64("owner:pw")
    with pytest.raises(stack_config.StackConfigError, match="EDGE_OWNER_PASSWORD"):
        edge.edge_instance_conf(SETTINGS, "")


def instance(settings=SETTINGS, services=("litellm",), **values) -> stack_config.Instance:
    env = values.pop("env", {"EDGE_OWNER_PASSWORD": "pw", "LITELLM_KEY_N8N": "sk-n8n-test"})
    values = {"tailnet": False, "stacks_dir": STACKS_DIR, **values}
    return stack_config.Instance(settings, list(services), env, **values)


def test_files_are_written_once_with_their_modes(tmp_path):
    changed, _ = stack_config.write_stack_files(tmp_path, instance())
    assert len(changed) == 4
    assert oct((tmp_path / "edge/instance.conf").stat().st_mode & 0o777) == "0o600"
    assert stack_config.write_stack_files(tmp_path, instance())[0] == []
    with pytest.raises(stack_config.StackConfigError, match="no address"):
        stack_config.write_stack_files(tmp_path, instance(StackSettings(edge_bind=("tailscale",))))


def test_n8n_gets_a_ready_credential_for_the_gateway_with_its_own_key(tmp_path):
    stack_config.write_stack_files(tmp_path, instance(services=["litellm", "n8n"]))
    path = tmp_path / n8n.CREDENTIALS
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # it holds a key
    [credential] = json.loads(path.read_text())
    assert credential["type"] == "openAiApi"  # n8n's OpenAI credential: apiKey and url (n8n-nodes-base 2.37.10)
    assert credential["data"] == {"apiKey": "sk-n8n-test", "url": "http://litellm:4000/v1"}
    # An upsert on a fixed id: imported at every start, never a second copy.
    assert credential["id"] == n8n.CREDENTIAL_ID
    with pytest.raises(stack_config.StackConfigError, match="LITELLM_KEY_N8N"):
        stack_config.write_stack_files(tmp_path, instance(services=["n8n"], env={"EDGE_OWNER_PASSWORD": "pw"}))


def test_every_app_has_one_module_with_its_service_and_index_entry():
    """Adding an app means adding its module: every service the config knows has one, the edge's is always on."""
    from builder.config.schema import Services

    services = {module.SERVICE for module in MODULES}
    assert services == {*Services().seed()} - {"gdrive"} | {None}  # the owner's own (custom) are baked stacks
    assert MODULES[-1] is edge  # it renders the index of the others
    for module in MODULES:
        assert module.INDEX is None or (isinstance(module.INDEX[0], str) and module.INDEX[0])


def test_the_index_lists_exactly_the_enabled_apps(tmp_path):
    stack_config.write_stack_files(tmp_path, instance(services=["litellm", "n8n", "signal_api"]))
    index = (tmp_path / "edge/index.conf").read_text()
    assert [title for title in ("LiteLLM", "Clawdbot", "AnythingLLM", "Dify", "n8n") if f">{title}<" in index] == [
        "LiteLLM",
        "n8n",
    ]
    assert "/signal/v1/qrcodelink" in index


LOCAL = StackSettings(edge_bind=("10.0.2.15",), public_host="127.0.0.1", public_ports={8443: 40001, 8446: 40004})


def test_public_urls_name_the_port_a_client_uses():
    assert edge.public_url(SETTINGS, "n8n", "ai-platform-demo.tail1234.ts.net") == (
        "https://ai-platform-demo.tail1234.ts.net:8446"
    )
    # A local VM: loopback and the forwarded port, whatever the node calls itself.
    assert edge.public_url(LOCAL, "n8n", "ai-platform-demo") == "https://127.0.0.1:40004"


def test_redirects_and_the_index_use_the_forwarded_ports():
    assert 'map "" $edge_port_n8n { default 40004; }' in edge.edge_instance_conf(LOCAL, "pw")
    index = edge.edge_index_conf(LOCAL, [("n8n", "n8n", None), ("litellm", "LiteLLM", "/litellm/")])
    assert "https://$host:40004/" in index and "https://$host:40001/litellm/" in index


def test_openclaw_gets_every_origin_the_owner_opens_it_from():
    origins = clawdbot.control_ui_origins(SETTINGS, ["demo.tail1234.ts.net", "demo", "100.64.0.7"])
    assert origins == ["https://demo.tail1234.ts.net:8443", "https://demo:8443", "https://100.64.0.7:8443"]
    assert clawdbot.control_ui_origins(LOCAL, ["demo", ""]) == ["https://127.0.0.1:40001", "https://demo:40001"]
    template = (STACKS_DIR / "clawdbot/openclaw.json").read_text()
    rendered = json.loads(clawdbot.openclaw_config(template, origins))
    assert rendered["gateway"]["controlUi"] == {"basePath": "/clawdbot", "allowedOrigins": origins}
    assert rendered["gateway"]["auth"]["token"] == "${OPENCLAW_GATEWAY_TOKEN}"  # never the secret itself


def test_the_openclaw_config_is_rendered_only_for_an_instance_that_runs_it(tmp_path):
    stack_config.write_stack_files(tmp_path, instance())
    assert not (tmp_path / clawdbot.CONFIG).exists()
    stack_config.write_stack_files(
        tmp_path,
        instance(services=["clawdbot"], tailnet=True, tailscale_ip="100.64.0.7", node_names=["demo.tail1234.ts.net"]),
    )
    origins = json.loads((tmp_path / clawdbot.CONFIG).read_text())["gateway"]["controlUi"]["allowedOrigins"]
    assert origins == ["https://demo.tail1234.ts.net:8443", "https://100.64.0.7:8443"]


def test_the_readme_states_the_cloud_timeouts_the_config_renders():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    timeouts = litellm.CLOUD_TIMEOUTS
    assert f"gets {timeouts['stream_timeout']} s to its first token and {timeouts['timeout']} s in all" in " ".join(
        readme.split()
    )


def test_auto_sends_simple_tiers_to_local_and_complex_ones_to_smart_by_default():
    for keys in ([], ["anthropic"]):
        config = litellm.litellm_config(SETTINGS, keys)
        [auto] = [e["litellm_params"] for e in config["model_list"] if e["model_name"] == "auto"]
        assert auto["model"] == "auto_router/complexity_router"
        tiers = auto["complexity_router_config"]["tiers"]
        assert tiers == {"SIMPLE": "local", "MEDIUM": "local", "COMPLEX": "smart", "REASONING": "smart"}
        assert auto["complexity_router_default_model"] == "local"
        # Every tier's route is a model of this config (LiteLLM would fail at its first request).
        assert set(tiers.values()) <= set(routes(config))


def test_auto_tiers_come_from_the_instance_config():
    document = {
        "version": 1,
        "platform": "ai-platform",
        "instance": "alpha",
        "target": "local",
        "region": "us-east-1",
        "data_volume": {"id": "vol-0123456789abcdef0"},
        "ollama": {"models": ["llama3.2:3b", "qwen2.5:7b"]},
        "routing": {"tiers": {"medium": "qwen2.5:7b", "reasoning": "local"}},
    }
    settings = instance_config.parse_instance_config(document, "instance.json").stack
    assert settings.auto_tiers == {"simple": "local", "medium": "qwen2.5:7b", "complex": "smart", "reasoning": "local"}
    [auto] = [e for e in litellm.litellm_config(settings, [])["model_list"] if e["model_name"] == "auto"]
    assert auto["litellm_params"]["complexity_router_default_model"] == "qwen2.5:7b"
    document["routing"]["tiers"]["medium"] = "mistral:7b"  # not baked
    with pytest.raises(instance_config.InstanceConfigError, match=r"routing.tiers.medium.*mistral:7b"):
        instance_config.parse_instance_config(document, "instance.json")


def test_the_readme_routing_table_is_the_one_the_default_config_renders():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    unindented = "\n".join(line.strip() for line in readme.splitlines())  # it sits in a list item
    assert litellm.routing_table(StackSettings()) in unindented
