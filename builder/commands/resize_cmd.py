"""`builder resize NAME --size GIB`: instance NAME's data volume (AWS) or data disk (local) made
larger while it runs, and its filesystem grown by the agent. The work is the target's
(builder/aws/resize.py, builder/local/resize.py); this command reads the flags and prints."""

from __future__ import annotations

import json

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options


@click.command()
@click.argument("name")
@click.option("--size", "size_gib", type=int, required=True, metavar="GIB", help="The new size, in whole GiB.")
@target_option()
@command_options("set", "json", "dry_run")
@click.pass_obj
def resize(options: GlobalOptions, name: str, size_gib: int, target: str | None) -> None:
    """Grow instance NAME's data volume to --size GiB; it keeps running. AWS: an EBS modification,
    online; local: the data disk grown (through qemu while it runs). The agent grows the filesystem:
    within a minute while the instance runs, else at its next boot. A volume never shrinks."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    check_instance_name(name)  # the name becomes a path on the local target: nothing outside state_dir
    config = load(options).config
    if resolve(target, config) == "local":
        return _resize_local(options, config, name, size_gib)
    from builder.aws import resize as aws_resize
    from builder.aws.clients import AwsClients

    aws_resize.check_size(size_gib)  # a size no volume takes is refused before any AWS call
    ec2 = AwsClients(config).ec2
    plan = aws_resize.plan_resize(ec2, config.name, name, size_gib)
    if _shown(options, plan):
        return
    state = aws_resize.resize(ec2, plan, log=lambda line: click.echo(f"  {line}", err=True))
    if options.json:
        click.echo(json.dumps({**plan.to_json(), "modification_state": state, "filesystem": plan.filesystem()}))
        return
    click.echo(
        f"{config.name}/{name}: data volume {plan.volume_id} grown from {plan.current_gib} to {plan.target_gib} GiB "
        f"(EBS modification {state}: the new size is usable)"
    )
    click.echo(f"  {plan.filesystem()}")


def _resize_local(options: GlobalOptions, config, name: str, size_gib: int) -> None:
    from builder.local import resize as local_resize
    from builder.local.instances import LocalInstance

    instance = LocalInstance(config, name)
    plan = local_resize.plan_resize(instance, size_gib)
    if _shown(options, plan):
        return
    local_resize.resize(instance, plan, log=lambda line: click.echo(f"  {line}", err=True))
    if options.json:
        click.echo(json.dumps({**plan.to_json(), "resized": True}))
        return
    click.echo(f"{config.name}/{name}: data disk {plan.data_disk} grown to {plan.target_gib} GiB")
    click.echo(f"  {plan.actions()[-1]}")


def _shown(options: GlobalOptions, plan) -> bool:
    """A dry run's plan, or a resize with nothing to do, shown; True when that is all there is."""
    if not options.dry_run and plan.needed:
        return False
    if options.json:
        click.echo(json.dumps({**plan.to_json(), "dry_run": options.dry_run, "resized": False}))
        return True
    heading = "resize plan (dry run: nothing changed)" if options.dry_run else "resize"
    click.echo(f"{heading} for {plan.instance}:")
    for action in plan.actions():
        click.echo(f"  - {action}")
    return True
