"""Where a platform instance's services answer, inside the tailnet (MagicDNS name, edge ports)."""

from __future__ import annotations

from builder.config.schema import EdgeService, PlatformConfig
from builder.userdata import hostname_for

SUB_PATH_SERVICES = ("litellm", "clawdbot")  # served under the edge's main port


def service_urls(config: PlatformConfig, instance: str) -> dict[str, str]:
    host = hostname_for(config, instance)
    base = f"https://{host}:{config.edge.port}"
    urls = {"index": f"{base}/"}
    for name, service in config.services.seed().items():
        if not service.enabled:
            continue
        if isinstance(service, EdgeService):
            urls[name] = f"https://{host}:{service.edge_port}/"
        elif name in SUB_PATH_SERVICES:
            urls[name] = f"{base}/{name}"
    for name, custom in sorted(config.services.custom.items()):
        if custom.enabled:
            urls[name] = f"https://{host}:{custom.edge_port}/" if custom.edge_port else f"{base}{custom.path}"
    return urls
