"""`builder backups NAME` and `builder restore NAME`: an instance's snapshots of its data, and a
restore from one. The work is the target's (builder/local/data_snapshots.py for local); these
commands read the flags, ask, and print."""

from __future__ import annotations

import json
import sys

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options


@click.command()
@click.argument("name")
@target_option()
@click.option(
    "--take",
    is_flag=True,
    help="Local: take a snapshot of the data disk now (while it runs: live, crash-consistent; stopped: clean).",
)
@command_options("set", "json", "dry_run")
@click.pass_obj
def backups(options: GlobalOptions, name: str, target: str | None, take: bool) -> None:
    """List instance NAME's snapshots of its data: when, their size, why (manual, or before an
    upgrade, with its images), and the data disks restores replaced (kept)."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    check_instance_name(name)  # the name becomes a path on the local target: nothing outside state_dir
    config = load(options).config
    if resolve(target, config) != "local":
        _aws_not_here()
    from builder.local import data_snapshots
    from builder.local.instances import LocalInstance

    instance = LocalInstance(config, name)
    if take:
        _take_local(options, instance)
        return
    snapshots = data_snapshots.list_snapshots(instance)
    replaced = data_snapshots.replaced_disks(instance)
    if options.json:
        document = {
            "instance": name,
            "target": "local",
            "data_disk": str(instance.data_disk),
            "snapshots": [snapshot.to_json() for snapshot in snapshots],
            "replaced_disks": [disk.to_json() for disk in replaced],
        }
        click.echo(json.dumps(document, indent=2))
        return
    _print_local(instance, snapshots, replaced)


def _take_local(options: GlobalOptions, instance) -> None:
    from builder.errors import BuilderError
    from builder.local import data_snapshots

    running = instance.running()
    if not instance.data_disk.is_file():
        raise BuilderError(f"{instance.name} has no data disk to snapshot ({instance.data_disk})")
    if options.dry_run:
        how = data_snapshots.CRASH if running else data_snapshots.CLEAN
        plan = {"dry_run": True, "instance": instance.name, "running": running, "consistency": how}
        if options.json:
            click.echo(json.dumps({**plan, "data_disk": str(instance.data_disk)}, indent=2))
        else:
            state = "while it runs" if running else "while it is stopped"
            click.echo(f"would take a {how} snapshot of {instance.data_disk} {state} (dry run: nothing changed)")
        return
    snapshot = data_snapshots.take(instance, "manual", log=lambda line: click.echo(f"  {line}", err=True))
    if options.json:
        click.echo(json.dumps(snapshot.to_json(), indent=2))
    else:
        click.echo(f"{instance.name}: took {snapshot.id} ({snapshot.consistency}) at {snapshot.taken_at}")


def _print_local(instance, snapshots: list, replaced: list) -> None:
    from builder.words import bytes_in_words, counted

    click.echo(f"{instance.name} (local): {counted(len(snapshots), 'snapshot')} of {instance.data_disk}")
    for snapshot in snapshots:
        why = snapshot.reason
        if snapshot.reason == "before-upgrade":
            why += f" {snapshot.upgrade_from or '(not recorded)'} -> {snapshot.upgrade_to or '(not recorded)'}"
        size = bytes_in_words(snapshot.size_bytes)
        click.echo(f"  {snapshot.id:<24} {snapshot.taken_at}  {size:>10}  {snapshot.consistency:<16}  {why}")
    if not snapshots:
        click.echo(f"  (none: `builder backups {instance.name} --target local --take` takes one)")
    for disk in replaced:
        click.echo(f"replaced, kept: {disk.disk} (at {disk.replaced_at}, by a restore of {disk.replaced_by})")


@click.command()
@click.argument("name")
@target_option()
@click.option("--snapshot", "snapshot_id", metavar="ID", help="The snapshot to restore (`builder backups NAME`).")
@click.option("--latest", is_flag=True, help="Restore the newest snapshot.")
@click.option("--yes", is_flag=True, help="Do not ask for the instance's name to be typed back.")
@click.option(
    "--wait-timeout",
    default=1800,
    show_default=True,
    metavar="SECONDS",
    help="How long the instance, started again, gets to report.",
)
@command_options("set", "json", "dry_run")
@click.pass_obj
def restore(
    options: GlobalOptions,
    name: str,
    target: str | None,
    snapshot_id: str | None,
    latest: bool,
    yes: bool,
    wait_timeout: int,
) -> None:
    """Put instance NAME's data back as it was in a snapshot: a running instance stops cleanly, gets
    a data disk made from the snapshot and starts again; the disk it had is kept, never deleted."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    if (snapshot_id is None) == (not latest):
        raise click.UsageError("name the snapshot: --snapshot ID or --latest (one of them)")
    check_instance_name(name)
    config = load(options).config
    if resolve(target, config) != "local":
        _aws_not_here()
    from builder.local import data_snapshots
    from builder.local.instances import LocalInstance

    instance = LocalInstance(config, name)
    snapshot = data_snapshots.find(instance, snapshot_id)
    plan = data_snapshots.restore_plan(instance, snapshot)
    if options.dry_run:
        if options.json:
            click.echo(json.dumps({"dry_run": True, **plan}, indent=2))
            return
        click.echo(f"restore plan for {config.name}/{name} (local; dry run: nothing changed)")
        for line in _plan_lines(plan):
            click.echo(f"  {line}")
        return
    if not yes:
        _confirm(
            name,
            f"This puts {name}'s data back as it was at {snapshot.taken_at} ({snapshot.id}): "
            + "; ".join(_plan_lines(plan)),
        )
    log = lambda line: click.echo(f"  {line}", err=True)  # noqa: E731
    result = data_snapshots.restore_instance(
        instance, snapshot, log, wait_timeout, on_step=lambda line: log(line.removeprefix("firstboot: "))
    )
    if options.json:
        click.echo(json.dumps(result, indent=2))
        return
    kept = f"; the disk it replaced is kept: {result['replaced_disk']}" if result["replaced_disk"] else ""
    click.echo(f"{config.name}/{name}: data disk restored from {snapshot.id}{kept}")
    if result["started"]:
        click.echo(f"{config.name}/{name}: running again, agent {result['agent_state']}")
    else:
        click.echo(f"{config.name}/{name}: not running; `builder launch {name} --target local` starts it on this data")


