"""The stacks' per-instance files: what differs between instances of one image.

The stack files in the image are the same on every instance. What is not:

- LiteLLM's config.yaml: the baked local models, and Claude/GPT only when their keys exist;
- the edge's published addresses and ports (a compose override), its port and owner maps and its
  index page (nginx includes).

All of it is rendered here at every boot, from the instance config and the values the agent already
holds, and written only when it changed. JSON is written where YAML is read (JSON is YAML), so the
standard library is enough.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from firstboot.instance_config import EDGE_APPS, StackSettings
from firstboot.status import write_if_changed

# Routes every app uses: `local` for simple queries, `smart` for complex ones (seed: simple → local
# model, complex → Claude/GPT). Each falls back to the other.
LOCAL_ROUTE = "local"
SMART_ROUTE = "smart"
OLLAMA_API_BASE = "http://ollama:11434"
CLOUD_PROVIDERS = {  # provider -> (LiteLLM prefix, variable holding the key, route name)
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", "claude"),
    "openai": ("openai", "OPENAI_API_KEY", "gpt"),
}
# Inside the edge container: main server and the per-app servers (edge/nginx.conf listens on these).
EDGE_CONTAINER_PORTS = {"main": 8443, "anythingllm": 8444, "dify": 8445, "n8n": 8446}
EDGE_OWNER_USER = "owner"
EDGE_OWNER_VARIABLE = "EDGE_OWNER_PASSWORD"
SERVICE_TITLES = {
    "litellm": ("LiteLLM", "/litellm/"),
    "clawdbot": ("Clawdbot", "/clawdbot/"),
    "anythingllm": ("AnythingLLM", None),
    "dify": ("Dify", None),
    "n8n": ("n8n", None),
    "signal_api": ("Signal: link a phone (owner only)", "/signal/v1/qrcodelink?device_name=ai-platform"),
}


class StackConfigError(Exception):
    pass


@dataclass(frozen=True)
class StackFiles:
    litellm_config: Path  # /etc/ai-platform/litellm/config.yaml
    edge_dir: Path  # /etc/ai-platform/edge (instance.conf, index.conf)
    compose_dir: Path  # /etc/ai-platform/compose (edge.yaml)
    stacks_dir: Path = Path("/opt/ai-platform/stacks")  # the image's templates (clawdbot/openclaw.json)

    @property
    def openclaw_config(self) -> Path:  # /etc/ai-platform/clawdbot/openclaw.json
        return self.litellm_config.parent.parent / "clawdbot" / "openclaw.json"


def litellm_config(settings: StackSettings, providers_with_keys: Sequence[str]) -> dict:
    """LiteLLM's config: local models by name and as `local`, cloud models only when their key exists."""
    if not settings.ollama_models:
        raise StackConfigError("ollama.models is empty: LiteLLM needs at least one local model for `local`")
    models = []
    for model in settings.ollama_models:
        params = {"model": f"ollama_chat/{model}", "api_base": OLLAMA_API_BASE}
        models.append({"model_name": model, "litellm_params": params})
    # The first model is the everyday one; the last (the biggest, by convention of the list) stands in
    # for `smart` when no cloud key exists.
    models.append({"model_name": LOCAL_ROUTE, "litellm_params": models[0]["litellm_params"]})
    cloud_routes = []
    for provider in ("anthropic", "openai"):
        if provider not in providers_with_keys:
            continue
        prefix, variable, route = CLOUD_PROVIDERS[provider]
        params = {"model": f"{prefix}/{settings.cloud_models[provider]}", "api_key": f"os.environ/{variable}"}
        models.append({"model_name": route, "litellm_params": params})
        cloud_routes.append((route, params))
    if cloud_routes:
        models.append({"model_name": SMART_ROUTE, "litellm_params": cloud_routes[0][1]})
        smart_fallbacks = [route for route, _ in cloud_routes[1:]] + [LOCAL_ROUTE]
    else:
        models.append(
            {"model_name": SMART_ROUTE, "litellm_params": models[len(settings.ollama_models) - 1]["litellm_params"]}
        )
        smart_fallbacks = [LOCAL_ROUTE]
    return {
        "model_list": models,
        "router_settings": {
            "num_retries": 2,
            "timeout": 300,
            "allowed_fails": 3,
            "cooldown_time": 60,
            "fallbacks": [{LOCAL_ROUTE: [SMART_ROUTE]}, {SMART_ROUTE: smart_fallbacks}],
        },
        "litellm_settings": {"request_timeout": 600, "drop_params": True, "telemetry": False},
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            "database_url": "os.environ/DATABASE_URL",
        },
    }


def public_url(settings: StackSettings, app: str, node_name: str) -> str:
    """The URL a client opens for `app` (one with its own edge port), without a trailing slash: on
    the tailnet, the node's name (MagicDNS) and the app's port; locally, the forwarded address."""
    return f"https://{settings.public_host or node_name}:{settings.app_client_port(app)}"


def control_ui_origins(settings: StackSettings, names: Sequence[str]) -> list[str]:
    """Every origin a browser of the owner's opens OpenClaw's Control UI from: OpenClaw refuses a
    WebSocket from any origin it is not given (the edge is a proxy, so none of them is "local")."""
    port = settings.client_port(settings.edge_port)
    hosts = [settings.public_host, *names] if settings.public_host else list(names)
    return list(dict.fromkeys(f"https://{host}:{port}" for host in hosts if host))


