"""`builder launch NAME`: a platform instance with its data volume, in one command."""

from __future__ import annotations

import json
import re

import click

from builder.cli import GlobalOptions, global_options

_INSTANCE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@click.command()
@click.argument("name")
@click.option("--target", type=click.Choice(["aws", "local"]), default="aws", show_default=True)
@click.option("--ami", metavar="AMI_ID", help="Launch this image instead of the newest baked one.")
@global_options
@click.pass_obj
def launch(options: GlobalOptions, name: str, target: str, ami: str | None) -> None:
    """Launch instance NAME of the platform: its data volume is created once and reused after."""
    from builder.commands.config_cmd import load
    from builder.errors import BuilderError, NotBuiltYet

    if not _INSTANCE_NAME.fullmatch(name):
        raise BuilderError(f"instance name {name!r}: use lowercase letters, digits and '-', starting with a letter")
    if target == "local":
        raise NotBuiltYet("`builder launch --target local` is not built yet; it lands with issue #5. Nothing was done.")
    from builder.aws.clients import AwsClients
    from builder.aws.launch import launch as run_launch
    from builder.aws.launch import plan_launch

    config = load(options).config
    clients = AwsClients(config)
    plan = plan_launch(clients, config, name, ami)
    if options.dry_run:
        if options.json:
            click.echo(json.dumps({"instance": name, "dry_run": True, "plan": plan.actions()}, indent=2))
        else:
            click.echo(f"plan for {config.name}/{name} in {config.aws.region} (dry run: nothing changed):")
            for action in plan.actions():
                click.echo(f"  - {action}")
        return
    result = run_launch(clients, config, plan, log=lambda line: click.echo(f"  {line}", err=True))
    summary = {
        "instance": name,
        "instance_id": result.instance_id,
        "volume_id": result.volume_id,
        "launch_template_version": result.template_version,
        "created": result.created,
    }
    if options.json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{config.name}/{name}: {result.instance_id} launched, data volume {result.volume_id}")
