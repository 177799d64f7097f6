"""OpenClaw's openclaw.json: the image's template with this instance's allowed Control UI origins and,
when the config names the bot's number (services.signal_api.account), its Signal channel on, through
the Signal plugin baked into the image (OpenClaw 2026.9 ships Signal as @openclaw/signal)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from firstboot.apps.base import File, Instance, Rendered
from firstboot.instance_config import StackSettings

SERVICE = "clawdbot"
INDEX = ("Clawdbot", "/clawdbot/")
CONFIG = "clawdbot/openclaw.json"
TEMPLATE = "clawdbot/openclaw.json"  # under the image's stacks folder
SIGNAL_PLUGIN = "/opt/openclaw-plugins/signal"  # the clawdbot stack mounts the image's plugins there


def control_ui_origins(settings: StackSettings, names: Sequence[str]) -> list[str]:
    """Every origin a browser of the owner's opens OpenClaw's Control UI from: OpenClaw refuses a
    WebSocket from any origin it is not given (the edge is a proxy, so none of them is "local")."""
    port = settings.client_port(settings.edge_port)
    hosts = [settings.public_host, *names] if settings.public_host else list(names)
    return list(dict.fromkeys(f"https://{host}:{port}" for host in hosts if host))


def openclaw_config(
    template: str, origins: Sequence[str], signal_account: str | None = None, signal_plugin: str = SIGNAL_PLUGIN
) -> str:
    """The image's openclaw.json with this instance's allowed origins (secrets stay ${VAR} references)
    and, with an account, the Signal channel on for it: until the owner links the number OpenClaw
    skips the channel as unlinked and runs the rest."""
    document = json.loads(template)
    document.setdefault("gateway", {}).setdefault("controlUi", {})["allowedOrigins"] = list(origins)
    if signal_account:
        document["channels"]["signal"].update(enabled=True, account=signal_account)
        document.setdefault("plugins", {}).setdefault("load", {})["paths"] = [signal_plugin]
    return json.dumps(document, indent=2) + "\n"


def render(instance: Instance) -> Rendered:
    template = (instance.stacks_dir / TEMPLATE).read_text(encoding="utf-8")
    origins = control_ui_origins(instance.settings, [*instance.node_names, instance.tailscale_ip])
    account = instance.settings.signal_account if "signal_api" in instance.services else None
    return Rendered([File(CONFIG, openclaw_config(template, origins, account))])
