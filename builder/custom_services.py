"""The owner's own services (services.custom.NAME), as the bake lays them into the image.

Each one becomes what a seed stack is, written from its config entry instead of by hand:

  opt/ai-platform/stacks/NAME/compose.yaml       its compose project (JSON is YAML)
  opt/ai-platform/stacks/NAME/directories        its data directories, made at every start
  etc/systemd/system/ai-platform-stack@NAME.service.d/needs.conf   the seed stacks it needs
  opt/ai-platform/stacks/edge/custom/servers.conf    the edge's TLS server for one with a port of its own
  opt/ai-platform/stacks/edge/custom/locations.conf  the edge's route for one under a sub-path
  opt/ai-platform/stacks/custom.json             what the agent reads: ports, paths, titles
  opt/ai-platform/env-contract.json              its ${generated:NAME} secrets and LiteLLM key, added
  opt/ai-platform/stacks/litellm/compose.custom.yaml   those keys, for ensure-keys.py to register

Its image is pinned in the lock like every other (CUSTOM_NAME_IMAGE), so the bake pulls it by
digest and `builder images lock` resolves it.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.config.schema import GENERATED_REFERENCE, LITELLM_KEY_REFERENCE, CustomService, PlatformConfig
from builder.images import Pin

STACKS = Path("opt/ai-platform/stacks")
UNITS = Path("etc/systemd/system")
CONTRACT = Path("opt/ai-platform/env-contract.json")
MANIFEST = STACKS / "custom.json"
EDGE_SERVERS = STACKS / "edge/custom/servers.conf"
EDGE_LOCATIONS = STACKS / "edge/custom/locations.conf"
LITELLM_OVERRIDE = STACKS / "litellm/compose.custom.yaml"
SECRET_BYTES = 32


def enabled(config: PlatformConfig) -> dict[str, CustomService]:
    return {name: service for name, service in sorted(config.services.custom.items()) if service.enabled}


def _upper(name: str) -> str:
    return name.upper().replace("-", "_")


def image_variable(name: str) -> str:
    return f"CUSTOM_{_upper(name)}_IMAGE"


def secret_variable(name: str, secret: str) -> str:
    return f"CUSTOM_{_upper(name)}_{secret}"


def split_image(reference: str) -> tuple[str, str, str | None]:
    """(repository with its registry, tag, digest or None): Docker's short names are Docker Hub's."""
    reference, _, digest = reference.partition("@")
    name, _, tag = reference.rpartition(":")
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    return name, tag, digest or None


def pins(config: PlatformConfig, locked: list[Pin]) -> list[Pin]:
    """A pin per enabled service of the owner's: its digest from the config, else from the lock's
    entry of the same variable and reference (what `builder images lock` resolved), else unresolved."""
    by_variable = {pin.variable: pin for pin in locked}
    result = []
    for name, service in enabled(config).items():
        repository, tag, digest = split_image(service.image)
        variable = image_variable(name)
        known = by_variable.get(variable)
        resolved = None
        if digest is None and known and (known.repository, known.tag) == (repository, tag):
            digest, resolved = known.digest, known.resolved  # with the record of where the lock read it
        source = f"services.custom.{name}.image in the platform config"
        result.append(Pin(variable, repository, tag, digest, source, resolved))
    return result


def litellm_key_variable(name: str) -> str:
    return f"LITELLM_KEY_{_upper(name)}"


def compose_document(name: str, service: CustomService) -> dict:
    """Its compose project: on the platform's network, its image never pulled, healthy before ready."""
    litellm_key = f"${{{litellm_key_variable(name)}:?missing in .env}}"
    environment = {
        key: GENERATED_REFERENCE.sub(
            lambda m: f"${{{secret_variable(name, m.group(1))}:?missing in .env}}", value
        ).replace(LITELLM_KEY_REFERENCE, litellm_key)
        for key, value in service.environment.items()
    }
    volumes = [
        f"${{AI_PLATFORM_DATA:-/mnt/data}}{host.removeprefix('/mnt/data')}:{container}"
        for host, container in service.volumes.items()
    ]
    variable = image_variable(name)
    container = {
        "image": f"${{{variable}:?no image pin: /opt/ai-platform/stacks/images.env is missing {variable}}}",
        "pull_policy": "never",
        "restart": "unless-stopped",
        **({"command": list(service.command)} if service.command is not None else {}),
        "environment": environment,
        "volumes": volumes,
        "networks": {"ai-platform": {}},
        "healthcheck": {
            "test": list(service.healthcheck),
            "interval": "10s",
            "timeout": "5s",
            "retries": 30,
            "start_period": "30s",
        },
    }
    return {
        "services": {name: container},
        "networks": {"ai-platform": {"name": "ai-platform", "external": True}},
    }


