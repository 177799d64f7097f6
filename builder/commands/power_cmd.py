"""`builder start NAME` and `builder stop NAME`: the instance switched on or off by hand, its data
volume kept (AWS; the work is builder/aws/power.py). Between launches, and between the times of
`aws.schedule`, which goes on as configured after a hand switch."""

from __future__ import annotations

import json

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options

TARGET = target_option(help="Local: `builder launch`/`builder destroy` power a local instance on and off.")


@click.command()
@click.argument("name")
@TARGET
@click.option(
    "--wait/--no-wait",
    "wait",
    default=False,
    show_default=True,
    help="Follow the new instance's boot until the agent reports done or failed.",
)
@click.option("--wait-timeout", default=1800, show_default=True, metavar="SECONDS", help="How long --wait waits.")
@command_options("set", "json", "dry_run")
@click.pass_obj
def start(options: GlobalOptions, name: str, target: str | None, wait: bool, wait_timeout: int) -> None:
    """Start instance NAME again (AWS): its group launches one instance, which attaches the kept
    data volume; the same platform comes back."""
    clients, config, plan = _plan(options, name, target, "start")
    if _shown(options, plan):
        return
    from builder.aws import group, power

    power.start(clients.autoscaling, plan, log=lambda line: click.echo(f"  {line}", err=True))
    result = plan.to_json()
    if wait:
        from builder.commands.launch_cmd import _follow

        instance_id = group.wait_for_instance(clients.autoscaling, plan.group_name)
        click.echo(f"  instance {instance_id} started; following its agent", err=True)
        followed = _follow(clients, config, name, instance_id, wait_timeout, options.json)
        result.update(instance_id=instance_id, **followed)
    if options.json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{config.name}/{name}: starting" + ("" if wait else f" (`builder status {name}` follows it)"))
    for service, url in result.get("urls", {}).items():
        click.echo(f"  {service:<12} {url}")
    if plan.schedule_note:
        click.echo(f"  {plan.schedule_note}")


@click.command()
@click.argument("name")
@TARGET
@click.option(
    "--wait/--no-wait",
    "wait",
    default=True,
    show_default=True,
    help="Wait until the instance is terminated and the data volume detached.",
)
@click.option("--wait-timeout", default=900, show_default=True, metavar="SECONDS", help="How long --wait waits.")
@command_options("set", "json", "dry_run")
@click.pass_obj
def stop(options: GlobalOptions, name: str, target: str | None, wait: bool, wait_timeout: int) -> None:
    """Stop instance NAME (AWS): its group keeps no instance; the data volume is kept, and
    `builder start NAME` brings the same platform back."""
    clients, config, plan = _plan(options, name, target, "stop")
    if _shown(options, plan):
        return
    from builder.aws import power

    done = power.stop(
        clients.autoscaling,
        clients.ec2,
        plan,
        log=lambda line: click.echo(f"  {line}", err=True),
        wait=wait,
        timeout=wait_timeout,
    )
    result = {**plan.to_json(), "stopped": done}
    if options.json:
        click.echo(json.dumps(result, indent=2))
        return
    volume = f"data volume {plan.volume_id} kept" if plan.volume_id else "no data volume"
    state = "stopped" if done else "stopping (`builder status NAME` shows when it is done)".replace("NAME", name)
    click.echo(f"{config.name}/{name}: {state}; {volume}; `builder start {name}` brings it back")
    if plan.schedule_note:
        click.echo(f"  {plan.schedule_note}")


def _plan(options: GlobalOptions, name: str, target: str | None, action: str):
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.errors import BuilderError
    from builder.userdata import check_instance_name

    check_instance_name(name)
    config = load(options).config
    if resolve(target, config) == "local":
        how = (
            f"`builder launch {name} --target local` boots it again"
            if action == "start"
            else (f"`builder destroy {name} --target local` powers it off and keeps its data disk")
        )
        raise BuilderError(f"`builder {action}` is not for the local target: {how}")
    from builder.aws.clients import AwsClients
    from builder.aws.power import plan_power

    clients = AwsClients(config)
    return clients, config, plan_power(clients, config, name, action)


def _shown(options: GlobalOptions, plan) -> bool:
    """A dry run's plan, or a switch with nothing to do, shown; True when that is all there is."""
    if not options.dry_run and plan.needed:
        return False
    if options.json:
        click.echo(json.dumps({**plan.to_json(), "dry_run": options.dry_run}, indent=2))
        return True
    if options.dry_run:
        click.echo(f"{plan.action} plan for {plan.platform}/{plan.instance} (dry run: nothing changed):")
    for line in plan.lines():
        click.echo(f"  - {line}" if options.dry_run else line)
    return True
