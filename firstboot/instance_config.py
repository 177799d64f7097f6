"""The per-instance config document: what cloud-init delivers to the agent, versioned and validated.

`builder` renders it from the platform config into the instance's user-data; cloud-init writes it
to /etc/ai-platform/instance.json. It holds names and choices, never a secret: secrets come from
SSM (by parameter name) or are generated on the data volume.

Version 1, as JSON (the standard library reads it):

    {
      "version": 1,
      "platform": "ai-platform",            # [a-z][a-z0-9-]*
      "instance": "alpha",                  # [a-z][a-z0-9-]*
      "target": "aws",                      # "aws" or "local"
      "region": "us-east-1",
      "data_volume": {"id": "vol-…"},       # id: required on "local" (the disk's serial); on "aws" found by tags
      "tailscale": {"auth_key_parameter": "/…", "hostname": "…", "tags": ["tag:…"]},   # or null: no tailnet
                                          # (+ "oauth_client_parameter": "/…": mint the key from it)
      "providers": {"anthropic": "/…", "openai": null},                              # SSM parameter names
      "services": ["ollama", "litellm", …],
      "ollama": {"models": ["llama3.2:3b"], "embedding_model": "nomic-embed-text:v1.5",   # optional
                 "keep_alive": "5m", "context_length": 4096},
      "cloud_models": {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o"},               # optional
      "routing": {"tiers": {"simple": "local", "complex": "smart"}},                        # optional
      "edge": {"port": 8443, "bind": ["tailscale", "127.0.0.1"],                            # optional
               "app_ports": {"anythingllm": 8444, "dify": 8445, "n8n": 8446}},
      "endpoints": {"imds": "http://169.254.169.254", "aws": null},  # stand-ins for the local target and tests
      "gdrive": {"parameter": "/…" or "fw_cfg": "opt/…", "remote": "gdrive", "read_only": true},  # optional
      "signal": {"account": "+15551234567"},                                                      # optional
      "egress": {"allow": ["10.0.5.0/24"], "offline": ["n8n"]}   # optional: security.egress.allow, services.*.internet
    }
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firstboot.egress import SERVICE_ADDRESSES, EgressError, parse_cidr

INSTANCE_CONFIG_PATH = Path("/etc/ai-platform/instance.json")
SUPPORTED_VERSION = 1
TARGETS = ("aws", "local")
DEFAULT_IMDS = "http://169.254.169.254"

_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
_SERVICE = re.compile(r"[a-z][a-z0-9_-]{0,62}")  # also a systemd unit instance name
_PARAMETER = re.compile(r"/[A-Za-z0-9_.\-/]{1,1010}")
_FW_CFG = re.compile(r"opt/[A-Za-z0-9_.\-/]{1,50}")
_VOLUME_ID = re.compile(r"vol-[0-9a-f]{8,17}")
_TAG = re.compile(r"tag:[a-z0-9][a-z0-9-]*")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d")
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
_MODEL = re.compile(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+")
_CLOUD_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_ROUTE = re.compile(rf"local|smart|{_MODEL.pattern}")
_KEEP_ALIVE = re.compile(r"-1|\d+(s|m|h)")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_REMOTE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")  # rclone's remote names (no spaces, no ':')
_ADDRESS = re.compile(r"tailscale|[0-9.]{7,15}|[0-9a-fA-F:]{2,39}")
EDGE_APPS = ("anythingllm", "dify", "n8n")  # the apps with a TLS port of their own


class InstanceConfigError(Exception):
    """The per-instance config is missing or invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Tailscale:
    auth_key_parameter: str
    hostname: str
    tags: tuple[str, ...]
    # Set: the instance mints its own key from this OAuth client and never reads auth_key_parameter.
    oauth_client_parameter: str | None = None


@dataclass(frozen=True)
class StackSettings:
    """What the stacks' per-instance files are rendered from (LiteLLM's config, the edge's ports)."""

    ollama_models: tuple[str, ...] = ("llama3.2:3b", "qwen2.5:7b", "deepseek-r1:7b")
    embedding_model: str = "nomic-embed-text:v1.5"  # LiteLLM's `embed` route (AnythingLLM's embedder)
    keep_alive: str = "5m"
    context_length: int = 4096
    cloud_models: dict[str, str] = field(default_factory=lambda: {"anthropic": "claude-sonnet-4-5", "openai": "gpt-4o"})
    # LiteLLM's `auto`: the route each complexity tier goes to (`local`, `smart` or a local model).
    auto_tiers: dict[str, str] = field(
        default_factory=lambda: {"simple": "local", "medium": "local", "complex": "smart", "reasoning": "smart"}
    )
    edge_port: int = 8443
    edge_bind: tuple[str, ...] = ("tailscale", "127.0.0.1")
    app_ports: dict[str, int] = field(default_factory=lambda: {"anythingllm": 8444, "dify": 8445, "n8n": 8446})
    # How clients reach the edge when not at the tailnet name on the edge's own ports (a local VM:
    # loopback, forwarded ports). None and {}: the node's own name and ports.
    public_host: str | None = None
    public_ports: dict[int, int] = field(default_factory=dict)
    signal_account: str | None = None  # Clawdbot's Signal channel is on for this number (E.164)

    def client_port(self, edge_port: int) -> int:
        """The port a client uses for one of the edge's ports."""
        return self.public_ports.get(edge_port, edge_port)

    def app_client_port(self, app: str) -> int:
        return self.client_port(self.app_ports[app])


