"""Where a platform instance's services answer, inside the tailnet (edge ports), at the name its
certificate carries (builder/certificate_status.py: MagicDNS's, host.tailnet.ts.net), or at the short
host name before the instance has reported one."""

from __future__ import annotations

from builder.config.schema import EdgeService, PlatformConfig
from builder.userdata import hostname_for
from firstboot.certificate_report import CertificateReport, parse_line

SUB_PATH_SERVICES = ("litellm", "clawdbot")  # served under the edge's main port


def service_urls(config: PlatformConfig, instance: str, host: str | None = None) -> dict[str, str]:
    host = host or hostname_for(config, instance)
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


def tailnet_bases(config, name: str, host: str | None = None) -> dict[str, str]:
    """Where the instance answers in the tailnet (builder.endpoints), without trailing slashes."""
    urls = service_urls(config, name, host)
    bases = {"main": urls["index"].rstrip("/")}
    bases.update({app: urls[app].rstrip("/") for app in ("anythingllm", "dify", "n8n") if app in urls})
    return bases


def local_bases(config, name: str) -> dict[str, str]:
    """A running local instance's forwarded ports (none when it is not running)."""
    from builder.local.instances import LocalInstance

    state = LocalInstance(config, name).state() or {}
    ports = state.get("ports", {})
    address = config.local.forward_address
    bases = {}
    if str(config.edge.port) in ports:
        bases["main"] = f"https://{address}:{ports[str(config.edge.port)]}"
    for app in ("anythingllm", "dify", "n8n"):
        port = str(getattr(config.services, app).edge_port)
        if port in ports:
            bases[app] = f"https://{address}:{ports[port]}"
    return bases


def reported_certificate(config, name: str, target: str, ec2=None) -> CertificateReport | None:
    """The certificate instance `name` last reported (None before its agent's first line)."""
    if target == "local":
        from builder.local.instances import LocalInstance

        line = LocalInstance(config, name).certificate()
    else:
        from builder.aws.instances import list_instances

        if ec2 is None:
            from builder.aws.clients import AwsClients

            ec2 = AwsClients(config).ec2
        running = [view for view in list_instances(ec2, config.name, name) if view.state in ("pending", "running")]
        line = running[-1].certificate if running else "-"
    return parse_line(line) if line and line != "-" else None
