"""`builder upgrade NAME`: the instance onto a new image, same data; back by itself if it fails."""

from __future__ import annotations

import json
from pathlib import Path

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options


@click.command()
@click.argument("name")
@target_option()
@click.option(
    "--image",
    "image",
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="Local: a directory of the image store to move to (default: the current image).",
)
@click.option("--ami", metavar="AMI_ID", help="AWS: the image to move to (default: the newest baked one).")
@click.option(
    "--wait-timeout",
    default=1800,
    show_default=True,
    metavar="SECONDS",
    help="How long the new image gets to report done before the instance goes back.",
)
@command_options("set", "json", "dry_run")
@click.pass_obj
def upgrade(
    options: GlobalOptions, name: str, target: str | None, image: Path | None, ami: str | None, wait_timeout: int
) -> None:
    """Move instance NAME onto the newest image (or --image) with the same data volume, secrets and
    keys. The data volume is snapshotted once the instance has stopped; if the new image does not
    come up within --wait-timeout it goes back to its previous image by itself, onto a volume
    restored from that snapshot when the new image had started its stacks."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.upgrade import upgrade as run_upgrade
    from builder.userdata import check_instance_name

    check_instance_name(name)
    config = load(options).config
    target = resolve(target, config)
    if target == "aws":
        moving, plan = _aws(config, name, ami)
    else:
        moving, plan = _local(config, name, image)
    if options.dry_run:
        document = {"dry_run": True, **plan.to_json()}
        if options.json:
            click.echo(json.dumps(document, indent=2))
        else:
            click.echo(f"upgrade plan for {config.name}/{name} ({target}; dry run: nothing changed)")
            click.echo(f"  image      {plan.current or '(not recorded)'} -> {plan.new}")
            if "snapshot" in document:
                click.echo(f"  snapshot   the data volume, {document['snapshot']['when']} (kept; the way back)")
            if "launch_template" in document:
                click.echo(f"  template   {document['launch_template']}")
            click.echo(f"  restarts   {', '.join(document['restarts']) or 'nothing: it already runs that image'}")
            click.echo(f"  keeps      {', '.join(document['keeps'])}")
        return
    result = run_upgrade(plan, moving, wait_timeout, log=lambda line: click.echo(f"  {line}", err=True))
    document = {"instance": name, "state": result.state, "image": result.image, "detail": result.detail}
    if result.snapshot:
        document["snapshot"] = result.snapshot
    if options.json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(f"{config.name}/{name}: {result.state}: {result.detail}")
    if result.state == "rolled back":
        raise SystemExit(1)


def _local(config, name: str, image: Path | None):
    from builder.errors import BuilderError
    from builder.local.instances import LocalInstance, current_image
    from builder.upgrade import LocalUpgradeTarget, UpgradePlan, local_image

    instance = LocalInstance(config, name)
    if not instance.running() and instance.image_record() is None:
        raise BuilderError(f"no local instance {name} to upgrade: `builder launch {name} --target local` makes one")
    new = image if image is not None else current_image(config).disk.parent
    local_image(new)  # a whole image, before anything stops
    moving = LocalUpgradeTarget(instance, upgrade_to=str(new.resolve()))
    return moving, UpgradePlan(name, moving.image(), moving.upgrade_to)


def _aws(config, name: str, ami: str | None):
    from builder.aws import gpu, preflight
    from builder.aws.clients import AwsClients
    from builder.aws.launch import find_image
    from builder.errors import BuilderError
    from builder.upgrade import AwsUpgradeTarget, UpgradePlan

    clients = AwsClients(config)
    # What the account lacks stops the upgrade before the instance stops (its next start needs it all).
    preflight.require(clients, config, preflight.FOR_UPGRADE, "upgrade", note=lambda line: click.echo(line, err=True))
    moving = AwsUpgradeTarget(clients, config, name)
    current = moving.image()
    if current is None:
        raise BuilderError(f"no running instance {name} to upgrade: `builder launch {name}` makes one")
    # it exists, and fits the instance type (a GPU type needs the gpu image), before anything stops
    variant = gpu.instance_variant(clients.ec2, config.aws.instance_type)
    new = find_image(clients.ec2, config.name, ami, variant)["ImageId"]
    return moving, UpgradePlan(name, current, new, template=moving.next_template_version())
