"""The boot story, top to bottom: from power-on to a platform whose data volume, secrets and .env are ready.

config    read the per-instance document cloud-init delivered
identity  who this instance is (IMDSv2 on AWS, cloud-init's instance data locally)
storage   attach the data volume, find it by serial, reuse rules, grow its filesystem into a larger
          volume, mount it at /mnt/data
tailscale tailscaled's node identity onto the data volume (the same node on a new instance), join
          the tailnet (auth key from SSM, only when not still joined), the edge's TLS certificate
secrets   generated secrets kept on the volume, provider keys from SSM, the stacks' .env
stacks    the stacks' per-instance files: LiteLLM's models, the edge's addresses, ports and index;
          the containers' egress policy (what they may reach) written and applied
services  start ai-platform.target with this instance's stacks; wait until each is healthy
report    the status file (after every step) and the instance's status tags (AWS)

A step that meets a passing outage (the metadata service, SSM, Tailscale's control server, EC2
throttling) raises TransientError and is tried again until `Settings.transient_deadline`; what
only a person can fix (a bad config, a refused auth key, a volume another instance holds) fails at once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firstboot import (
    certificate,
    certificate_report,
    custom_services,
    data_growth,
    disk_space,
    edge_state,
    env,
    gdrive,
    identity,
    instance_config,
    redis_config,
    services,
    stack_config,
    storage,
    tailscale,
    tailscale_oauth,
    tailscale_state,
    volume,
)
from firstboot.apps import MODULES, edge
from firstboot.framework import PER_BOOT, Context, Step, StepFailed, TransientError
from firstboot.framework import log as framework_log
from firstboot.instance_config import EDGE_APPS
from firstboot.report import publish_running_detail, publish_status_tags


@dataclass(frozen=True)
class Paths:
    """Every place the agent reads or writes; tests move them all under a temporary directory."""

    instance_config: Path = instance_config.INSTANCE_CONFIG_PATH
    cloud_init_data: Path = identity.CLOUD_INIT_INSTANCE_DATA
    state_dir: Path = Path("/var/lib/ai-platform")
    sys_block: Path = Path("/sys/block")
    dev_dir: Path = Path("/dev")
    systemd_dir: Path = Path("/etc/systemd/system")
    data_mount: Path = Path(storage.MOUNT_POINT)
    env_contract: Path = Path("/opt/ai-platform/env-contract.json")
    stacks_dir: Path = Path("/opt/ai-platform/stacks")
    image_variant: Path = Path("/opt/ai-platform/image-variant")  # "gpu" on the GPU image (firstboot/gpu.py)
    env_file: Path = Path("/etc/ai-platform/stack.env")
    tls_dir: Path = Path("/etc/ai-platform/tls")
    tailscale_state: Path = Path("/var/lib/tailscale")
    mountinfo: Path = Path("/proc/self/mountinfo")
    fw_cfg_dir: Path = Path("/sys/firmware/qemu_fw_cfg/by_name")
    etc_dir: Path = Path("/etc/ai-platform")
    ca_bundle: Path = certificate.CA_BUNDLE  # what browsers trust, as far as this machine knows
    models_dir: Path = Path("/opt/ai-platform/models")  # the baked models (firstboot/readahead.py)

    @property
    def status(self) -> Path:
        return self.state_dir / "status.json"


@dataclass
class Settings:
    paths: Paths = field(default_factory=Paths)
    imds_deadline: float = 60
    device_timeout: float = 300
    # A replaced instance's predecessor may take minutes to shut down and let go of the volume
    # (its stacks stop first): the terminate-and-launch of an Auto Scaling group of one.
    attach_timeout: float = 900
    services_timeout: float = 1800  # first start pulls nothing (images are baked) but runs migrations
    poll_interval: float = 2
    # A step failing for a passing reason is tried again this long (seconds from its first try); then
    # the agent exits 75 and ai-platform-firstboot.service starts it again.
    transient_deadline: float = 1200
    sleep: Callable[[float], None] = time.sleep  # every wait of the boot steps (tests pass their own clock)
    clock: Callable[[], float] = time.monotonic
    rclone: str = "/usr/local/bin/rclone"  # the pinned rclone the bake installs (image/provision/45-rclone.sh)
    tailscale: tailscale.TailscaleCli = field(default_factory=tailscale.TailscaleCli)
    tailscale_api: str = tailscale_oauth.API_URL  # where an OAuth client mints keys (tests: a stand-in)
    make_platform: Callable[[instance_config.InstanceConfig], Any] | None = None  # default: firstboot.platform
    signal_accounts: Callable[[], Any] | None = None  # `firstboot health`: signal-cli's numbers (default: docker)
    containers: Callable[[str], Any] | None = (
        None  # `firstboot health`: a compose project's containers (default: docker)
    )
    disk: disk_space.Thresholds = field(default_factory=disk_space.Thresholds)  # the data volume's room
    edge_reload: Callable[[], str] | None = None  # a changed certificate (default: certificate.reload_edge)
    egress_apply: Callable[[Any], None] | None = None  # `firstboot egress`: the rules (default: egress.apply)
    # Whether this machine runs Docker at all: without it there is no container to police.
    docker_installed: Callable[[], bool] = lambda: shutil.which("dockerd") is not None


def read_config(context: Context) -> str:
    settings: Settings = context.values["settings"]
    config = instance_config.load_instance_config(settings.paths.instance_config)
    context.values["config"] = config
    if settings.make_platform is None:
        from firstboot.platform import Platform

        context.platform = Platform(config, sleep=settings.sleep, clock=settings.clock)
    else:
        context.platform = settings.make_platform(config)
    if hasattr(context.platform, "on_wait"):  # a wait for IAM propagation shows in the running step
        context.platform.on_wait = context.progress
    return f"{config.platform}/{config.instance} on {config.target}"


def find_identity(context: Context) -> str:
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    try:
        if config.target == "aws":
            found = identity.imds_identity(
                config.imds_endpoint,
                deadline_seconds=settings.imds_deadline,
                clock=settings.clock,
                sleep=settings.sleep,
            )
        else:
            found = identity.cloud_init_identity(settings.paths.cloud_init_data)
    except identity.ImdsUnavailable as exc:
        raise TransientError(str(exc)) from exc
    except identity.IdentityError as exc:
        raise StepFailed(str(exc)) from None
    if found.region and found.region != config.region:
        raise StepFailed(
            f"this instance runs in {found.region}, but its config is for {config.region}: "
            "the user-data belongs to another launch"
        )
    context.values["identity"] = found
    return f"{found.instance_id} in {found.availability_zone or 'no zone (local)'}"


def prepare_storage(context: Context) -> str:
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    me = context.values["identity"]
    paths = settings.paths
    if config.target == "aws":
        if not me.availability_zone:
            raise StepFailed("instance metadata gave no availability zone; the data volume is looked up by zone")
        attached = volume.ensure_attached(
            context.platform.ec2,
            instance_id=me.instance_id,
            platform=config.platform,
            instance_name=config.instance,
            availability_zone=me.availability_zone,
            timeout=settings.attach_timeout,
            clock=settings.clock,
            sleep=settings.sleep,
            log=framework_log.info,  # the console shows the wait
        )
        volume_id = attached.volume_id
    else:
        volume_id = config.volume_id
    device = storage.wait_for_device(
        storage.volume_serial(volume_id), settings.device_timeout, sys_block=paths.sys_block, dev_dir=paths.dev_dir
    )
    prepared = storage.prepare(device, reserve_percent=settings.disk.reserve_percent)
    grown = "" if prepared.formatted else _grow_data(context, device, paths.mountinfo)
    # A volume made before the reserve (mkfs -m 0) gets it now, before anything writes to it.
    try:
        reserve = disk_space.keep_reserve(device, disk_space.space_from_superblock(device), settings.disk)
    except (disk_space.DiskError, KeyError, ValueError) as exc:
        reserve = f"reserve not checked: {exc}"
        context.warn(reserve)
    unit = paths.systemd_dir / storage.mount_unit_name(str(paths.data_mount))
    text = storage.mount_unit(prepared.uuid, str(paths.data_mount))
    if not unit.exists() or unit.read_text(encoding="utf-8") != text:
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(text, encoding="utf-8")
        context.platform.systemd.daemon_reload()
    context.platform.systemd.start(unit.name)
    context.values["volume_is_new"] = prepared.formatted
    action = "new filesystem made" if prepared.formatted else "existing filesystem kept"
    return f"{volume_id} on {device.name}: {action}{grown}, mounted at {paths.data_mount}; {reserve}"


def _grow_data(context: Context, device: Path, mountinfo: Path) -> str:
    """A volume made larger since the last boot (`builder resize`): its filesystem grown to fill it.
    A failure is a warning: the platform runs on the size it had."""
    try:
        growth = data_growth.grow(device, mountinfo, log=framework_log.info)
    except data_growth.GrowthError as exc:
        context.warn(f"the data volume is larger than its filesystem, which was not grown: {exc}")
        return ""
    return f" ({growth.line()})" if growth else ""


def join_tailnet(context: Context) -> str:
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    paths = settings.paths
    if config.tailscale is None:
        wanted = certificate.wanted_from(None, f"{config.platform}-{config.instance}", config.stack.public_host)
        return f"no tailnet configured; {serve_certificate(context, None, wanted)}"
    wanted = config.tailscale

    def auth_key() -> str:
        if wanted.oauth_client_parameter:
            return _minted_auth_key(context, wanted)
        key = _ssm_secret(context, wanted.auth_key_parameter)
        if key is None:
            raise StepFailed(
                f"SSM parameter {wanted.auth_key_parameter} (the Tailscale auth key) not found; "
                "store it with `builder secrets set`"
            )
        return key

    try:
        kept = tailscale_state.keep_on_volume(
            context.platform.systemd,
            volume_dir=paths.data_mount / "platform" / "tailscale",
            state_dir=paths.tailscale_state,
            data_mount=paths.data_mount,
            systemd_dir=paths.systemd_dir,
            mountinfo=paths.mountinfo,
        )
    except RuntimeError as exc:  # systemctl: tailscaled missing from the image, or the mount refused
        raise StepFailed(f"tailscaled's state could not be put on the data volume: {exc}") from None
    try:
        tailscale.wait_settled(settings.tailscale, sleep=settings.sleep)
        joined = tailscale.join(settings.tailscale, auth_key, wanted.hostname, wanted.tags, sleep=settings.sleep)
        node = settings.tailscale.status()
        names = certificate.wanted_from(node, wanted.hostname, config.stack.public_host)
        made = serve_certificate(context, settings.tailscale, names)
    except tailscale.TailscaleUnavailable as exc:
        raise TransientError(str(exc)) from None
    except tailscale.TailscaleError as exc:
        raise StepFailed(str(exc)) from None
    # The edge binds to the tailnet address: the .env contract can ask for it as instance:tailscale_ip.
    context.values["tailscale_ip"] = tailscale.first_ipv4(node)
    context.values["tailnet_name"] = tailscale.dns_name(node)
    return f"{'joined as' if joined else 'already joined as'} {wanted.hostname} ({kept}); {made}"


def serve_certificate(context: Context, cli, names: certificate.Wanted) -> str:
    """The edge's certificate (firstboot/certificate.py) and its report: the console, on AWS the
    instance's certificate tag; a running edge reloads when it changed."""
    settings: Settings = context.values["settings"]
    paths = settings.paths
    try:
        served = certificate.install(
            cli, names, paths.tls_dir, paths.data_mount / "platform" / "tls", context.warn, ca_bundle=paths.ca_bundle
        )
        if served.changed:
            (settings.edge_reload or certificate.reload_edge)()
    except certificate.CertificateError as exc:
        raise StepFailed(str(exc)) from None
    report = certificate_report.of_served(served)
    certificate_report.record(report, paths.state_dir)
    # The console (stderr reaches it as stdout does): `builder status` reads it there on the local target.
    print(report.line(), file=sys.stderr, flush=True)
    config = context.values["config"]
    me = context.values.get("identity")
    if config.target == "aws" and me is not None:
        try:
            certificate_report.publish_certificate_tag(context.platform.ec2, me.instance_id, report)
        except Exception as exc:  # the console and the state file have the line; the daily run tries again
            context.warn(f"the certificate tag was not published: {type(exc).__name__}")
    return served.describe()


