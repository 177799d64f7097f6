"""The edge NGINX, per instance: the addresses and ports it publishes (a compose override), its port
and owner maps, and the index of the instance's apps (nginx includes); the public URL of each app
served on a port of its own."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from firstboot.apps.base import File, Instance, Rendered, StackConfigError
from firstboot.instance_config import EDGE_APPS, StackSettings

SERVICE = None  # always: the way in to every app
INDEX = None
COMPOSE_OVERRIDE = "compose/edge.yaml"
INSTANCE_CONF = "edge/instance.conf"
INDEX_CONF = "edge/index.conf"
STATE_URL = "/.ai-platform-edge/state.json"  # edge/nginx.conf serves the agent's edge/state.json there
# Inside the edge container: main server and the per-app servers (edge/nginx.conf listens on these).
EDGE_CONTAINER_PORTS = {"main": 8443, "anythingllm": 8444, "dify": 8445, "n8n": 8446}
EDGE_OWNER_USER = "owner"
EDGE_OWNER_VARIABLE = "EDGE_OWNER_PASSWORD"


def public_url(settings: StackSettings, app: str, node_name: str) -> str:
    """The URL a client opens for `app` (one with its own edge port), without a trailing slash: on
    the tailnet, the node's name (MagicDNS) and the app's port; locally, the forwarded address."""
    return f"https://{settings.public_host or node_name}:{settings.app_client_port(app)}"


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


def edge_compose_override(
    settings: StackSettings, addresses: Sequence[str], services: Sequence[str], custom_ports: Sequence[int] = ()
) -> dict:
    """Published ports of the edge: every bind address × the main port, each enabled app's port and
    the port of each of the owner's services with one (the edge listens on that same port inside)."""
    host_ports = {"main": settings.edge_port, **{app: settings.app_ports[app] for app in EDGE_APPS if app in services}}
    targets = [(EDGE_CONTAINER_PORTS[name], port) for name, port in host_ports.items()]
    targets += [(port, port) for port in custom_ports]
    ports = [
        {"target": target, "published": str(port), "host_ip": address, "protocol": "tcp"}
        for address in addresses
        for target, port in targets
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


# Each app's state on the index, from the state file the agent keeps (firstboot/edge_state.py), asked
# again every 5 s. In an nginx string: single quotes only, and no dollar sign (a variable to nginx).
INDEX_SCRIPT = (
    "function show(stacks) { document.querySelectorAll('li[data-stack]').forEach(function (li) {"
    " var state = stacks[li.dataset.stack] || 'unknown'; li.querySelector('.state').textContent = state;"
    " li.className = state.split(':')[0]; }); }"
    " function look() { fetch('"
    + STATE_URL
    + "', {cache: 'no-store'}).then(function (r) { return r.ok ? r.json() : {}; })"
    ".then(function (d) { show(d.stacks || {}); }, function () { show({}); }); }"
    " look(); setInterval(look, 5000);"
)
INDEX_STYLE = ".state { font-weight: bold; } .healthy .state { color: green; } .starting .state { color: darkorange; }"


def edge_index_conf(
    settings: StackSettings, index: Sequence[tuple[str, str, str | None]], own_ports: Mapping[str, int] | None = None
) -> str:
    """The index at /: each (service, title, path) entry and its URL, on the host name the client used.
    A service with no path has a port of its own: the seed's in settings, the owner's in `own_ports`."""
    items = []
    for service, title, path in index:
        if path is None:
            port = (own_ports or {}).get(service) or settings.app_ports[service]
            url = f"https://$host:{settings.client_port(port)}/"
        else:
            url = f"https://$host:{settings.client_port(settings.edge_port)}{path}"
        items.append(
            f'<li data-stack=\\"{service}\\"><a href=\\"{url}\\">{title}</a> <code>{url}</code> '
            '<span class=\\"state\\">…</span></li>'
        )
    body = (
        '<!doctype html><html><head><meta charset=\\"utf-8\\"><title>AI platform</title>'
        f"<style>{INDEX_STYLE}</style></head><body>"
        "<h1>AI platform</h1><ul>" + "".join(items) + f"</ul><script>{INDEX_SCRIPT}</script></body></html>"
    )
    return (
        "# Written by the firstboot agent at every boot: the index of this instance's services.\n"
        "location = / {\n"
        "    default_type text/html;\n"
        f'    return 200 "{body}";\n'
        "}\n"
    )


def render(instance: Instance) -> Rendered:
    settings = instance.settings
    addresses, warnings = edge_addresses(settings, instance.tailscale_ip, instance.tailnet)
    if not addresses:
        raise StackConfigError("the edge has no address to publish on (edge.bind); nothing would reach the platform")
    own_ports = {name: service.edge_port for name, service in instance.custom.items() if service.edge_port}
    override = edge_compose_override(settings, addresses, instance.services, list(own_ports.values()))
    override = json.dumps(override, indent=2) + "\n"
    owner_password = instance.env.get(EDGE_OWNER_VARIABLE, "")
    files = [
        File(COMPOSE_OVERRIDE, override),
        File(INSTANCE_CONF, edge_instance_conf(settings, owner_password), 0o600),
        File(INDEX_CONF, edge_index_conf(settings, instance.index, own_ports)),
    ]
    return Rendered(files, warnings)
