"""`builder backups NAME` and `builder restore NAME`: an instance's copies of its data, and a
restore from one. The work is the target's (AWS: builder/aws/snapshots.py and restore.py; local:
builder/local/data_snapshots.py); these commands read the flags, ask, and print."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timezone

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options

SNAPSHOT_ID = re.compile(r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$")


@click.command()
@click.argument("name")
@target_option()
@command_options("set", "json")
@click.pass_obj
def backups(options: GlobalOptions, name: str, target: str | None) -> None:
    """List instance NAME's snapshots of its data volume, newest first: when, how old, their size
    and state, and why (scheduled, manual, or before an upgrade, with its images)."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    check_instance_name(name)
    config = load(options).config
    if resolve(target, config) == "local":
        return _local(name).list_backups(options, config, name)
    from builder.aws.clients import AwsClients
    from builder.aws.instances import data_volume
    from builder.aws.snapshots import list_snapshots

    clients = AwsClients(config)
    volume = data_volume(clients.ec2, config.name, name)
    views = list_snapshots(clients.ec2, config.name, name)
    now = datetime.now(timezone.utc)
    on_volume = _on_volume_backups(clients, config, name)
    if options.json:
        document = {
            "instance": name,
            "target": "aws",
            "data_volume": volume["VolumeId"] if volume else None,
            "snapshots": [{**view.to_json(), "age_seconds": _seconds_since(view.started, now)} for view in views],
        }
        if on_volume is not None:
            document["on_volume_backups"] = on_volume
        click.echo(json.dumps(document, indent=2))
        return
    from builder.words import counted

    holder = f"data volume {volume['VolumeId']}" if volume else "no data volume now"
    click.echo(f"{config.name}/{name} ({holder}): {counted(len(views), 'snapshot')}" + (", newest first" * bool(views)))
    if views:
        click.echo(f"  {'SNAPSHOT':<22} {'TAKEN (UTC)':<19} {'AGE':>6} {'SIZE':>8}  {'STATE':<14} WHY")
    for view in views:
        state = view.state + (f" {view.progress}" if view.state == "pending" and view.progress else "")
        why = view.reason
        if view.upgrade_from or view.upgrade_to:
            why += f" ({view.upgrade_from or '?'} -> {view.upgrade_to or '?'})"
        taken = view.started.replace("T", " ")[:19]
        age = _age(_seconds_since(view.started, now))
        click.echo(f"  {view.snapshot_id:<22} {taken:<19} {age:>6} {view.size_gib:>4} GiB  {state:<14} {why}")
    if on_volume is not None:
        from builder.backup_status import summary

        click.echo(f"on-volume backup (the agent's last report): {summary(on_volume)}")


def _on_volume_backups(clients, config, name: str) -> dict | None:
    """The last good on-volume backup as the agent reports it (its backup tag, firstboot/backup_record.py),
    from the newest instance that reported one; None before any report."""
    from builder.aws.instances import list_instances
    from builder.backup_status import describe

    for view in reversed(list_instances(clients.ec2, config.name, name)):
        described = describe(view.backup)
        if described is not None:
            return described
    return None