def write_secrets(context: Context) -> str:
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    paths = settings.paths
    contract = env.load_contract(paths.env_contract)
    generated, made = env.ensure_generated_secrets(
        contract, paths.data_mount, volume_is_new=context.values.get("volume_is_new", False), redact=context.redact
    )
    owner = owner_credentials(context)
    provider_keys = {}
    for provider, parameter in sorted(config.providers.items()):
        value = _ssm_secret(context, parameter)
        if value is None:
            context.warn(f"SSM parameter {parameter} ({provider} API key) not found: {provider} models stay off")
        else:
            provider_keys[provider] = value
    me = context.values["identity"]
    hostname = config.tailscale.hostname if config.tailscale else f"{config.platform}-{config.instance}"
    context.values["hostname"] = hostname
    # The name clients use: MagicDNS's full name when the node has one (the edge's certificate is for it).
    node_name = context.values.get("tailnet_name") or hostname
    instance_values = {
        "platform": config.platform,
        "instance": config.instance,
        "instance_id": me.instance_id,
        "hostname": hostname,
        "tailscale_ip": context.values.get("tailscale_ip", ""),
        "ollama_keep_alive": config.stack.keep_alive,
        "ollama_context_length": str(config.stack.context_length),
        "gdrive_read_only": "false" if config.gdrive and not config.gdrive.read_only else "true",
        **{f"public_url_{app}": edge.public_url(config.stack, app, node_name) for app in EDGE_APPS},
    }
    stack_env = env.build_env(contract, generated, provider_keys, instance_values, owner)
    changed = env.write_env(paths.env_file, stack_env)
    redis_config.write(paths.etc_dir, stack_env["REDIS_PASSWORD"])
    context.values["stack_env"] = stack_env
    context.values["providers_with_keys"] = sorted(provider_keys)
    return (
        f"{len(stack_env)} variables ({len(made)} secrets generated now, "
        f"{len(generated) - len(made)} kept); {paths.env_file} {'written' if changed else 'unchanged'}"
    )


