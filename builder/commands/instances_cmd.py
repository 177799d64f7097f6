"""`builder status [NAME]` and `builder destroy NAME`: the platform's instances on AWS."""

from __future__ import annotations

import json

import click

from builder.cli import GlobalOptions, global_options


@click.command()
@click.argument("name", required=False)
@global_options
@click.pass_obj
def status(options: GlobalOptions, name: str | None) -> None:
    """Show each instance of the platform, its state and the firstboot agent's report."""
    from builder.aws.clients import AwsClients
    from builder.aws.instances import list_instances
    from builder.commands.config_cmd import load

    config = load(options).config
    views = list_instances(AwsClients(config).ec2, config.name, name)
    if options.json:
        click.echo(json.dumps([view.to_json() for view in views], indent=2))
        return
    if not views:
        click.echo(f"no instance of {config.name} in {config.aws.region}" + (f" named {name}" if name else ""))
        return
    for view in views:
        click.echo(f"{view.name:<16} {view.instance_id:<20} {view.state:<9} {view.zone:<12} agent: {view.agent_state}")
        if view.agent_detail:
            click.echo(f"{'':<16} {view.agent_detail}")


@click.command()
@click.argument("name")
@click.option("--delete-data", is_flag=True, help="Also delete the data volume (asks you to type the name).")
@global_options
@click.pass_obj
def destroy(options: GlobalOptions, name: str, delete_data: bool) -> None:
    """Terminate instance NAME. Its data volume is kept for the next launch unless --delete-data."""
    from builder.aws.clients import AwsClients
    from builder.aws.instances import data_volume, delete_data_volume, list_instances, terminate
    from builder.commands.config_cmd import load
    from builder.errors import BuilderError

    config = load(options).config
    ec2 = AwsClients(config).ec2
    volume = data_volume(ec2, config.name, name)
    if options.dry_run:
        running = [view.instance_id for view in list_instances(ec2, config.name, name)]
        click.echo(f"would terminate: {', '.join(running) or 'nothing'}")
        click.echo(f"would {'DELETE' if delete_data else 'keep'} data volume {volume['VolumeId'] if volume else '-'}")
        return
    if delete_data and volume:
        # Typed, not a flag alone: the volume is every byte of this instance's data.
        typed = click.prompt(
            f"This deletes data volume {volume['VolumeId']} for good. Type {name} to confirm",
            default="",
            show_default=False,
        )
        if typed != name:
            raise BuilderError("confirmation did not match: nothing was terminated or deleted")
    ended = terminate(ec2, config.name, name, log=lambda line: click.echo(f"  {line}", err=True))
    if delete_data and volume:
        delete_data_volume(ec2, volume)
    kept = "deleted" if delete_data and volume else "kept"
    result = {
        "instance": name,
        "terminated": ended,
        "data_volume": volume["VolumeId"] if volume else None,
        "data_volume_state": kept if volume else "none",
    }
    if options.json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"{name}: terminated {', '.join(ended) or 'nothing (none running)'}; "
            f"data volume {result['data_volume'] or '-'} {kept if volume else ''}".rstrip()
        )
