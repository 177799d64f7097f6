"""The platform config, version 1: every choice a user makes, typed, with safe defaults.

Each field's `description` is the reference documentation (README and `builder config
reference` are generated from it). Validation messages say what would be valid.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from firstboot.egress import SERVICE_ADDRESSES

CONFIG_VERSION = 1

# Canonical's AWS account: the owner of the official Ubuntu AMIs.
# Canonical's account per AWS partition (Canonical's "Find Ubuntu images on AWS", ownership verification).
CANONICAL_OWNER_IDS = {"aws": "099720109477", "aws-us-gov": "513442679011", "aws-cn": "837727238323"}


def _pattern_check(pattern: str, what: str):
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return check


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"must be a CIDR block such as 203.0.113.0/24 ({exc})") from None
    return value


def _model_ref(value: str) -> str:
    name, sep, tag = value.partition(":")
    if not sep or not tag:
        raise ValueError("must name a tag, as NAME:TAG (for example llama3.2:3b)")
    if tag == "latest":
        raise ValueError("':latest' moves under you; name a fixed tag (for example llama3.2:3b)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?", name) or not re.fullmatch(
        r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag
    ):
        raise ValueError("must be NAME:TAG with lowercase letters, digits, '.', '_', '-' (e.g. qwen2.5:7b)")
    return value


def _ssm_parameter(value: str) -> str:
    # Values only: never echo the input, a user may have pasted the secret itself here.
    if not re.fullmatch(r"/[A-Za-z0-9_.\-/]{1,1010}", value) or "//" in value:
        raise ValueError(
            "must be the NAME of an SSM parameter such as /ai-platform/tailscale/auth-key "
            "(a leading '/', then letters, digits, '_', '.', '-', '/'); "
            "never the secret itself: store it with `builder secrets set`"
        )
    return value


def _region(value: str) -> str:
    from builder.config.regions import region_problem

    problem = region_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Region = Annotated[str, AfterValidator(_region)]
Cidr = Annotated[str, AfterValidator(_cidr)]
ModelRef = Annotated[str, AfterValidator(_model_ref)]
SsmParameter = Annotated[str, AfterValidator(_ssm_parameter)]
Port = Annotated[int, Field(ge=1, le=65535)]
KmsKey = Annotated[
    str,
    AfterValidator(
        _pattern_check(
            r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+|alias/[A-Za-z0-9/_-]+|"
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
            "a KMS key id, key ARN, alias/NAME or alias ARN",
        )
    ),
]
PLATFORM_NAME_MAX = 32


def _platform_name(value: str) -> str:
    if not re.fullmatch(rf"[a-z][a-z0-9-]{{0,{PLATFORM_NAME_MAX - 2}}}[a-z0-9]", value):
        length = f" (this one has {len(value)})" if len(value) > PLATFORM_NAME_MAX else ""
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValueError(
            f"{shown!r} is not a platform name: 2 to {PLATFORM_NAME_MAX} characters{length}, lowercase letters, "
            "digits and '-', starting with a letter and ending with a letter or digit; it starts the names of "
            "the platform's AWS resources, its tags and host names, which have length limits"
        )
    return value


PlatformName = Annotated[str, AfterValidator(_platform_name)]
AccountId = Annotated[str, AfterValidator(_pattern_check(r"\d{12}", "a 12-digit AWS account id"))]


class Section(BaseModel):
    # strict: YAML already types its values; "100" for a size is a mistake worth reporting.
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


def _cron(value: str) -> str:
    from builder.cron import parse

    parse(value)  # raises CronError (a ValueError): pydantic names the field
    return value


def _timezone(value: str) -> str:
    from builder.cron import check_timezone

    return check_timezone(value)


class Schedule(Section):
    """When the instance runs: Auto Scaling scheduled actions on its group (builder/aws/schedule.py)."""

    timezone: Annotated[str, AfterValidator(_timezone)] = Field(
        "UTC", description="IANA time zone the start and stop times are in (e.g. Europe/Berlin); DST is followed."
    )
    start: Annotated[str, AfterValidator(_cron)] | None = Field(
        None,
        description="When the instance starts: a five-field cron expression (minute hour day month weekday), e.g. "
        '"0 8 * * 1-5". null: started only by `builder start`.',
    )
    stop: Annotated[str, AfterValidator(_cron)] | None = Field(
        None,
        description='When the instance stops (its data volume kept), e.g. "0 20 * * 1-5". null: stopped only by '
        "`builder stop` (a start-only schedule).",
    )

    @model_validator(mode="after")
    def _some_time(self) -> Schedule:
        if self.start is None and self.stop is None:
            raise ValueError("schedule: give start, stop or both (or remove schedule: always on)")
        return self


class AwsSettings(Section):
    region: Region = Field("us-east-1", description="AWS region of the instance, its volume and the AMI.")
    profile: str | None = Field(None, description="AWS CLI profile to use; null uses the default chain.")
    instance_type: str = Field(
        "m6i.2xlarge",
        description="EC2 instance type (checked against botocore's list). 8 vCPU / 32 GiB runs the stack "
        "with CPU-only Ollama; pick a g-family type for GPU inference.",
    )
    subnet_id: str | None = Field(
        None,
        description="Subnet to launch and bake in; null picks a default-VPC subnet in the data volume's zone (an "
        "account with no default VPC must set it). Instances need a way out (a NAT gateway will do); the bake "
        "needs a public subnet (internet gateway, public IPs on launch), as Packer connects over SSH from here.",
        pattern=r"^subnet-[0-9a-f]{8,17}$",
    )
    ssh_ingress_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="CIDRs allowed to reach SSH (22/tcp). Empty: no inbound port but Tailscale's 41641/udp. "
        "0.0.0.0/0 (the whole internet) is warned about.",
    )
    schedule: Schedule | None = Field(
        None,
        description="Hours the instance runs, carried out by its Auto Scaling group's scheduled actions; null: "
        "always on. Keys: `timezone` (IANA name, default UTC; DST followed), `start` and `stop` (five-field cron: "
        'minute hour day-of-month month day-of-week, e.g. {timezone: Europe/Berlin, start: "0 8 * * 1-5", stop: '
        '"0 20 * * 1-5"}). Start only: stopped by hand; stop only: started by hand. `builder start`/`builder stop` '
        "switch it in between.",
    )

    @model_validator(mode="after")
    def _known_instance_type(self) -> AwsSettings:
        from builder.config.instance_types import suggest_instance_types

        suggestion = suggest_instance_types(self.instance_type)
        if suggestion is not None:
            raise ValueError(f"instance_type: unknown instance type {self.instance_type!r}{suggestion}")
        return self


class DataVolume(Section):
    size_gib: int = Field(100, ge=1, le=65536, description="Size of the EBS data volume mounted at /mnt/data.")
    type: Literal["gp3", "gp2", "io1", "io2"] = Field("gp3", description="EBS volume type.")
    iops: int | None = Field(
        3000, ge=100, description="Provisioned IOPS (gp3: at least 3000; io1/io2: required; gp2: must be null)."
    )
    throughput_mibps: int | None = Field(
        125, ge=125, description="Throughput in MiB/s (gp3 only, at least 125; null for other types)."
    )
    encrypted: bool = Field(True, description="Encrypt the data volume.")
    kms_key_id: KmsKey | None = Field(None, description="KMS key for the data volume; null uses aws/ebs.")
    availability_zone: str | None = Field(
        None,
        description="Zone of the data volume (and so of the instance); null takes the region's first zone "
        "with a usable subnet.",
        pattern=r"^[a-z]{2,4}(-[a-z]+)+-\d[a-z]$",  # its region and a letter; the region part is checked below
    )

    @model_validator(mode="after")
    def _type_specific(self) -> DataVolume:
        if self.type == "gp3":
            if self.iops is not None and self.iops < 3000:
                raise ValueError("iops: gp3 volumes have at least 3000 IOPS")
        elif self.type == "gp2":
            if self.iops is not None:
                raise ValueError("iops: gp2 volumes take no provisioned IOPS; set iops: null")
        elif self.iops is None:
            raise ValueError(f"iops: {self.type} volumes need provisioned IOPS")
        if self.type != "gp3" and self.throughput_mibps is not None:
            raise ValueError(f"throughput_mibps: only gp3 takes a throughput; set it to null for {self.type}")
        if self.kms_key_id is not None and not self.encrypted:
            raise ValueError("kms_key_id: a KMS key needs encrypted: true")
        return self


class Service(Section):
    enabled: bool = Field(True, description="Run this service.")
    internet: bool = Field(
        True,
        description="false: this service's container is cut off the internet (it still reaches the platform's "
        "containers and security.egress.allow); possible for the services with a fixed address: "
        + ", ".join(SERVICE_ADDRESSES)
        + ".",
    )


class EdgeService(Service):
    """An app that cannot live under a sub-path: the edge NGINX serves it on a TLS port of its own."""

    edge_port: Port


_EDGE_PORT_HELP = "TLS port of the edge NGINX for this app; its seed path redirects here."


# One class per app, so that writing only `enabled:` keeps that app's default port.
class AnythingLLMService(EdgeService):
    edge_port: Port = Field(8444, description=_EDGE_PORT_HELP)


class DifyService(EdgeService):
    edge_port: Port = Field(8445, description=_EDGE_PORT_HELP)


class N8nService(EdgeService):
    edge_port: Port = Field(8446, description=_EDGE_PORT_HELP)


class SignalService(Service):
    account: str | None = Field(
        None,
        description="The bot's Signal number (E.164, +15551234567): Clawdbot's Signal channel is on for it, "
        "waiting until `builder signal link NAME` links it; null: the channel is off.",
        pattern=r"^\+[1-9][0-9]{6,14}$",
    )


class GdriveService(Service):
    """Google Drive, an rclone mount on the host at /mnt/data/gdrive, seen by AnythingLLM and n8n at /gdrive."""

    rclone_config_parameter: SsmParameter = Field(
        "/ai-platform/gdrive/rclone-config",
        description="SSM SecureString holding the rclone config (`builder secrets set rclone-config --file F`); "
        "locally the same command keeps it in local.state_dir.",
    )
    remote: str = Field(
        "gdrive",
        description="The remote of that config to mount (rclone's name for it).",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$",
    )
    read_only: bool = Field(True, description="Mount it read-only (the apps read documents; nothing writes back).")


# Names the seed already uses for a stack, a container or a folder under /mnt/data: a service of the
# owner's own gets none of them (its name is its stack, unit instance, container host name and folder).
RESERVED_SERVICE_NAMES = frozenset(
    {"data", "edge", "postgres", "redis", "weaviate", "ollama", "litellm", "anythingllm", "clawdbot", "dify", "n8n"}
    | {"signal-api", "signal_api", "gdrive", "platform", "backups", "custom", "tls", "compose"}
)
# Ports of the seed (architecture.md: SSH, Dify 80, Clawdbot 3000, AnythingLLM 3001, LiteLLM 4000,
# n8n 5678, Signal 8080/8081, the edge 8443 and HTTPS 443 in front of it ("443 → 8443"), Ollama 11434,
# Tailscale 41641) and the edge's health port. No port the edge publishes takes one, but the edge's own
# main port may be 8443 or 443: both lead to its index and sub-path routes, as the architecture has it.
SEED_PORTS = frozenset({22, 80, 443, 3000, 3001, 4000, 5678, 8080, 8081, 8443, 11434, 41641})
EDGE_MAIN_PORTS = frozenset({443, 8443})
# Inside the edge's container, the apps' servers listen on these whatever port they are published on
# (edge/nginx.conf, firstboot/apps/edge.py), and a service of the owner's listens on its own edge_port:
# on one of these, its requests would reach the app's server, not its own.
EDGE_APP_CONTAINER_PORTS = {8444: "anythingllm", 8445: "dify", 8446: "n8n"}
SEED_NEEDS = ("data", "ollama", "litellm")  # what a service of the owner's may start after and require
# Paths the edge's main port routes for the seed (nginx.conf): a sub-path of the owner's takes none.
SEED_PATHS = ("/", "/litellm/", "/clawdbot/", "/__openclaw__/", "/signal/", "/anythingllm/", "/dify/", "/n8n/")
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
GENERATED_REFERENCE = re.compile(r"\$\{generated:([A-Z][A-Z0-9_]{0,40})\}")
LITELLM_KEY_REFERENCE = "${litellm:key}"


def _image_ref(value: str) -> str:
    """REGISTRY/PATH:TAG or PATH:TAG (Docker Hub), optionally @sha256:DIGEST; never without a fixed tag."""
    reference, _, digest = value.partition("@")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError("digest: must be @sha256:<64 hex digits>")
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not name:
        raise ValueError("must name a tag, as REPOSITORY:TAG (for example ghcr.io/open-webui/open-webui:v0.6.5)")
    if tag == "latest":
        raise ValueError("':latest' moves under you; name a fixed tag")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag) or not re.fullmatch(
        r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*", name
    ):
        raise ValueError("must be REPOSITORY:TAG in lowercase (for example docker.io/searxng/searxng:2025.5.1-aaaa)")
    return value


ImageRef = Annotated[str, AfterValidator(_image_ref)]


class CustomService(Section):
    """A service of the owner's own (`builder service add` writes one from a template): baked into the
    image as a compose project of its own, routed by the edge, started by its own unit."""

    enabled: bool = Field(True, description="Run this service.")
    title: str | None = Field(
        None, description="Its entry on the index page; null: its name.", pattern=r"^[^<>\"&\\]{1,60}$"
    )
    image: ImageRef = Field(
        description="Container image by fixed tag (REPOSITORY:TAG, optionally @sha256:DIGEST); "
        "`builder images lock` adds it to the lock and resolves its digest."
    )
    command: list[str] | None = Field(None, description="Its command (the image's own when null).")
    port: Port = Field(description="The port the container listens on (inside the platform's network).")
    edge_port: Port | None = Field(None, description="A TLS port of the edge of its own (set this or path).")
    path: str | None = Field(
        None,
        description="A sub-path of the edge's main port, /NAME/ (set this or edge_port); the path passes as it "
        "is, so the app must serve under it.",
        pattern=r"^/[a-z0-9][a-z0-9._-]*/$",
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Its environment; `${generated:NAME}` in a value is a secret made at the first boot and "
        "kept on the data volume; `${litellm:key}` is its own LiteLLM virtual key (spend booked to it; needs "
        "litellm).",
    )
    volumes: dict[str, str] = Field(
        default_factory=dict,
        description="Data directories, host path (under /mnt/data/NAME) to container path; made at start.",
    )
    user: str = Field(
        "0:0", description="UID:GID that owns its data directories (the container's user).", pattern=r"^\d+:\d+$"
    )
    healthcheck: list[str] = Field(
        description="Compose healthcheck test, e.g. [CMD, curl, -fsS, http://127.0.0.1:8080/health]: its unit is "
        "active, and the boot ready, only once it passes.",
        min_length=2,
    )
    needs: list[Literal["data", "ollama", "litellm"]] = Field(
        default_factory=list, description="Seed stacks it starts after and requires."
    )
    memory_mib: int = Field(512, ge=16, le=262144, description="Memory it needs (for `launch`'s capacity check).")

    @model_validator(mode="after")
    def _consistent(self) -> CustomService:
        if (self.edge_port is None) == (self.path is None):
            raise ValueError("set one of edge_port (a TLS port of its own) or path (/NAME/ under the main port)")
        if self.healthcheck[0] not in ("CMD", "CMD-SHELL"):
            raise ValueError("healthcheck: must start with CMD or CMD-SHELL, as a compose healthcheck test")
        for name, value in self.environment.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"environment: {name!r} is not a variable name (letters, digits, '_')")
            rest = GENERATED_REFERENCE.sub("", value).replace(LITELLM_KEY_REFERENCE, "")
            if "${" in rest or "$" in rest.replace("$$", ""):
                raise ValueError(
                    f"environment.{name}: '$' only as ${{generated:NAME}} (NAME in UPPER_SNAKE_CASE), "
                    f"{LITELLM_KEY_REFERENCE} or '$$' for a literal '$'"
                )
        if self.uses_litellm_key() and "litellm" not in self.needs:
            raise ValueError(f"needs: {LITELLM_KEY_REFERENCE} in its environment needs litellm")
        for host, container in self.volumes.items():
            if not container.startswith("/"):
                raise ValueError(f"volumes.{host}: the container path {container!r} must be absolute")
        return self

    def uses_litellm_key(self) -> bool:
        return any(LITELLM_KEY_REFERENCE in value for value in self.environment.values())

    def generated_secrets(self) -> list[str]:
        """The names of its ${generated:NAME} secrets, in order of appearance."""
        names = [match for value in self.environment.values() for match in GENERATED_REFERENCE.findall(value)]
        return list(dict.fromkeys(names))


class Services(Section):
    """The services of the seed architecture. Postgres, Redis and Weaviate follow the apps that need them."""

    ollama: Service = Field(default_factory=Service, description="Ollama, local models (11434).")
    litellm: Service = Field(default_factory=Service, description="LiteLLM gateway (4000), served at /litellm.")
    anythingllm: AnythingLLMService = Field(default_factory=AnythingLLMService, description="AnythingLLM (3001).")
    clawdbot: Service = Field(default_factory=Service, description="Clawdbot (OpenClaw gateway), served at /clawdbot.")
    dify: DifyService = Field(default_factory=DifyService, description="Dify.")
    n8n: N8nService = Field(default_factory=N8nService, description="n8n (5678).")
    signal_api: SignalService = Field(
        default_factory=SignalService, description="Signal REST API (8080, json-rpc mode)."
    )
    gdrive: GdriveService = Field(
        default_factory=GdriveService,
        description="Google Drive rclone mount at /mnt/data/gdrive; stays off until its rclone config is stored.",
    )
    custom: dict[str, CustomService] = Field(
        default_factory=dict, description="Services of the owner's own, by name (`builder service add`)."
    )

    def seed(self) -> dict[str, Service]:
        """The seed's services by name, in the schema's order (without the owner's own)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "custom"}

    def enabled_names(self) -> list[str]:
        """Every enabled service: the seed's in order, then the owner's own by name."""
        seed = [name for name, service in self.seed().items() if service.enabled]
        return seed + [name for name, service in sorted(self.custom.items()) if service.enabled]


class Ollama(Section):
    models: list[ModelRef] = Field(
        default_factory=lambda: ["llama3.2:3b", "qwen2.5:7b", "deepseek-r1:7b"],
        description="Models baked into the image, each NAME:TAG.",
    )
    # anything-llm v1.16.0 docker/.env.example names nomic-embed-text for Ollama (as :latest, which
    # moves); v1.5 is the fixed tag public projects pull from Ollama's library and serve.
    embedding_model: ModelRef = Field(
        "nomic-embed-text:v1.5",
        description="Embedding model baked beside `models`; LiteLLM serves it as `embed` (AnythingLLM's "
        "embedder). Without it, AnythingLLM would download one from the internet at the first upload.",
    )
    keep_alive: str = Field(
        "5m",
        description="How long a model stays loaded after a request (OLLAMA_KEEP_ALIVE: 30s, 5m, 24h, -1).",
        pattern=r"^(-1|\d+(s|m|h))$",
    )
    context_length: int = Field(4096, ge=256, le=1048576, description="Default context window in tokens.")

    @model_validator(mode="after")
    def _unique(self) -> Ollama:
        duplicates = sorted({m for m in self.models if self.models.count(m) > 1})
        if duplicates:
            raise ValueError(f"models: listed more than once: {', '.join(duplicates)}")
        if self.embedding_model in self.models:
            raise ValueError(f"embedding_model: {self.embedding_model} is also in models; it is baked anyway")
        return self

    @property
    def baked(self) -> list[str]:
        """Every model the image holds: the chat models, then the embedding model."""
        return [*self.models, self.embedding_model]


class Tailscale(Section):
    auth_key_parameter: SsmParameter = Field(
        "/ai-platform/tailscale/auth-key",
        description="SSM SecureString parameter holding the Tailscale auth key (read by the instance role).",
    )
    oauth_client_parameter: SsmParameter | None = Field(
        None,
        description="SSM SecureString parameter holding a Tailscale OAuth client (auth_keys scope, the tags "
        "below): each instance mints its own single-use key from it and auth_key_parameter is not used. "
        "Recommended; store it with `builder secrets set-tailscale-oauth`.",
    )
    hostname_pattern: str = Field(
        "{platform}-{instance}",
        description="Tailscale hostname; {platform} and {instance} are replaced.",
        pattern=r"^[a-z0-9{}-]+$",
    )
    tags: list[Annotated[str, Field(pattern=r"^tag:[a-z0-9][a-z0-9-]*$")]] = Field(
        default_factory=lambda: ["tag:ai-platform"], description="ACL tags the node advertises (tag:NAME)."
    )

    @model_validator(mode="after")
    def _placeholders(self) -> Tailscale:
        unknown = set(re.findall(r"{([^}]*)}", self.hostname_pattern)) - {"platform", "instance"}
        if unknown or self.hostname_pattern.count("{") != self.hostname_pattern.count("}"):
            raise ValueError("hostname_pattern: the only placeholders are {platform} and {instance}")
        if "{instance}" not in self.hostname_pattern:
            raise ValueError("hostname_pattern: must contain {instance}, or every instance gets one name")
        return self


CloudModel = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class Providers(Section):
    anthropic_api_key_parameter: SsmParameter | None = Field(
        None, description="SSM parameter with an Anthropic API key; null: no Claude models."
    )
    openai_api_key_parameter: SsmParameter | None = Field(
        None, description="SSM parameter with an OpenAI API key; null: no GPT models."
    )
    anthropic_model: CloudModel = Field(
        "claude-sonnet-4-5", description="Anthropic model behind LiteLLM's `smart` route when the key exists."
    )
    openai_model: CloudModel = Field(
        "gpt-4o", description="OpenAI model behind LiteLLM's `smart` route when the key exists."
    )


RouteName = Annotated[str, Field(pattern=r"^(local|smart|[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+)$")]


class RoutingTiers(Section):
    """Where LiteLLM's `auto` sends each complexity tier: `local` (the first local model), `smart`
    (Claude/GPT when a key exists, else the last local model) or one of `ollama.models`."""

    simple: RouteName = Field("local", description="Greetings, short factual questions.")
    medium: RouteName = Field("local", description="Everyday requests; also a request with no user text.")
    complex: RouteName = Field("smart", description="Code, technical and multi-part requests.")
    reasoning: RouteName = Field("smart", description="Requests that ask for step-by-step reasoning.")


class Routing(Section):
    tiers: RoutingTiers = Field(default_factory=RoutingTiers, description="LiteLLM's `auto`: route per tier.")


class Edge(Section):
    port: Port = Field(
        8443,
        description="TLS port of the edge NGINX: the index and the sub-path routes. 8443, 443 (HTTPS, which the "
        "seed's architecture sends to them) or a port that is none of the seed's.",
    )
    bind: list[str] = Field(
        default_factory=lambda: ["tailscale", "127.0.0.1"],
        description="Addresses NGINX listens on: IP addresses, or 'tailscale' for the node's tailnet address. "
        "An address outside the tailnet and loopback (0.0.0.0, a VPC address) is warned about.",
    )

    @model_validator(mode="after")
    def _addresses(self) -> Edge:
        if not self.bind:
            raise ValueError("bind: name at least one address ('tailscale' or an IP address)")
        for index, address in enumerate(self.bind):
            if address == "tailscale":
                continue
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"bind.{index}: {address!r} is neither 'tailscale' nor an IP address") from None
        return self