def owner_credentials(context: Context) -> dict[str, str]:
    """The owner's credentials builder made (`builder credentials` shows the same ones): from SSM on
    AWS, from qemu's fw_cfg locally. Not delivered: the stand-bys kept on the volume serve, said in
    a warning, as builder cannot show those."""
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    text = None
    if config.owner_parameter:
        text = _ssm_secret(context, config.owner_parameter)
        where = f"SSM parameter {config.owner_parameter}"
    elif config.owner_fw_cfg:
        text = _fw_cfg_text(settings, config.owner_fw_cfg)
        where = f"fw_cfg {config.owner_fw_cfg}"
    else:
        context.warn("this launch delivered no owner credentials: the ones kept on the volume serve")
        return {}
    if text is None:
        context.warn(f"the owner credentials ({where}) are missing: the ones kept on the volume serve")
        return {}
    try:
        values = json.loads(text)
    except ValueError:
        raise StepFailed(f"the owner credentials ({where}) are not the JSON builder writes") from None
    for value in values.values():
        context.redact.register(value)
    return values


def deliver_gdrive_config(context: Context) -> str:
    """The owner's rclone config onto the volume for the Drive mount; a refused one is reported, and
    the platform comes up without the mount."""
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    if "gdrive" not in config.services:
        return "off (services.gdrive.enabled)"
    place = config.gdrive
    if place is None:
        return "no rclone config delivered: the Drive mount stays off (`builder secrets set rclone-config`)"
    if place.parameter:
        text, where = _ssm_secret(context, place.parameter), f"SSM parameter {place.parameter}"
    else:
        text, where = _fw_cfg_text(settings, place.fw_cfg), f"fw_cfg {place.fw_cfg}"
    if text is None:
        return f"no rclone config stored ({where}): the Drive mount stays off (`builder secrets set rclone-config`)"
    context.redact.register(text)
    try:
        return gdrive.install(
            settings.paths.data_mount, settings.paths.etc_dir, text, place.remote, place.read_only, settings.rclone
        )
    except gdrive.GdriveConfigRejected as exc:
        kept = (settings.paths.data_mount / gdrive.CONFIG).exists()
        context.warn(
            f"Google Drive: the rclone config in {where} is not used: {exc}. "
            + ("The one delivered before stays in use." if kept else "The Drive mount stays off.")
        )
        return "rclone config refused"