@dataclass(frozen=True)
class InstanceConfig:
    platform: str
    instance: str
    target: str
    region: str
    volume_id: str | None
    tailscale: Tailscale | None
    providers: dict[str, str] = field(default_factory=dict)  # provider -> SSM parameter name
    services: tuple[str, ...] = ()
    imds_endpoint: str = DEFAULT_IMDS
    aws_endpoint: str | None = None
    stack: StackSettings = field(default_factory=StackSettings)
    # Where the owner's credentials are delivered (builder made them): an SSM parameter (AWS) or a
    # qemu fw_cfg file (local). Neither: an older launch; the agent keeps stand-bys on the volume.
    owner_parameter: str | None = None
    owner_fw_cfg: str | None = None
    gdrive: Gdrive | None = None  # where the owner's rclone config is delivered, and how to mount it
    egress_allow: tuple[str, ...] = ()  # security.egress.allow: IPv4 ranges containers may reach
    egress_offline: tuple[str, ...] = ()  # the services with `internet: false`
    models_read_ahead: bool = True  # on AWS firstboot/readahead.py runs, unless AWS initializes the root volume


@dataclass(frozen=True)
class Gdrive:
    """The Google Drive mount: the rclone config from SSM (AWS) or fw_cfg (local), its remote, ro/rw."""

    parameter: str | None
    fw_cfg: str | None
    remote: str = "gdrive"
    read_only: bool = True