def openclaw_config(template: str, origins: Sequence[str]) -> str:
    """The image's openclaw.json with this instance's allowed origins (secrets stay ${VAR} references)."""
    document = json.loads(template)
    document.setdefault("gateway", {}).setdefault("controlUi", {})["allowedOrigins"] = list(origins)
    return json.dumps(document, indent=2) + "\n"


def edge_addresses(settings: StackSettings, tailscale_ip: str, tailnet: bool) -> tuple[list[str], list[str]]:
    """The addresses the edge publishes on, and warnings for those it cannot use.

    'tailscale' is the node's tailnet address; an instance launched without a tailnet skips it quietly.
    """
    addresses, warnings = [], []
    for address in settings.edge_bind:
        if address == "tailscale":
            if tailscale_ip:
                addresses.append(tailscale_ip)
            elif tailnet:
                warnings.append("edge.bind names 'tailscale', but the node has no tailnet address yet")
        elif address not in addresses:
            addresses.append(address)
    return addresses, warnings


def edge_compose_override(settings: StackSettings, addresses: Sequence[str], services: Sequence[str]) -> dict:
    """Published ports of the edge: every bind address × the main port and each enabled app's port."""
    host_ports = {"main": settings.edge_port, **{app: settings.app_ports[app] for app in EDGE_APPS if app in services}}
    ports = [
        {"target": EDGE_CONTAINER_PORTS[name], "published": str(port), "host_ip": address, "protocol": "tcp"}
        for address in addresses
        for name, port in host_ports.items()
    ]
    return {"services": {"edge": {"ports": ports}}}


def edge_instance_conf(settings: StackSettings, owner_password: str) -> str:
    """nginx http-level maps: the apps' host ports (for redirects), and the owner's Basic credential."""
    if not owner_password:
        raise StackConfigError(f"{EDGE_OWNER_VARIABLE} is missing from .env: the edge's owner routes need it")
    credential = base64.b64encode(f"{EDGE_OWNER_USER}:{owner_password}".encode()).decode()
    lines = ["# Written by the firstboot agent at every boot. Holds the owner's credential: mode 0600."]
    for app in EDGE_APPS:  # the port a client uses (a local VM's forwarded one), for redirects
        lines.append(f'map "" $edge_port_{app} {{ default {settings.app_client_port(app)}; }}')
    lines.append(f'map $http_authorization $edge_owner {{ default 0; "Basic {credential}" 1; }}')
    return "\n".join(lines) + "\n"


def edge_index_conf(settings: StackSettings, services: Sequence[str]) -> str:
    """The index at /: every enabled service and its URL, on the host name the client used."""
    items = []
    for service, (title, path) in SERVICE_TITLES.items():
        if service not in services:
            continue
        if path is None:
            url = f"https://$host:{settings.app_client_port(service)}/"
        else:
            url = f"https://$host:{settings.client_port(settings.edge_port)}{path}"
        items.append(f'<li><a href=\\"{url}\\">{title}</a> <code>{url}</code></li>')
    body = (
        '<!doctype html><html><head><meta charset=\\"utf-8\\"><title>AI platform</title></head><body>'
        "<h1>AI platform</h1><ul>" + "".join(items) + "</ul></body></html>"
    )
    return (
        "# Written by the firstboot agent at every boot: the index of this instance's services.\n"
        "location = / {\n"
        "    default_type text/html;\n"
        f'    return 200 "{body}";\n'
        "}\n"
    )


def write_stack_files(
    files: StackFiles,
    settings: StackSettings,
    services: Sequence[str],
    env: Mapping[str, str],
    providers_with_keys: Sequence[str],
    tailscale_ip: str,
    tailnet: bool = True,
    node_names: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """Render and write every per-instance file; returns (paths changed, warnings). `node_names`: the
    names and addresses clients reach this node by (MagicDNS name, host name, tailnet address)."""
    changed: list[str] = []
    warnings: list[str] = []
    if "litellm" in services:
        text = json.dumps(litellm_config(settings, providers_with_keys), indent=2) + "\n"
        _write(files.litellm_config, text, 0o644, changed)
    if "clawdbot" in services:
        template = (files.stacks_dir / "clawdbot" / "openclaw.json").read_text(encoding="utf-8")
        text = openclaw_config(template, control_ui_origins(settings, [*node_names, tailscale_ip]))
        _write(files.openclaw_config, text, 0o644, changed)
    addresses, warnings = edge_addresses(settings, tailscale_ip, tailnet)
    if not addresses:
        raise StackConfigError("the edge has no address to publish on (edge.bind); nothing would reach the platform")
    override = json.dumps(edge_compose_override(settings, addresses, services), indent=2) + "\n"
    _write(files.compose_dir / "edge.yaml", override, 0o644, changed)
    _write(
        files.edge_dir / "instance.conf", edge_instance_conf(settings, env.get(EDGE_OWNER_VARIABLE, "")), 0o600, changed
    )
    _write(files.edge_dir / "index.conf", edge_index_conf(settings, services), 0o644, changed)
    return changed, warnings


def _write(path: Path, text: str, mode: int, changed: list[str]) -> None:
    if write_if_changed(path, text, mode):
        changed.append(str(path))