def _fw_cfg_text(settings: Settings, name: str) -> str | None:
    raw = settings.paths.fw_cfg_dir / name / "raw"
    if not raw.exists():  # the fw_cfg driver is a module that udev may not have loaded yet
        with contextlib.suppress(OSError):
            subprocess.run(["modprobe", "qemu_fw_cfg"], capture_output=True, check=False, timeout=30)
    return raw.read_text(encoding="utf-8") if raw.exists() else None


def render_stack_files(context: Context) -> str:
    settings: Settings = context.values["settings"]
    config = context.values["config"]
    instance = stack_config.Instance(
        settings=config.stack,
        services=config.services,
        env=context.values.get("stack_env") or env.read_env_file(settings.paths.env_file),
        providers_with_keys=context.values.get("providers_with_keys", []),
        tailscale_ip=context.values.get("tailscale_ip", ""),
        tailnet=config.tailscale is not None,
        node_names=[name for name in (context.values.get("tailnet_name"), context.values.get("hostname")) if name],
        stacks_dir=settings.paths.stacks_dir,
        custom=baked_custom_services(context, settings.paths.stacks_dir, config.services),
    )
    try:
        changed, warnings = stack_config.write_stack_files(settings.paths.etc_dir, instance)
    except stack_config.StackConfigError as exc:
        raise StepFailed(str(exc)) from None
    for warning in warnings:
        context.warn(warning)
    egress = write_egress_policy(context)
    return (f"{len(changed)} files written" if changed else "unchanged") + egress