class Mirrors(Section):
    """Where the bake fetches from, for restricted networks. Mirrors change no byte of the image (but
    rclone: distribution, which bakes the distribution's rclone instead of the pinned release)."""

    apt: str | None = Field(
        None,
        description="Debian/Ubuntu archive mirror URL used during the bake; null: the image's own sources.",
        pattern=r"^https?://\S+$",
    )
    registry: str | None = Field(
        None,
        description="Container registry mirror URL serving every locked image at its path without the "
        "registry host (docker.io/library/postgres → MIRROR/library/postgres); null: the images' registries.",
        pattern=r"^https?://\S+$",
    )
    models: str | None = Field(
        None,
        description="Mirror of the Ollama registry (https://registry.ollama.ai); null: that registry.",
        pattern=r"^https?://\S+$",
    )
    wheels: str | None = Field(
        None,
        description="Where the build host gets the agent's wheels: a PyPI-compatible index URL, or an absolute "
        "directory of wheels (pip --no-index); null: pip's own settings (PIP_INDEX_URL, pip.conf).",
        pattern=r"^(https?://\S+|/\S*)$",
    )
    rclone: str = Field(
        "https://downloads.rclone.org",
        description="Where the pinned rclone release comes from (a mirror of downloads.rclone.org, checked against "
        "its sha256); 'distribution': the distribution's older package instead.",
        pattern=r"^(distribution|https?://\S+)$",
    )
    tailscale_apt: str = Field(
        "https://pkgs.tailscale.com/stable",
        description="Tailscale's apt repository (or a mirror of it); 'none' leaves Tailscale out of the image.",
        pattern=r"^(none|https?://\S+)$",
    )
    allow_insecure_http: bool = Field(
        False,
        description="Let the registry, models, wheels and tailscale_apt mirrors be http:// URLs. Off: anyone "
        "on the path could answer in their place (a digest for `builder images lock`, wheels, models, "
        "Tailscale's key), so such a mirror is refused naming its field. apt and rclone may be http:// "
        "either way: apt checks every archive against the base's keyring, rclone against its pinned sha256.",
    )

    @model_validator(mode="after")
    def _plain_http_is_opted_into(self) -> Mirrors:
        if self.allow_insecure_http:
            return self
        for name in INSECURE_CHECKED_MIRRORS:
            url = getattr(self, name)
            if isinstance(url, str) and url.startswith("http://"):
                raise ValueError(
                    f"{name}: {url} is plain http: use https://, or set image.mirrors.allow_insecure_http: true "
                    "to take its answers unauthenticated"
                )
        return self