def directories(name: str, service: CustomService) -> str:
    lines = [f"# {name}'s data (services.custom.{name}.volumes): PATH-UNDER-DATA UID:GID MODE\n"]
    lines += [f"{host.removeprefix('/mnt/data/').rstrip('/')} {service.user} 0750\n" for host in service.volumes]
    return "".join(lines)


def unit_drop_in(name: str, service: CustomService) -> str:
    units = " ".join(f"ai-platform-stack@{stack}.service" for stack in service.needs)
    text = f"# services.custom.{name}.needs: the seed stacks it starts after and requires.\n[Unit]\n"
    return text + (f"Requires={units}\nAfter={units}\n" if units else "")


def _upstream(name: str, service: CustomService) -> str:
    # A variable in proxy_pass: resolved per request, so a stopped service answers 502 and the edge starts.
    variable = f"$custom_{name.replace('-', '_')}"
    return (
        f"        set {variable} http://{name}:{service.port};\n"
        "        proxy_buffering off;\n"
        f"        proxy_pass {variable};\n"
    )


def edge_servers(services: dict[str, CustomService]) -> str:
    text = "# The owner's services with a TLS port of their own (services.custom.NAME.edge_port).\n"
    for name, service in services.items():
        if service.edge_port is not None:
            text += (
                f"server {{\n    listen {service.edge_port} ssl;\n    include /etc/nginx/routes.conf;\n"
                f"    location / {{\n{_upstream(name, service)}    }}\n}}\n"
            )
    return text


def edge_locations(services: dict[str, CustomService]) -> str:
    text = "# The owner's services under a sub-path of the main port (services.custom.NAME.path), passed as it is.\n"
    for name, service in services.items():
        if service.path is not None:
            text += f"location = {service.path.rstrip('/')} {{ return 301 {service.path}; }}\n"
            text += f"location {service.path} {{\n{_upstream(name, service)}}}\n"
    return text


def manifest(services: dict[str, CustomService]) -> dict:
    return {
        "version": 1,
        "services": {
            name: {"title": service.title or name, "edge_port": service.edge_port, "path": service.path}
            for name, service in services.items()
        },
    }


def litellm_keys_override(services: dict[str, CustomService]) -> dict:
    """The LiteLLM stack's addition: each key for ensure-keys.py to register after every start."""
    keys = {
        f"AI_PLATFORM_APP_KEY_{_upper(name)}": f"${{{litellm_key_variable(name)}:?missing in .env}}"
        for name, service in services.items()
        if service.uses_litellm_key()
    }
    return {"services": {"litellm": {"environment": keys}}} if keys else {}


def contract_variables(services: dict[str, CustomService]) -> list[dict]:
    keys = [
        {
            "name": litellm_key_variable(name),
            "source": "generated",
            "bytes": 24,
            "prefix": "sk-",
            "stacks": ["litellm", name],
            "description": f"services.custom.{name}: its own LiteLLM key (${{litellm:key}}).",
        }
        for name, service in services.items()
        if service.uses_litellm_key()
    ]
    return keys + [
        {
            "name": secret_variable(name, secret),
            "source": "generated",
            "bytes": SECRET_BYTES,
            "stacks": [name],
            "description": f"services.custom.{name}: ${{generated:{secret}}}, made at the first boot.",
        }
        for name, service in services.items()
        for secret in service.generated_secrets()
    ]


def write_into(rootfs: Path, config: PlatformConfig) -> list[str]:
    """Lay the enabled services of the owner's into a copy of image/rootfs; returns their names."""
    services = enabled(config)
    for name, service in services.items():
        stack = rootfs / STACKS / name
        stack.mkdir(parents=True)
        (stack / "compose.yaml").write_text(
            f"# services.custom.{name}, written by `builder bake` from the platform config.\n"
            + json.dumps(compose_document(name, service), indent=2)
            + "\n"
        )
        (stack / "directories").write_text(directories(name, service))
        drop_in = rootfs / UNITS / f"ai-platform-stack@{name}.service.d" / "needs.conf"
        drop_in.parent.mkdir(parents=True)
        drop_in.write_text(unit_drop_in(name, service))
    (rootfs / EDGE_SERVERS).write_text(edge_servers(services))
    (rootfs / EDGE_LOCATIONS).write_text(edge_locations(services))
    (rootfs / MANIFEST).write_text(json.dumps(manifest(services), indent=2) + "\n")
    keys = litellm_keys_override(services)
    if keys:
        (rootfs / LITELLM_OVERRIDE).write_text(json.dumps(keys, indent=2) + "\n")
    added = contract_variables(services)
    if added:
        contract = json.loads((rootfs / CONTRACT).read_text())
        contract["variables"] += added
        (rootfs / CONTRACT).write_text(json.dumps(contract, indent=2) + "\n")
    return list(services)