def write_egress_policy(context: Context) -> str:
    """/etc/ai-platform/egress.json from the config and the VPC's ranges (firstboot/egress_policy.py);
    when it changed, the rules follow (ai-platform-egress.service) before the stacks start. A failure
    to apply is a warning: the containers' egress fails open (firstboot/egress.py says why)."""
    from firstboot import egress_policy, egress_report

    settings: Settings = context.values["settings"]
    config = context.values["config"]
    try:
        vpc = egress_policy.vpc_cidr_blocks(config.imds_endpoint) if config.target == "aws" else []
    except egress_policy.VpcUnknown as exc:
        raise TransientError(str(exc)) from exc
    if not egress_policy.write_policy(settings.paths.etc_dir, egress_policy.document_for(config, vpc)):
        return ""
    if not settings.docker_installed():
        return "; egress policy written (no Docker on this machine: no rules to apply)"
    try:
        context.platform.systemd.start(egress_report.EGRESS_UNIT)
    except RuntimeError as exc:
        context.warn(f"egress policy written but not applied: {exc}")
    return "; egress policy written"


def baked_custom_services(context: Context, stacks_dir, running) -> dict:
    """The owner's services this instance runs that the image holds; a warning for any it lacks."""
    if not (Path(stacks_dir) / custom_services.MANIFEST).exists():
        return {}  # an image from before the owner's own services: nothing of theirs to start or miss
    try:
        manifest = custom_services.load_manifest(stacks_dir)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None
    seed = {module.SERVICE for module in MODULES if module.SERVICE} | set(services.HOST_UNITS)
    seed |= {*services.FIRST_STACKS, *services.LAST_STACKS}
    # The image holds a stack when its folder is there (the manifest only adds ports, paths, titles).
    held = {name for name in running if (Path(stacks_dir) / name / "compose.yaml").exists()}
    missing = [name for name in running if name not in seed and name not in manifest and name not in held]
    if missing:
        context.warn(
            f"the config runs {', '.join(missing)}, which this image does not hold (added after its bake?): "
            "bake again and `builder upgrade`"
        )
    return {name: manifest[name] for name in running if name in manifest}


