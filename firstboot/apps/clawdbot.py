"""OpenClaw's openclaw.json: the image's template with this instance's allowed Control UI origins."""

from __future__ import annotations

import json
from collections.abc import Sequence

from firstboot.apps.base import File, Instance, Rendered
from firstboot.instance_config import StackSettings

SERVICE = "clawdbot"
INDEX = ("Clawdbot", "/clawdbot/")
CONFIG = "clawdbot/openclaw.json"
TEMPLATE = "clawdbot/openclaw.json"  # under the image's stacks folder


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


def render(instance: Instance) -> Rendered:
    template = (instance.stacks_dir / TEMPLATE).read_text(encoding="utf-8")
    origins = control_ui_origins(instance.settings, [*instance.node_names, instance.tailscale_ip])
    return Rendered([File(CONFIG, openclaw_config(template, origins))])
