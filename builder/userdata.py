"""Per-instance user-data: the agent's instance document, delivered by cloud-init's write_files.

MIME multipart with one text/cloud-config part today (more parts can join without changing the
format), rendered from `cloudinit/cloud-config.yaml.j2`. It carries names and choices only, never
a secret. Its size is measured against EC2's limit before any AWS call, gzip is used when it is
needed and enough, and an oversize result names its biggest parts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from builder.config.schema import PlatformConfig
from builder.errors import BuilderError
from builder.source_tree import ROOT

TEMPLATES = ROOT / "cloudinit"
INSTANCE_DOCUMENT_PATH = "/etc/ai-platform/instance.json"
EC2_USER_DATA_LIMIT = 16384  # bytes, before base64
TARGETS = ("aws", "local")


INSTANCE_NAME_MAX = 31
INSTANCE_NAME = re.compile(rf"[a-z][a-z0-9-]{{0,{INSTANCE_NAME_MAX - 1}}}")


def check_instance_name(name: str) -> str:
    """Instance names become hostnames, tags, IAM names and local paths: one safe shape for all."""
    if not INSTANCE_NAME.fullmatch(name):
        length = f" (this one has {len(name)})" if len(name) > INSTANCE_NAME_MAX else ""
        raise BuilderError(
            f"instance name {name!r}: use lowercase letters, digits and '-', starting with a letter, at most "
            f"{INSTANCE_NAME_MAX} characters{length}: the name becomes part of the instance's host name "
            "({platform}-{instance}) and of its AWS resource names (IAM role, launch template), which have "
            "length limits"
        )
    return name


class UserDataTooLarge(BuilderError):
    pass


@dataclass(frozen=True)
class UserData:
    mime: str  # what cloud-init reads
    payload: bytes  # what is sent: the MIME text, or its gzip when that was needed
    compressed: bool
    part_sizes: dict[str, int]  # name -> bytes, biggest first


DNS_LABEL_MAX = 63  # RFC 1035: the host name is one label of the tailnet's MagicDNS name


def hostname_for(config: PlatformConfig, instance: str) -> str:
    hostname = config.tailscale.hostname_pattern.format(platform=config.name, instance=instance)
    if len(hostname) > DNS_LABEL_MAX:
        raise BuilderError(
            f"instance {instance!r}: its host name {hostname!r} ({config.tailscale.hostname_pattern}) has "
            f"{len(hostname)} characters, and a DNS name's label holds at most {DNS_LABEL_MAX}: shorten the "
            "instance name or the platform's name"
        )
    return hostname


def instance_document(
    config: PlatformConfig,
    instance: str,
    target: str,
    *,
    volume_id: str | None = None,
    endpoints: dict[str, str] | None = None,
    tailnet: bool = True,
    edge_bind: list[str] | None = None,
    public: dict | None = None,
    owner_credentials: dict | None = None,
    gdrive_fw_cfg: str | bool | None = None,
) -> dict:
    """The agent's per-instance config (firstboot/instance_config.py reads it), version 1.

    `edge_bind` replaces edge.bind (a local VM's edge listens on the guest's NIC, which qemu forwards
    to); `public` is how clients reach the edge when that is not the tailnet name and the edge's own
    ports: {"host": ADDRESS, "ports": {"EDGE_PORT": CLIENT_PORT}} (a local VM's forwarded ports).
    `owner_credentials` says where the agent reads them ({"parameter": SSM NAME} or {"fw_cfg": NAME});
    the AWS target's default is its SSM parameter. `gdrive_fw_cfg` is where a local VM finds the
    rclone config (False: none stored, the mount stays off); on AWS, services.gdrive's SSM parameter."""
    if target not in TARGETS:
        raise BuilderError(f"target {target!r}: must be one of {', '.join(TARGETS)}")
    document = {
        "version": 1,
        "platform": config.name,
        "instance": instance,
        "target": target,
        "region": config.aws.region,
        "data_volume": {"id": volume_id} if volume_id else None,
        "tailscale": {
            "auth_key_parameter": config.tailscale.auth_key_parameter,
            "hostname": hostname_for(config, instance),
            "tags": list(config.tailscale.tags),
            # Only when set: documents of configs without one stay as they were.
            **(
                {"oauth_client_parameter": config.tailscale.oauth_client_parameter}
                if config.tailscale.oauth_client_parameter
                else {}
            ),
        }
        if tailnet
        else None,
        "providers": {
            "anthropic": config.providers.anthropic_api_key_parameter,
            "openai": config.providers.openai_api_key_parameter,
        },
        "services": config.services.enabled_names(),
        "ollama": {
            "models": list(config.ollama.models),
            "embedding_model": config.ollama.embedding_model,
            "keep_alive": config.ollama.keep_alive,
            "context_length": config.ollama.context_length,
        },
        "cloud_models": {"anthropic": config.providers.anthropic_model, "openai": config.providers.openai_model},
        "routing": {"tiers": config.routing.tiers.model_dump()},
        "edge": {
            "port": config.edge.port,
            "bind": list(edge_bind if edge_bind is not None else config.edge.bind),
            "app_ports": {app: getattr(config.services, app).edge_port for app in ("anythingllm", "dify", "n8n")},
        },
    }
    if config.services.gdrive.enabled and gdrive_fw_cfg is not False:
        gdrive = config.services.gdrive
        place = {"fw_cfg": gdrive_fw_cfg} if gdrive_fw_cfg else {"parameter": gdrive.rclone_config_parameter}
        document["gdrive"] = {**place, "remote": gdrive.remote, "read_only": gdrive.read_only}
    if config.services.signal_api.account:
        document["signal"] = {"account": config.services.signal_api.account}
    offline = [name for name, service in config.services.seed().items() if service.enabled and not service.internet]
    if config.security.egress.allow or offline:  # absent by default: an older agent knows no such field
        document["egress"] = {"allow": list(config.security.egress.allow), "offline": offline}
    if public:
        document["edge"]["public"] = public
    if owner_credentials is None and target == "aws":
        from builder.owner_credentials import parameter_name

        owner_credentials = {"parameter": parameter_name(config, instance)}
    if owner_credentials:
        document["owner_credentials"] = owner_credentials
    if endpoints:
        document["endpoints"] = endpoints
    if target == "aws" and config.image.root_volume_initialization_rate_mibps:
        # A root volume from a snapshot reads each block from S3 at its first read: the agent on AWS
        # reads the baked models ahead after boot, unless the launch pays AWS to initialize the volume.
        # Said only then: an agent baked before the read-ahead refuses keys it does not know, and the
        # default launch must still boot such an image.
        document["models_read_ahead"] = False
    return document


def render_cloud_config(config: PlatformConfig, document: dict) -> str:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    template = environment.get_template("cloud-config.yaml.j2")
    return template.render(
        platform=config.name,
        instance=document["instance"],
        hostname=hostname_for(config, document["instance"]),
        authorized_keys=list(config.ssh.authorized_keys),
        document_path=INSTANCE_DOCUMENT_PATH,
        document_json=json.dumps(document, indent=2, sort_keys=True),
    )


def render_user_data(config: PlatformConfig, document: dict, limit: int = EC2_USER_DATA_LIMIT) -> UserData:
    cloud_config = render_cloud_config(config, document)
    message = MIMEMultipart()
    # A boundary derived from the content: the same inputs give the same bytes (and the same launch plan).
    message.set_boundary("==ai-platform-" + hashlib.sha256(cloud_config.encode()).hexdigest()[:24] + "==")
    # us-ascii: 7bit, readable as it is sent (the template and the JSON are ASCII).
    message.attach(MIMEText(cloud_config, "cloud-config", "us-ascii"))
    mime = message.as_string()
    parts = _part_sizes(document, cloud_config, config)
    raw = mime.encode("utf-8")
    if len(raw) <= limit:
        return UserData(mime, raw, False, parts)
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    if len(packed) <= limit:
        return UserData(mime, packed, True, parts)
    biggest = ", ".join(f"{name} ({size} bytes)" for name, size in list(parts.items())[:3])
    raise UserDataTooLarge(
        f"user-data is {len(raw)} bytes ({len(packed)} gzipped), over EC2's limit of {limit} bytes; "
        f"the biggest parts: {biggest}. Move bulk into the image."
    )


def _part_sizes(document: dict, cloud_config: str, config: PlatformConfig) -> dict[str, int]:
    sizes = {f"instance.json {key}": len(json.dumps(value)) for key, value in document.items()}
    sizes["ssh.authorized_keys"] = sum(len(key) for key in config.ssh.authorized_keys)
    sizes["cloud-config (all)"] = len(cloud_config.encode())
    return dict(sorted(sizes.items(), key=lambda item: item[1], reverse=True))