# The mirrors whose http:// needs image.mirrors.allow_insecure_http: nothing checks what they answer
# but the transport. Not apt (every archive is checked against the base image's keyring) nor rclone
# (the zip against the sha256 in image/provision/rclone.env), over any transport.
INSECURE_CHECKED_MIRRORS = ("registry", "models", "wheels", "tailscale_apt")


class Image(Section):
    mirrors: Mirrors = Field(default_factory=Mirrors, description="Sources for the bake in restricted networks.")
    base_ami_owner: AccountId | None = Field(
        None,
        description="Owner of the base AMI; null: Canonical's account in the region's partition (099720109477, "
        "GovCloud 513442679011, China 837727238323).",
    )
    base_ami_name_filter: str = Field(
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
        description="Name filter for the base AMI; the newest match is used and recorded.",
    )
    # The GPU image's base (an NVIDIA aws.instance_type, by EC2's GpuInfo): AWS's Deep Learning Base
    # AMI with the driver and the NVIDIA Container Toolkit (why: builder/aws/gpu.py).
    gpu_base_ami_owner: str = Field(
        "amazon",
        description="Owner of the GPU image's base AMI (an account id, or the alias 'amazon').",
        pattern=r"^(amazon|\d{12})$",
    )
    gpu_base_ami_name_filter: str = Field(
        "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
        description="Name filter for the GPU image's base AMI (an NVIDIA GPU instance type); the newest match is used.",
    )
    ami_name: str = Field(
        "{platform}-{build_id}",
        description="Name of baked AMIs; {platform} and {build_id} are replaced ({build_id} is required).",
        pattern=r"^[A-Za-z0-9()\[\] ./'@_{}-]{3,128}$",
    )
    root_volume_size_gib: int = Field(
        100, ge=8, le=16384, description="Root volume of the image: Docker images and models live here."
    )
    root_volume_initialization_rate_mibps: int | None = Field(
        None,
        ge=100,
        le=300,
        description="EBS Provisioned Rate for Volume Initialization of each instance's root volume (100-300 MiB/s, "
        "billed): baked images and models are read at that rate instead of lazily from S3. Null: AWS's default.",
    )
    encrypted: bool = Field(True, description="Encrypt the AMI's snapshots.")
    kms_key_id: KmsKey | None = Field(None, description="KMS key for the AMI in aws.region; null uses aws/ebs.")
    copy_to_regions: list[Region] = Field(default_factory=list, description="Regions to copy each AMI to.")
    region_kms_key_ids: dict[Region, KmsKey] = Field(
        default_factory=dict, description="KMS key per copy region (region: key); missing regions use aws/ebs."
    )
    share_with_accounts: list[AccountId] = Field(
        default_factory=list, description="Accounts allowed to launch the AMI. Empty: private."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Image:
        if "{build_id}" not in self.ami_name:
            raise ValueError("ami_name: must contain {build_id}: AMI names are unique per region")
        if len(set(self.copy_to_regions)) != len(self.copy_to_regions):
            raise ValueError("copy_to_regions: a region is listed twice")
        stray = sorted(set(self.region_kms_key_ids) - set(self.copy_to_regions))
        if stray:
            raise ValueError(f"region_kms_key_ids: {', '.join(stray)} not in copy_to_regions")
        if self.kms_key_id is not None and not self.encrypted:
            raise ValueError("kms_key_id: a KMS key needs encrypted: true")
        if self.share_with_accounts and self.encrypted:
            # Snapshots under the AWS-managed aws/ebs key cannot be shared with another account.
            if self.kms_key_id is None or self.kms_key_id.endswith("alias/aws/ebs"):
                raise ValueError(
                    "share_with_accounts: an encrypted AMI can be shared only under a customer-managed KMS key "
                    "(aws/ebs cannot be shared): set kms_key_id to one whose key policy lets those accounts use it"
                )
            unkeyed = [region for region in self.copy_to_regions if region not in self.region_kms_key_ids]
            if unkeyed:
                raise ValueError(
                    f"share_with_accounts: the copies in {', '.join(unkeyed)} would be under aws/ebs, which cannot "
                    "be shared: give each a customer-managed key in region_kms_key_ids"
                )
        return self


class Local(Section):
    base_image: Literal["debian-12", "ubuntu-22.04"] = Field(
        "debian-12",
        description="Base of the local image: 'debian-12' is built here with mmdebstrap; 'ubuntu-22.04' "
        "downloads the cloud image at ubuntu_image_url.",
    )
    ubuntu_image_url: str | None = Field(
        None, description="URL of the Ubuntu 22.04 cloud image (base_image: ubuntu-22.04).", pattern=r"^https?://\S+$"
    )
    ubuntu_image_sha256: str | None = Field(
        None, description="SHA-256 of that image, from Canonical's SHA256SUMS.", pattern=r"^[0-9a-f]{64}$"
    )
    accelerator: Literal["auto", "tcg", "kvm"] = Field(
        "auto",
        description="qemu accelerator: 'auto' is KVM where a probe boots a kernel under it within seconds, "
        "else TCG (said in one line); 'tcg' (works everywhere, slow) and 'kvm' force a choice.",
    )
    cpus: int = Field(2, ge=1, le=64, description="vCPUs of local VMs.")
    memory_mib: int = Field(
        24576,
        ge=1024,
        le=262144,
        description="Memory of local VMs. The default runs every service with a 7B model loaded (the services' "
        "documented needs add up to about 23 GiB); `launch` says when it is less than the enabled services need.",
    )
    disk_size_gib: int = Field(
        64,
        ge=4,
        le=2048,
        description="Root disk of the local image (sparse): the pinned images (about 22 GB) and the default models "
        "(11.4 GB) with headroom; `bake` says when it is too small for the images and models.",
    )
    data_disk_size_gib: int = Field(40, ge=1, le=16384, description="Data disk per local instance (sparse).")
    state_dir: str = Field(
        "~/.local/share/ai-platform-builder",
        description="Where local images, data disks and instance state live (outside the repo).",
    )
    forward_address: str = Field(
        "127.0.0.1", description="Host address the VM's edge ports are forwarded to (loopback by default)."
    )

    @model_validator(mode="after")
    def _ubuntu_source(self) -> Local:
        if self.base_image == "ubuntu-22.04" and (self.ubuntu_image_url is None or self.ubuntu_image_sha256 is None):
            raise ValueError("base_image: ubuntu-22.04 needs ubuntu_image_url and ubuntu_image_sha256")
        try:
            ipaddress.ip_address(self.forward_address)
        except ValueError:
            raise ValueError("forward_address: must be an IP address such as 127.0.0.1") from None
        return self


# A key ARN, as Data Lifecycle Manager's CmkArn takes it (botocore's dlm model: no alias, no bare id).
_KEY_ARN = re.compile(r"arn:aws(-[a-z]{1,4}){0,2}:kms:(?P<region>([a-z]+-){2,3}\d):\d{12}:key/[A-Za-z0-9-]+")


class Snapshots(Section):
    """EBS snapshots of each data volume, taken off the volume by Amazon Data Lifecycle Manager on a
    schedule of AWS's: one policy per platform (`builder launch` makes it and keeps it current)."""

    enabled: bool = Field(
        True,
        description="Snapshot the data volumes on a schedule. false: builder makes, changes and deletes no "
        "snapshot policy at all (for an account that forbids Data Lifecycle Manager, or snapshots taken "
        "otherwise); one made before goes on until deleted in the EC2 console.",
    )
    # The on-volume backup (ai-platform-backup.timer) starts at 03:30 plus up to 30 min of random
    # delay, instance time (UTC), and dumps for some minutes; DLM starts within the hour after its
    # time, so 05:00 UTC takes each snapshot after that night's dump: it holds a consistent pg_dump.
    time_utc: str = Field(
        "05:00",
        description="When the daily snapshot starts (UTC, HH:MM; AWS starts it within the hour after): after "
        "the on-volume backup (03:30-04:00), so each snapshot also holds that night's consistent database dump.",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
    )
    keep_daily: int = Field(7, ge=1, le=1000, description="Daily snapshots kept per data volume.")
    keep_weekly: int = Field(
        4, ge=0, le=1000, description="Weekly snapshots kept per data volume (0: no weekly schedule)."
    )
    weekly_day: Literal["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"] = Field(
        "SUN", description="Day of the weekly snapshot (at time_utc): MON, TUE, WED, THU, FRI, SAT or SUN."
    )
    copy_to_region: Region | None = Field(
        None,
        description="Copy each snapshot to this region too (kept as long as the original): a copy that "
        "outlives the region; null: no copy.",
    )
    copy_kms_key: str | None = Field(
        None,
        description="KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID, in copy_to_region) the copies are "
        "encrypted with; null: that region's aws/ebs key. Snapshots themselves always have the data volume's key.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Snapshots:
        if self.copy_kms_key is not None:
            if self.copy_to_region is None:
                raise ValueError("copy_kms_key: a key for the copies needs copy_to_region")
            match = _KEY_ARN.fullmatch(self.copy_kms_key)
            if match is None:
                raise ValueError(
                    "copy_kms_key: must be a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); Data Lifecycle Manager "
                    "takes no alias or bare key id"
                )
            if match["region"] != self.copy_to_region:
                raise ValueError(
                    f"copy_kms_key: the key is in {match['region']}, the copies in copy_to_region "
                    f"{self.copy_to_region}: a key serves its own region only"
                )
        return self


class Backups(Section):
    snapshots: Snapshots = Field(default_factory=Snapshots, description="Snapshots of the data volumes, by AWS.")


_SSH_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]{16,}( .*)?"
)