def start_services(context: Context) -> str:
    settings: Settings = context.values["settings"]
    try:
        return services.start_stacks(
            context.platform.systemd,
            settings.paths.systemd_dir,
            context.values["config"].services,
            timeout=settings.services_timeout,
            poll_interval=settings.poll_interval,
            warn=context.warn,
            on_change=_stack_progress(context),
        )
    except services.ServicesError as exc:
        raise StepFailed(str(exc)) from None


def _stack_progress(context: Context):
    """Each stack as it becomes healthy: on the edge's index (its state file), in the status file's
    running step and, on AWS, on the status tags `builder launch --wait` follows. None of it can fail
    the boot: the step's result still tells the outcome."""
    settings: Settings = context.values["settings"]

    def heard(states: dict[str, str], off: set[str], line: str) -> None:
        try:
            edge_state.write(settings.paths.etc_dir, edge_state.from_units(states, off))
        except OSError as exc:
            framework_log.warning("the edge's state file not written: %s", exc)
        context.progress(line)
        config, instance_id = context.values.get("config"), context.instance_id
        if config is not None and config.target == "aws" and instance_id:
            try:
                publish_running_detail(context.platform.ec2, instance_id, f"services: {line}")
            except Exception as exc:  # progress is a courtesy, as the steps' own tags are
                framework_log.warning("progress of the stacks not reported: %s", context.redact(str(exc)))

    return heard


def report(context: Context) -> str:
    config = context.values.get("config")
    me = context.values.get("identity")
    if config is None or me is None or config.target != "aws":
        return "status file only"
    return publish_status_tags(context.platform.ec2, me.instance_id, context.status)


def _minted_auth_key(context: Context, wanted: instance_config.Tailscale) -> str:
    """This instance's own single-use key, minted from the OAuth client in SSM (tailscale_oauth.py);
    a refusal raises TailscaleError (the step fails), an outage TailscaleUnavailable (it is retried)."""
    settings: Settings = context.values["settings"]
    stored = _ssm_secret(context, wanted.oauth_client_parameter)
    if stored is None:
        raise StepFailed(
            f"SSM parameter {wanted.oauth_client_parameter} (the Tailscale OAuth client) not found; "
            "store it with `builder secrets set-tailscale-oauth`"
        )
    client = tailscale_oauth.OAuthClient.parse(stored, wanted.oauth_client_parameter)
    context.redact.register(client.client_secret)
    key = tailscale_oauth.mint_auth_key(client, wanted.tags, api_url=settings.tailscale_api)
    context.redact.register(key)
    return key


def _ssm_secret(context: Context, parameter: str) -> str | None:
    ssm = context.platform.ssm
    try:
        value = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    context.redact.register(value)
    return value


STEPS = [
    Step("config", read_config, PER_BOOT, prerequisite=True),
    Step("identity", find_identity, PER_BOOT, prerequisite=True),
    Step("storage", prepare_storage, PER_BOOT),
    Step("tailscale", join_tailnet, PER_BOOT),
    Step("secrets", write_secrets, PER_BOOT),
    Step("gdrive", deliver_gdrive_config, PER_BOOT),
    Step("stacks", render_stack_files, PER_BOOT),
    Step("services", start_services, PER_BOOT),
    Step("report", report, PER_BOOT, always=True),
]