@click.command()
@click.argument("name")
@target_option()
@click.option("--snapshot", "snapshot_id", metavar="ID", help="The snapshot to restore (`builder backups NAME`).")
@click.option("--latest", is_flag=True, help="Restore the newest completed snapshot.")
@click.option("--yes", is_flag=True, help="Do not ask; a restore sets aside what was written since the snapshot.")
@click.option(
    "--wait/--no-wait",
    "wait",
    default=True,
    show_default=True,
    help="Follow the agent until it reports done or failed.",
)
@click.option("--wait-timeout", default=1800, show_default=True, metavar="SECONDS", help="How long --wait waits.")
@command_options("set", "json", "dry_run")
@click.pass_obj
def restore(
    options: GlobalOptions,
    name: str,
    target: str | None,
    snapshot_id: str | None,
    latest: bool,
    yes: bool,
    wait: bool,
    wait_timeout: int,
) -> None:
    """Put instance NAME's data back as it was in a snapshot: a new data volume made from it (same
    zone, type, IOPS, throughput and key) takes the place of the one in use, which is kept, detached
    and tagged as replaced (never deleted); the instance stops for it and starts again."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.errors import BuilderError
    from builder.userdata import check_instance_name

    if (snapshot_id is None) == (not latest):
        raise click.UsageError("give --snapshot ID or --latest (one of them)")
    check_instance_name(name)
    config = load(options).config
    if resolve(target, config) == "local":
        return _local(name).restore(options, config, name, snapshot_id, yes=yes, wait=wait, wait_timeout=wait_timeout)
    if snapshot_id is not None and not SNAPSHOT_ID.match(snapshot_id):
        raise BuilderError(f"--snapshot: {snapshot_id!r} is not a snapshot id (snap- and 8 or 17 hex digits)")
    from builder.aws.clients import AwsClients
    from builder.aws.restore import plan_restore
    from builder.aws.restore import restore as run_restore
    from builder.aws.snapshots import back_hint

    clients = AwsClients(config)
    plan = plan_restore(clients, config, name, snapshot_id)
    if options.dry_run:
        if options.json:
            click.echo(json.dumps({"dry_run": True, **plan.to_json()}, indent=2))
        else:
            click.echo(f"restore plan for {config.name}/{name} (dry run: nothing changed):")
            for action in plan.actions():
                click.echo(f"  - {action}")
        return
    if not yes:
        _confirm(name, plan)
    log = lambda line: click.echo(f"  {line}", err=True)  # noqa: E731
    result = run_restore(
        clients, plan, log, wait=wait, wait_timeout=wait_timeout, on_change=_progress(quiet=options.json)
    )
    restored = result.restored
    document = {
        "instance": name,
        "snapshot": restored.snapshot_id,
        "data_volume": restored.volume_id,
        "replaced_volume": restored.replaced_volume_id,
        "replaced_volume_state": "kept",
        "instance_id": result.instance_id,
        "agent_state": result.agent_state,
        "back": back_hint(name, restored),
    }
    if options.json:
        click.echo(json.dumps(document, indent=2))
        return
    started = f"; {result.instance_id} runs on it" if result.instance_id else f"; `builder launch {name}` starts it"
    agent = f" (agent: {result.agent_state})" if result.agent_state else ""
    click.echo(f"{config.name}/{name}: restored from {restored.snapshot_id}{started}{agent}")
    click.echo(f"  {restored.kept_line()}")
    click.echo(f"  {back_hint(name, restored)}")


def _confirm(name: str, plan) -> None:
    from builder.errors import BuilderError

    # Typed, not a flag alone: what was written since the snapshot leaves the instance (it stays on
    # the replaced volume, which is kept).
    question = (
        f"This stops {name} and puts its data back as it was at {plan.snapshot.started} ({plan.snapshot.snapshot_id}); "
        f"what was written since stays only on {plan.volume_id}, which is kept. Type {name} to confirm"
    )
    if sys.stdin.isatty():
        typed = click.prompt(question, default="", show_default=False)
    else:  # piped (`echo NAME | builder restore ...`), or closed: nobody to ask
        click.echo(f"{question}: ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            raise BuilderError(
                "cannot ask for the confirmation: standard input is closed; nothing was stopped or changed "
                f"(run it in a terminal, pipe the name: echo {name} | builder restore {name} ..., or pass --yes)"
            )
        typed = line.strip()
        click.echo("", err=True)  # the answer came from a pipe: what follows starts on a line of its own
    if typed != name:
        raise BuilderError("confirmation did not match: nothing was stopped or changed")


def _progress(quiet: bool):
    import time

    started = time.monotonic()

    def progress(state: str, detail: str) -> None:
        if not quiet:
            click.echo(f"  [{time.monotonic() - started:5.0f} s] {state}{': ' + detail if detail else ''}", err=True)

    return progress


def _local(name: str):
    """The local target's side (builder/local/data_snapshots.py), where it has landed."""
    import importlib.util

    from builder.errors import BuilderError

    if importlib.util.find_spec("builder.local.data_snapshots") is None:
        raise BuilderError(
            f"backups and restore of {name} are not yet on the local target (--target local); they are on aws"
        )
    from builder.local import data_snapshots

    return data_snapshots


def _seconds_since(iso: str, now: datetime) -> int:
    return max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
