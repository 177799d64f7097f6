"""`builder backups NAME` and `builder restore NAME`: an instance's copies of its data, and a
restore from one. The work is the target's (AWS: builder/aws/snapshots.py and restore.py; local:
builder/local/data_snapshots.py); these commands read the flags, ask, and print."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options

SNAPSHOT_ID = re.compile(r"^snap-([0-9a-f]{8}|[0-9a-f]{17})$")


@click.command()
@click.argument("name")
@target_option()
@click.option(
    "--take",
    is_flag=True,
    help="Take a snapshot of the data now (while it runs: crash-consistent, as after a power cut; stopped: clean).",
)
@command_options("set", "json", "dry_run")
@click.pass_obj
def backups(options: GlobalOptions, name: str, target: str | None, take: bool) -> None:
    """List instance NAME's snapshots of its data, newest first: when, how old, their size and
    state, and why (scheduled, manual, or before an upgrade, with its images); --take takes one."""
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    check_instance_name(name)  # the name becomes a path on the local target: nothing outside state_dir
    config = load(options).config
    if resolve(target, config) == "local":
        return _local_backups(options, config, name, take)
    from builder.aws.clients import AwsClients
    from builder.aws.instances import data_volume
    from builder.aws.snapshots import list_snapshots

    clients = AwsClients(config)
    volume = data_volume(clients.ec2, config.name, name)
    if take:
        return _take_aws(options, clients, config, name, volume)
    if options.dry_run:
        raise click.UsageError("--dry-run goes with --take (listing changes nothing)")
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


def _take_aws(options: GlobalOptions, clients, config, name: str, volume: dict | None) -> None:
    from builder.aws import snapshots
    from builder.errors import BuilderError

    if volume is None:
        raise BuilderError(f"{config.name}/{name} has no data volume to snapshot (`builder launch {name}` makes one)")
    attached = bool(volume.get("Attachments"))
    consistency = "crash-consistent" if attached else "clean"
    if options.dry_run:
        if options.json:
            plan = {"dry_run": True, "instance": name, "data_volume": volume["VolumeId"], "consistency": consistency}
            click.echo(json.dumps(plan, indent=2))
        else:
            click.echo(f"would take a {consistency} snapshot of {volume['VolumeId']} (dry run: nothing changed)")
        return
    log = lambda line: click.echo(f"  {line}", err=True)  # noqa: E731
    taken = snapshots.snapshot_volume(clients.ec2, config.name, name, volume["VolumeId"], snapshots.MANUAL, log)
    if options.json:
        click.echo(json.dumps({"instance": name, "snapshot": taken, "consistency": consistency}, indent=2))
    else:
        click.echo(f"{config.name}/{name}: took {taken} of {volume['VolumeId']} ({consistency}; EBS completes it)")


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
        return _local_restore(options, config, name, snapshot_id, yes=yes, wait_timeout=wait_timeout)
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
        _confirm(
            name,
            f"This stops {name} and puts its data back as it was at {plan.snapshot.started} "
            f"({plan.snapshot.snapshot_id}); what was written since stays only on {plan.volume_id}, which is kept",
        )
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


def _confirm(name: str, what: str) -> None:
    from builder.commands.confirm import typed_name

    # What was written since the snapshot leaves the instance (it stays on the replaced volume or
    # disk, which is kept).
    typed_name(name, what, "nothing was stopped or changed", f"echo {name} | builder restore {name} ..., or pass --yes")


def _progress(quiet: bool):
    import time

    started = time.monotonic()

    def progress(state: str, detail: str) -> None:
        if not quiet:
            click.echo(f"  [{time.monotonic() - started:5.0f} s] {state}{': ' + detail if detail else ''}", err=True)

    return progress


# The local target: its data disk's snapshots (builder/local/data_snapshots.py).


def _local_backups(options: GlobalOptions, config, name: str, take: bool) -> None:
    from builder.local import data_snapshots
    from builder.local.instances import LocalInstance

    instance = LocalInstance(config, name)
    if take:
        return _take_local(options, instance)
    if options.dry_run:
        raise click.UsageError("--dry-run goes with --take (listing changes nothing)")
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


def _local_restore(options: GlobalOptions, config, name: str, snapshot_id, yes: bool, wait_timeout: int) -> None:
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
        what = f"This puts {name}'s data back as it was at {snapshot.taken_at} ({snapshot.id}): "
        _confirm(name, what + "; ".join(_plan_lines(plan)))
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


def _seconds_since(iso: str, now: datetime) -> int:
    return max(0, int((now - datetime.fromisoformat(iso)).total_seconds()))


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