def _plan_lines(plan: dict) -> list[str]:
    lines = ["stop it cleanly"] if plan["running"] else []
    lines.append(f"make {plan['data_disk']} anew from {plan['snapshot']['path']}")
    if plan["replaced_disk"]:
        lines.append(f"keep the disk it has as {plan['replaced_disk']}")
    if plan["running"]:
        lines.append(f"start it again from {plan['restarts_on']} and wait for its agent")
    else:
        lines.append("leave it stopped (it is not running): its next launch starts on the restored disk")
    return lines


def _confirm(name: str, what: str) -> None:
    from builder.errors import BuilderError

    # Typed, not a flag alone: what is on the disk now stops being the instance's data.
    question = f"{what}. Type {name} to confirm"
    if sys.stdin.isatty():
        typed = click.prompt(question, default="", show_default=False)
    else:  # piped, or closed: nobody to ask
        click.echo(f"{question}: ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            raise BuilderError(
                "cannot ask for the confirmation: standard input is closed; nothing was changed "
                f"(run it in a terminal, pipe the name, or add --yes: builder restore {name} ... --yes)"
            )
        typed = line.strip()
    if typed != name:
        raise BuilderError("confirmation did not match: nothing was changed")


def _aws_not_here() -> None:
    from builder.errors import NotBuiltYet

    raise NotBuiltYet("--target aws: snapshots of an AWS instance's data volume (this build has --target local)")