def load_instance_config(path: Path = INSTANCE_CONFIG_PATH) -> InstanceConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InstanceConfigError(f"{path}: missing; cloud-init writes it from the instance's user-data") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstanceConfigError(f"{path}: cannot be read ({exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstanceConfigError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
    return parse_instance_config(document, str(path))


def parse_instance_config(document: Any, source: str) -> InstanceConfig:
    reader = _Reader(source)
    if not isinstance(document, dict):
        raise InstanceConfigError(f"{source}: must be a JSON object")
    version = document.get("version")
    if version != SUPPORTED_VERSION or isinstance(version, bool):
        raise InstanceConfigError(
            f"{source}: version: {version!r} is not supported; this agent reads version {SUPPORTED_VERSION} "
            "(was the image baked by an older builder than the one that launched it?)"
        )
    known = {
        "version",
        "platform",
        "instance",
        "target",
        "region",
        "data_volume",
        "tailscale",
        "providers",
        "services",
        "endpoints",
        "ollama",
        "cloud_models",
        "routing",
        "edge",
        "owner_credentials",
        "gdrive",
        "signal",
        "egress",
        "models_read_ahead",
    }
    reader.no_unknown(document, known, "")
    models_read_ahead = document.get("models_read_ahead", True)
    if not isinstance(models_read_ahead, bool):
        raise reader.fail("models_read_ahead", "must be true or false")
    target = reader.choice(document, "target", TARGETS)
    volume = reader.mapping(document, "data_volume", required=False) or {}
    reader.no_unknown(volume, {"id"}, "data_volume.")
    volume_id = reader.text(
        volume, "id", _VOLUME_ID, "an EBS volume id (vol-…)", required=target == "local", prefix="data_volume."
    )
    tailscale = None
    tailscale_doc = reader.mapping(document, "tailscale", required=False)
    if tailscale_doc is not None:
        reader.no_unknown(
            tailscale_doc, {"auth_key_parameter", "hostname", "tags", "oauth_client_parameter"}, "tailscale."
        )
        tailscale = Tailscale(
            auth_key_parameter=reader.text(
                tailscale_doc, "auth_key_parameter", _PARAMETER, "an SSM parameter name", prefix="tailscale."
            ),
            hostname=reader.text(tailscale_doc, "hostname", _NAME, "a DNS label", prefix="tailscale."),
            tags=tuple(reader.list_of(tailscale_doc, "tags", _TAG, "tag:NAME", prefix="tailscale.")),
            oauth_client_parameter=reader.text(
                tailscale_doc,
                "oauth_client_parameter",
                _PARAMETER,
                "an SSM parameter name or null",
                required=False,
                prefix="tailscale.",
            ),
        )
    providers_doc = reader.mapping(document, "providers", required=False) or {}
    reader.no_unknown(providers_doc, {"anthropic", "openai"}, "providers.")
    providers = {}
    for provider in sorted(providers_doc):
        name = reader.text(
            providers_doc, provider, _PARAMETER, "an SSM parameter name or null", required=False, prefix="providers."
        )
        if name is not None:
            providers[provider] = name
    endpoints = reader.mapping(document, "endpoints", required=False) or {}
    reader.no_unknown(endpoints, {"imds", "aws"}, "endpoints.")
    owner = reader.mapping(document, "owner_credentials", required=False) or {}
    reader.no_unknown(owner, {"parameter", "fw_cfg"}, "owner_credentials.")
    if len(owner) > 1:
        raise reader.fail("owner_credentials", "names one place: parameter or fw_cfg")
    gdrive = None
    gdrive_doc = reader.mapping(document, "gdrive", required=False)
    if gdrive_doc is not None:
        reader.no_unknown(gdrive_doc, {"parameter", "fw_cfg", "remote", "read_only"}, "gdrive.")
        if ("parameter" in gdrive_doc) == ("fw_cfg" in gdrive_doc):
            raise reader.fail("gdrive", "names one place for the rclone config: parameter or fw_cfg")
        read_only = gdrive_doc.get("read_only", True)
        if not isinstance(read_only, bool):
            raise reader.fail("gdrive.read_only", "must be true or false")
        gdrive = Gdrive(
            parameter=reader.text(
                gdrive_doc, "parameter", _PARAMETER, "an SSM parameter name", required=False, prefix="gdrive."
            ),
            fw_cfg=reader.text(gdrive_doc, "fw_cfg", _FW_CFG, "opt/NAME", required=False, prefix="gdrive."),
            remote=reader.text(gdrive_doc, "remote", _REMOTE, "an rclone remote name", required=False, prefix="gdrive.")
            or "gdrive",
            read_only=read_only,
        )
    return InstanceConfig(
        platform=reader.text(document, "platform", _NAME, "a lowercase name"),
        instance=reader.text(document, "instance", _NAME, "a lowercase name"),
        target=target,
        region=reader.text(document, "region", _REGION, "an AWS region"),
        volume_id=volume_id,
        tailscale=tailscale,
        providers=providers,
        services=tuple(reader.list_of(document, "services", _SERVICE, "service names")),
        imds_endpoint=reader.text(endpoints, "imds", _URL, "a URL", required=False, prefix="endpoints.")
        or DEFAULT_IMDS,
        aws_endpoint=reader.text(endpoints, "aws", _URL, "a URL", required=False, prefix="endpoints."),
        stack=_stack_settings(reader, document),
        owner_parameter=reader.text(
            owner, "parameter", _PARAMETER, "an SSM parameter name", required=False, prefix="owner_credentials."
        ),
        owner_fw_cfg=reader.text(owner, "fw_cfg", _FW_CFG, "opt/NAME", required=False, prefix="owner_credentials."),
        gdrive=gdrive,
        **_egress(reader, document),
        models_read_ahead=models_read_ahead,
    )


def _egress(reader: _Reader, document: dict) -> dict:
    """security.egress.allow and the services cut off the internet (firstboot/egress_policy.py)."""
    section = reader.mapping(document, "egress", required=False) or {}
    reader.no_unknown(section, {"allow", "offline"}, "egress.")
    allow, offline = section.get("allow", []), section.get("offline", [])
    if not isinstance(allow, list):
        raise reader.fail("egress.allow", "must be a list of IPv4 ranges (CIDR)")
    try:
        ranges = tuple(parse_cidr(value, "egress.allow") for value in allow)
    except EgressError as exc:
        raise InstanceConfigError(f"{reader.source}: {exc}") from None
    if not isinstance(offline, list) or not all(name in SERVICE_ADDRESSES for name in offline):
        raise reader.fail("egress.offline", f"may name only {', '.join(SERVICE_ADDRESSES)}")
    return {"egress_allow": ranges, "egress_offline": tuple(offline)}


def _stack_settings(reader: _Reader, document: dict) -> StackSettings:
    defaults = StackSettings()
    signal = reader.mapping(document, "signal", required=False) or {}
    reader.no_unknown(signal, {"account"}, "signal.")
    ollama = reader.mapping(document, "ollama", required=False) or {}
    reader.no_unknown(ollama, {"models", "embedding_model", "keep_alive", "context_length"}, "ollama.")
    cloud = reader.mapping(document, "cloud_models", required=False) or {}
    reader.no_unknown(cloud, {"anthropic", "openai"}, "cloud_models.")
    routing = reader.mapping(document, "routing", required=False) or {}
    reader.no_unknown(routing, {"tiers"}, "routing.")
    tiers = reader.mapping(routing, "tiers", required=False) or {}
    reader.no_unknown(tiers, set(defaults.auto_tiers), "routing.tiers.")
    edge = reader.mapping(document, "edge", required=False) or {}
    reader.no_unknown(edge, {"port", "bind", "app_ports", "public"}, "edge.")
    app_ports = edge.get("app_ports", defaults.app_ports)
    if not isinstance(app_ports, dict):
        raise reader.fail("edge.app_ports", "must be an object")
    reader.no_unknown(app_ports, set(EDGE_APPS), "edge.app_ports.")
    public = reader.mapping(edge, "public", required=False) or {}
    reader.no_unknown(public, {"host", "ports"}, "edge.public.")
    public_ports = public.get("ports", {})
    if not isinstance(public_ports, dict) or not all(
        str(k).isdigit() and isinstance(v, int) and 0 < v < 65536 for k, v in public_ports.items()
    ):
        raise reader.fail("edge.public.ports", "must map edge ports to client ports (1-65535)")
    models = (
        tuple(reader.list_of(ollama, "models", _MODEL, "NAME:TAG", prefix="ollama."))
        if "models" in ollama
        else defaults.ollama_models
    )
    auto_tiers = {}
    for tier, default in defaults.auto_tiers.items():
        route = reader.text(tiers, tier, _ROUTE, "local, smart or NAME:TAG", required=False, prefix="routing.tiers.")
        if route is not None and route not in ("local", "smart") and route not in models:
            raise reader.fail(f"routing.tiers.{tier}", f"{route} is not among ollama.models ({', '.join(models)})")
        auto_tiers[tier] = route or default
    return StackSettings(
        ollama_models=models,
        embedding_model=reader.text(ollama, "embedding_model", _MODEL, "NAME:TAG", required=False, prefix="ollama.")
        or defaults.embedding_model,
        keep_alive=reader.text(
            ollama, "keep_alive", _KEEP_ALIVE, "30s, 5m, 24h or -1", required=False, prefix="ollama."
        )
        or defaults.keep_alive,
        context_length=reader.number(ollama, "context_length", 256, 1048576, defaults.context_length, "ollama."),
        cloud_models={
            provider: reader.text(cloud, provider, _CLOUD_MODEL, "a model id", required=False, prefix="cloud_models.")
            or defaults.cloud_models[provider]
            for provider in ("anthropic", "openai")
        },
        auto_tiers=auto_tiers,
        edge_port=reader.number(edge, "port", 1, 65535, defaults.edge_port, "edge."),
        edge_bind=tuple(reader.list_of(edge, "bind", _ADDRESS, "'tailscale' or IP addresses", prefix="edge."))
        if "bind" in edge
        else defaults.edge_bind,
        app_ports={
            app: reader.number(app_ports, app, 1, 65535, defaults.app_ports[app], "edge.app_ports.")
            for app in EDGE_APPS
        },
        public_host=reader.text(public, "host", _ADDRESS, "an IP address", required=False, prefix="edge.public.")
        if "host" in public
        else None,
        public_ports={int(k): v for k, v in public_ports.items()},
        signal_account=reader.text(
            signal, "account", _E164, "an E.164 number (+15551234567)", required=False, prefix="signal."
        ),
    )


class _Reader:
    """Small typed accessors whose errors name the file and the field (no schema library on the instance)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> InstanceConfigError:
        return InstanceConfigError(f"{self.source}: {key}: {message}")

    def no_unknown(self, document: dict, known: set[str], prefix: str) -> None:
        unknown = sorted(str(key) for key in document if key not in known)
        if unknown:
            raise self.fail(prefix + unknown[0], f"unknown field; known here: {', '.join(sorted(known))}")

    def mapping(self, document: dict, key: str, required: bool = True) -> dict | None:
        value = document.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, dict):
            raise self.fail(key, "must be an object")
        return value

    def choice(self, document: dict, key: str, choices: tuple[str, ...]) -> str:
        value = document.get(key)
        if value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}")
        return value

    def text(
        self, document: dict, key: str, pattern: re.Pattern, what: str, required: bool = True, prefix: str = ""
    ) -> str | None:
        value = document.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self.fail(prefix + key, f"must be {what}")
        return value

    def number(self, document: dict, key: str, low: int, high: int, default: int, prefix: str = "") -> int:
        value = document.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(prefix + key, f"must be a whole number from {low} to {high}")
        return value

    def list_of(self, document: dict, key: str, pattern: re.Pattern, what: str, prefix: str = "") -> list[str]:
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
            raise self.fail(prefix + key, f"must be a list of {what}")
        return value
