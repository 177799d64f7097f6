"""`builder launch NAME`: a platform instance with its data volume, in one command."""

from __future__ import annotations

import json

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options


@click.command()
@click.argument("name")
@target_option()
@click.option("--ami", metavar="AMI_ID", help="Launch this image instead of the newest baked one.")
@click.option("--wait", "wait", is_flag=True, help="Follow the first boot until the agent reports done or failed.")
@click.option("--wait-timeout", default=1800, show_default=True, metavar="SECONDS", help="How long --wait waits.")
@command_options("set", "json", "dry_run")
@click.pass_obj
def launch(
    options: GlobalOptions, name: str, target: str | None, ami: str | None, wait: bool, wait_timeout: int
) -> None:
    """Launch instance NAME of the platform: its data volume is created once and reused after."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    check_instance_name(name)
    config = load(options).config
    if resolve(target, config) == "local":
        return _launch_local(options, config, name, wait, wait_timeout)
    from builder.aws import preflight
    from builder.aws.clients import AwsClients
    from builder.aws.launch import launch as run_launch
    from builder.aws.launch import plan_launch

    clients = AwsClients(config)
    # What the account lacks stops the launch here, before anything is made.
    preflight.require(clients, config, preflight.FOR_LAUNCH, "launch", note=lambda line: click.echo(line, err=True))
    plan = plan_launch(clients, config, name, ami)
    for note in _instance_fit_notes(clients.ec2, config):
        click.echo(f"note: {note}", err=True)
    if options.dry_run:
        cost = _cost_estimate(clients, config)
        if options.json:
            document = {"instance": name, "dry_run": True, "plan": plan.actions(), "estimate": cost.to_json()}
            click.echo(json.dumps(document, indent=2))
        else:
            click.echo(f"plan for {config.name}/{name} in {config.aws.region} (dry run: nothing changed):")
            for action in plan.actions():
                click.echo(f"  - {action}")
            click.echo("estimate of a month's cost (AWS Price List, on-demand, USD):")
            for line in cost.lines():
                click.echo(f"  - {line}")
        return
    result = run_launch(clients, config, plan, log=lambda line: click.echo(f"  {line}", err=True))
    summary = {
        "instance": name,
        "instance_id": result.instance_id,
        "volume_id": result.volume_id,
        "launch_template_version": result.template_version,
        "created": result.created,
    }
    if wait:
        summary.update(_follow(clients, config, name, result.instance_id, wait_timeout, quiet=options.json))
    if options.json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{config.name}/{name}: {result.instance_id} launched, data volume {result.volume_id}")
        for service, url in summary.get("urls", {}).items():
            click.echo(f"  {service:<12} {url}")


def _cost_estimate(clients, config):
    """The month's cost from the Price List API; where it cannot be asked, parts say unknown and why."""
    from datetime import datetime, timezone

    from builder.aws.cost_estimate import estimate
    from builder.aws.pricing import pricing_client

    return estimate(pricing_client(clients.session), config, datetime.now(timezone.utc))


def _follow(clients, config, name: str, instance_id: str, timeout: int, quiet: bool) -> dict:
    """Follow the agent's status tags with a line per change; the URLs once the platform is up."""
    import time

    from builder.aws import group, names
    from builder.aws.instances import wait_for_agent
    from builder.endpoints import service_urls
    from builder.errors import BuilderError

    started = time.monotonic()

    def progress(state: str, detail: str) -> None:
        if not quiet:
            click.echo(f"  [{time.monotonic() - started:5.0f} s] {state}{': ' + detail if detail else ''}", err=True)

    group_name = names.group_name(config.name, name)

    def group_instance() -> str | None:
        # (an instance the group ended for failing its status checks is replaced: follow that one)
        return group.live_instance(group.find(clients.autoscaling, group_name))

    state, detail = wait_for_agent(
        clients.ec2, instance_id, timeout=timeout, on_change=progress, current=group_instance
    )
    if state == "failed":
        raise BuilderError(f"{name} ({group_instance() or instance_id}) failed its first boot: {detail}")
    from builder.endpoints import reported_certificate

    certificate = reported_certificate(config, name, "aws", clients.ec2)  # the name it carries, in the URLs
    return {
        "agent_state": state,
        "agent_detail": detail,
        "urls": service_urls(config, name, certificate and certificate.name),
    }


def _launch_local(options: GlobalOptions, config, name: str, wait: bool, wait_timeout: int) -> None:
    """The same instance under qemu on this machine: its data disk kept from launch to launch."""
    import time

    from builder.errors import BuilderError
    from builder.local.instances import LocalInstance, current_image

    instance = LocalInstance(config, name)
    from builder import capacity

    for finding in capacity.check_memory(config, "local"):
        click.echo(f"note: {finding.message()}", err=True)
    if options.dry_run:
        image = current_image(config)  # no image, no boot: said (exit 1) as the real launch says it
        disk_state = "reused" if instance.data_disk.exists() else "created"
        if options.json:
            document = {"instance": name, "dry_run": True, "image": str(image.disk), "target": "local"}
            document.update(data_disk=str(instance.data_disk), data_disk_state=disk_state)
            click.echo(json.dumps(document, indent=2))
            return
        click.echo(
            f"would boot {name} from {image.disk} under qemu ({config.local.accelerator}); data disk "
            f"{instance.data_disk} ({disk_state})"
        )
        return
    state = instance.launch(log=lambda line: click.echo(f"  {line}", err=True))
    summary = {
        "instance": name,
        "instance_id": state["instance_id"],
        "data_disk": str(instance.data_disk),
        "urls": {port: f"https://{config.local.forward_address}:{host}/" for port, host in state["ports"].items()},
    }
    if state.get("ssh_port"):
        summary["ssh"] = f"ssh -p {state['ssh_port']} {state['ssh_user']}@{config.local.forward_address}"
    if wait:
        started = time.monotonic()

        def progress(agent_state: str, line: str) -> None:
            if not options.json:
                click.echo(
                    f"  [{time.monotonic() - started:5.0f} s] {agent_state}{': ' + line if line else ''}", err=True
                )

        steps: list[dict] = []

        def step_done(line: str) -> None:
            steps.append({"at_seconds": round(time.monotonic() - started, 1), "line": line})
            if not options.json:
                click.echo(f"  [{time.monotonic() - started:5.0f} s] {line.removeprefix('firstboot: ')}", err=True)

        agent_state, line = instance.wait(wait_timeout, progress, on_step=step_done)
        summary.update(agent_state=agent_state, agent_detail=line, agent_steps=steps)
        if agent_state == "failed":
            raise BuilderError(f"{name} failed its first boot: {line}; console: {instance.console}")
    if options.json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{config.name}/{name}: {state['instance_id']} running under qemu; data disk {instance.data_disk}")
        for guest, url in summary["urls"].items():
            click.echo(f"  edge port {guest:<6} {url}")
        if "ssh" in summary:
            click.echo(f"  ssh            {summary['ssh']}")


def _instance_fit_notes(ec2, config) -> list[str]:
    """The enabled services' memory against the instance type's, and the baked models against its GPU
    (EC2's GpuInfo), with the models' sizes as the lock recorded them: notes, never a refusal."""
    from builder import images
    from builder.aws import gpu
    from builder.bake.bake import instance_fit_notes

    try:
        described = gpu.describe(ec2, config.aws.instance_type)
    except Exception:  # a note only: never a reason to stop the launch
        return []
    recorded = {name: pin.bytes for name, pin in images.load_models(images.LOCK_PATH).items()}
    return instance_fit_notes(config, described, recorded)