def _ssh_public_key(value: str) -> str:
    if not _SSH_KEY.fullmatch(value.strip()):
        raise ValueError("must be an SSH public key line (ssh-ed25519 AAAA… comment)")
    return value.strip()


class Ssh(Section):
    authorized_keys: list[Annotated[str, AfterValidator(_ssh_public_key)]] = Field(
        default_factory=list,
        description="Public keys for the image's default user. Empty: no default user is created at all.",
    )


def _ipv4_cidr(value: str) -> str:
    network = ipaddress.ip_network(_cidr(value), strict=True)
    if network.version != 4:
        raise ValueError("must be an IPv4 CIDR block (the platform's Docker networks are IPv4 only)")
    return value


class Egress(Section):
    allow: list[Annotated[str, AfterValidator(_ipv4_cidr)]] = Field(
        default_factory=list,
        description="IPv4 CIDR blocks the containers may reach although the egress policy closes them "
        "(the VPC, the tailnet, link-local): a database in the VPC, for example 10.0.5.0/24.",
    )


class Security(Section):
    egress: Egress = Field(default_factory=Egress, description="What the platform's containers may reach.")


class PlatformConfig(Section):
    version: Literal[1] = Field(description="Config format version. This builder reads version 1.")
    name: PlatformName = Field(
        "ai-platform",
        description="Platform name: tags, resource names and hostnames start with it. 2 to 32 characters: "
        "lowercase letters, digits and '-', a letter first, no '-' last.",
    )
    target: Literal["aws", "local"] = Field(
        "aws",
        description="Where commands act when --target is not given (bake, launch, status, destroy, upgrade, "
        "credentials, userdata, secrets set, signal link): aws (EC2) or local (qemu on this machine).",
    )
    aws: AwsSettings = Field(default_factory=AwsSettings, description="Where instances run on AWS.")
    data_volume: DataVolume = Field(default_factory=DataVolume, description="The EBS volume that keeps all data.")
    services: Services = Field(default_factory=Services, description="Which services of the platform run.")
    ollama: Ollama = Field(default_factory=Ollama, description="Local models.")
    tailscale: Tailscale = Field(default_factory=Tailscale, description="Joining the tailnet.")
    providers: Providers = Field(default_factory=Providers, description="Cloud model providers.")
    routing: Routing = Field(default_factory=Routing, description="LiteLLM's `auto` route: local or cloud per request.")
    edge: Edge = Field(default_factory=Edge, description="The edge NGINX.")
    image: Image = Field(default_factory=Image, description="The baked machine image.")
    local: Local = Field(default_factory=Local, description="The local qemu target.")
    ssh: Ssh = Field(default_factory=Ssh, description="SSH access (off by default; the tailnet is the way in).")
    backups: Backups = Field(default_factory=Backups, description="Copies of the data off its volume.")
    security: Security = Field(default_factory=Security, description="The containers' egress policy.")

    @model_validator(mode="after")
    def _cross_section(self) -> PlatformConfig:
        owners: dict[int, str] = {}
        _claim_edge_port("edge.port", self.edge.port, owners, allowed=EDGE_MAIN_PORTS)
        for service_name, service in self.services.seed().items():
            if isinstance(service, EdgeService) and service.enabled:
                _claim_edge_port(f"services.{service_name}.edge_port", service.edge_port, owners)
        self._check_custom_services(owners)
        for name, service in self.services.seed().items():
            if not service.internet and name not in SERVICE_ADDRESSES:
                raise ValueError(
                    f"services.{name}.internet: false is possible only for {', '.join(SERVICE_ADDRESSES)} "
                    "(the services with a fixed address on the platform's network, by which the rules know them)"
                )
        for tier in RoutingTiers.model_fields:
            route = getattr(self.routing.tiers, tier)
            if route not in ("local", "smart") and route not in self.ollama.models:
                raise ValueError(
                    f"routing.tiers.{tier}: {route} is not local, smart or one of ollama.models "
                    f"({', '.join(self.ollama.models)})"
                )
        zone = self.data_volume.availability_zone
        if zone is not None and not zone.startswith(self.aws.region):
            raise ValueError(f"data_volume.availability_zone: {zone} is not a zone of aws.region {self.aws.region}")
        if self.backups.snapshots.copy_to_region == self.aws.region:
            raise ValueError(
                f"backups.snapshots.copy_to_region: {self.aws.region} is aws.region itself; a copy goes to another"
            )
        if self.aws.region in self.image.copy_to_regions:
            raise ValueError(f"image.copy_to_regions: {self.aws.region} is aws.region itself; the AMI is built there")
        if self.services.signal_api.account and not (
            self.services.signal_api.enabled and self.services.clawdbot.enabled
        ):
            raise ValueError(
                "services.signal_api.account: the Signal channel needs services.signal_api and services.clawdbot"
            )
        return self

    def _check_custom_services(self, port_owners: dict[int, str]) -> None:
        """The owner's services take no name, port, path or folder the seed or another service has."""
        paths = {path: "the seed" for path in SEED_PATHS}
        enabled = set(self.services.enabled_names())
        for name, service in sorted(self.services.custom.items()):
            key = f"services.custom.{name}"
            if not _SERVICE_NAME.fullmatch(name):
                raise ValueError(f"{key}: a name is a lowercase letter, then letters, digits or '-' (at most 31)")
            if name in RESERVED_SERVICE_NAMES:
                raise ValueError(
                    f"{key}: {name!r} is the seed's own; reserved: {', '.join(sorted(RESERVED_SERVICE_NAMES))}"
                )
            if not service.enabled:
                continue
            if service.edge_port is not None:
                _claim_edge_port(f"{key}.edge_port", service.edge_port, port_owners)
                app = EDGE_APP_CONTAINER_PORTS.get(service.edge_port)
                if app is not None:
                    raise ValueError(
                        f"{key}.edge_port: port {service.edge_port} is where the edge serves {app} inside its "
                        f"container, whether services.{app} is on and whichever port it is published on: "
                        "pick another port (e.g. 8447 and up)"
                    )
            if service.path is not None:
                # /tools/ and /tools/x/ overlap: NGINX would send one's requests to the other.
                clash = next(
                    (p for p in paths if p != "/" and (service.path.startswith(p) or p.startswith(service.path))), None
                )
                if clash:
                    raise ValueError(f"{key}.path: {service.path} overlaps {clash}, already routed by {paths[clash]}")
                paths[service.path] = key
            own = f"/mnt/data/{name}"
            for host in service.volumes:
                normal = os.path.normpath(host)
                if normal != host.rstrip("/") or not (normal == own or normal.startswith(own + "/")):
                    raise ValueError(
                        f"{key}.volumes: {host!r} is outside {own}; a service keeps its data under /mnt/data/{name}"
                    )
            missing = [stack for stack in service.needs if stack != "data" and stack not in enabled]
            if missing:
                raise ValueError(f"{key}.needs: {', '.join(missing)} is not enabled (services.{missing[0]}.enabled)")


def _claim_edge_port(key: str, port: int, owners: dict[int, str], allowed: frozenset[int] = frozenset()) -> None:
    """One rule for every port the edge publishes (its own, each app's, the owner's services'): not
    another's, and none of the seed's ports (but `allowed`: the edge's main port may be 8443 or 443)."""
    if port in owners:
        raise ValueError(f"{key}: port {port} is already taken by {owners[port]}")
    if port in SEED_PORTS - allowed:
        raise ValueError(
            f"{key}: port {port} is one of the seed's ({', '.join(map(str, sorted(SEED_PORTS)))}); "
            "the edge publishes none of them for another use: pick another port (e.g. 8447 and up)"
        )
    owners[port] = key
