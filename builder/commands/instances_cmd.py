"""`builder status [NAME]` and `builder destroy NAME`: the platform's instances, on AWS or local."""

from __future__ import annotations

import json

import click

from builder.commands.target import target_option
from builder.options import GlobalOptions, command_options

TARGET = target_option()


@click.command()
@click.argument("name", required=False)
@TARGET
@command_options("set", "json")
@click.pass_obj
def status(options: GlobalOptions, name: str | None, target: str | None) -> None:
    """Show each instance of the platform, its state and the firstboot agent's report."""
    from builder.aws.instances import InstanceView
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    if name is not None:
        check_instance_name(name)
    config = load(options).config
    target = resolve(target, config)
    if target == "local":
        views = _local_views(config, name)
    else:
        from builder.aws import group
        from builder.aws.clients import AwsClients
        from builder.aws.instances import list_instances

        clients = AwsClients(config)
        views = list_instances(clients.ec2, config.name, name)
        groups = group.of_platform(clients.autoscaling, config.name)
        for view in views:
            if view.name in groups and any(i["InstanceId"] == view.instance_id for i in groups[view.name]["Instances"]):
                view.group = group.summary(groups[view.name])
        # A group that holds no instance still says so (an upgrade cut short, a launch it retries).
        for instance_name, found in sorted(groups.items()):
            if (name is None or instance_name == name) and not any(v.name == instance_name for v in views):
                views.append(InstanceView(instance_name, "-", "none", "-", "", "-", "", group=group.summary(found)))
        _add_snapshots(clients.ec2, config, views)
    schedule = _schedule_report(config) if target == "aws" else None
    if options.json:
        extra = {"schedule": schedule} if schedule else {}
        click.echo(json.dumps([{**view.to_json(), **extra} for view in views], indent=2))
        return
    from builder.backup_status import describe, summary
    from builder.certificate_status import describe as describe_certificate
    from builder.certificate_status import summary as certificate_summary
    from builder.disk_status import disk_line

    if not views:
        if target == "local":
            from builder.local.paths import platform_dir

            where = f"under {platform_dir(config) / 'instances'} (local.state_dir)"
        else:
            where = f"in {config.aws.region}"
        click.echo(f"no instance of {config.name} {where}" + (f" named {name}" if name else ""))
        return
    for view in views:
        click.echo(f"{view.name:<16} {view.instance_id:<20} {view.state:<9} {view.zone:<12} agent: {view.agent_state}")
        if view.agent_detail:
            click.echo(f"{'':<16} {view.agent_detail}")
        if view.health != "-":
            click.echo(f"{'':<16} now: {view.health.removeprefix('ai-platform health: ')}")
        disk = disk_line(view.disk)
        if disk:
            click.echo(f"{'':<16} data volume: {disk}")
        backup = describe(view.backup)
        if backup:
            click.echo(f"{'':<16} on-volume backup: {summary(backup)}")
        certificate = describe_certificate(view.certificate)
        if certificate:
            click.echo(f"{'':<16} certificate: {certificate_summary(certificate)}")
        if view.readahead != "-":  # AWS: how far the models' read-ahead got
            click.echo(f"{'':<16} models: {view.readahead.removeprefix('ai-platform readahead: ')}")
        if view.group != "-":
            click.echo(f"{'':<16} group: {view.group}")
        if schedule:
            click.echo(f"{'':<16} schedule: {schedule['summary']}; next: {schedule['next'] or 'none'}")
        if target == "aws":
            click.echo(f"{'':<16} snapshot: {_snapshot_line(view.last_snapshot)}")
        if view.snapshot_warning:
            click.echo(f"{'':<16} WARNING: {view.snapshot_warning}")


def _schedule_report(config) -> dict | None:
    """aws.schedule in words and its next change (the same for each instance of the platform)."""
    from datetime import datetime, timezone

    from builder.hours import next_change

    schedule = config.aws.schedule
    if schedule is None:
        return None
    change = next_change(schedule, datetime.now(timezone.utc))
    times = [f"{action} {getattr(schedule, action)!r}" for action in ("start", "stop") if getattr(schedule, action)]
    return {
        "summary": f"{', '.join(times)} ({schedule.timezone})",
        "next": change.in_words(schedule.timezone) if change else None,
    }


def _add_snapshots(ec2, config, views: list) -> None:
    """Each instance's last data-volume snapshot and its age, and a warning when it is too old."""
    from builder.aws.instances import data_volumes_created
    from builder.aws.snapshot_policy import last_snapshots, snapshot_report

    newest = last_snapshots(ec2, config.name)
    made = data_volumes_created(ec2, config.name)
    for view in views:
        view.last_snapshot, view.snapshot_warning = snapshot_report(
            newest.get(view.name), made.get(view.name), config.backups.snapshots.enabled
        )


def _snapshot_line(summary: dict | None) -> str:
    from builder.aws.snapshot_policy import age_in_words

    if summary is None:
        return "none yet"
    return f"{summary['snapshot_id']}, {age_in_words(summary)} ago ({summary['reason']}, {summary['state']})"


@click.command()
@click.argument("name")
@click.option("--delete-data", is_flag=True, help="Also delete the data volume (asks you to type the name).")
@TARGET
@command_options("set", "json", "dry_run")
@click.pass_obj
def destroy(options: GlobalOptions, name: str, delete_data: bool, target: str | None) -> None:
    """Terminate instance NAME. Its data volume is kept for the next launch unless --delete-data."""
    from builder.aws.clients import AwsClients
    from builder.aws.instances import data_volume, delete_data_volume, list_instances, terminate
    from builder.commands.config_cmd import load
    from builder.commands.target import resolve
    from builder.userdata import check_instance_name

    check_instance_name(name)  # the name becomes a path on the local target: nothing outside state_dir
    config = load(options).config
    if resolve(target, config) == "local":
        return _destroy_local(options, config, name, delete_data)
    from builder.aws import group, names

    clients = AwsClients(config)
    ec2 = clients.ec2
    group_name = names.group_name(config.name, name)
    volume = data_volume(ec2, config.name, name)
    from builder.aws.snapshot_policy import snapshots_everywhere

    # What --delete-data deletes besides the volume: every snapshot of it, here and its copies.
    snapshots = snapshots_everywhere(clients, config, name) if delete_data else []
    snapshot_ids = [snapshot_id for _, snapshot_id in snapshots]
    if options.dry_run:
        running = [view.instance_id for view in list_instances(ec2, config.name, name)]
        found = group.find(clients.autoscaling, group_name)
        if options.json:
            plan = {
                "instance": name,
                "dry_run": True,
                "group": group_name if found else None,
                "terminate": running,
                "data_volume": volume["VolumeId"] if volume else None,
                "data_volume_state": ("deleted" if delete_data else "kept") if volume else "none",
                "snapshots": snapshot_ids,
                "snapshots_state": "deleted" if delete_data else "kept",
            }
            click.echo(json.dumps(plan, indent=2))
            return
        if found:
            click.echo(f"would delete auto scaling group {group_name}")
        click.echo(f"would terminate: {', '.join(running) or 'nothing'}")
        click.echo(f"would {'DELETE' if delete_data else 'keep'} data volume {volume['VolumeId'] if volume else '-'}")
        if delete_data:
            click.echo(f"would DELETE {_snapshots_in_words(snapshot_ids)}")
            click.echo(
                f"would delete the snapshot policy and its role of {config.name} if no other data volume of it is left"
            )
            click.echo(
                f"would delete {name}'s owner credentials, launch template and role (and the security group if unused)"
            )
        return
    if delete_data and (volume or snapshots):
        what = [f"data volume {volume['VolumeId']}"] if volume else []
        what += [_snapshots_in_words(snapshot_ids)] if snapshots else []
        _confirm_data_deletion(name, " and ".join(what))
    log = lambda line: click.echo(f"  {line}", err=True)  # noqa: E731
    # The group first, or it would replace the instance it loses; then any instance outside it
    # (launched by a builder before groups).
    ended = group.delete(clients.autoscaling, ec2, group_name, log)
    ended += terminate(ec2, config.name, name, log=log)
    if delete_data and volume:
        delete_data_volume(ec2, volume)
    removed: list[str] = []
    if delete_data:  # the owner's logins go with the data they open, and what only this instance used
        from builder.aws.teardown import delete_instance_resources

        removed = delete_instance_resources(clients, config, name, log, snapshots)
    kept = "deleted" if delete_data and volume else "kept"
    result = {
        "instance": name,
        "terminated": ended,
        "data_volume": volume["VolumeId"] if volume else None,
        "data_volume_state": kept if volume else "none",
        "deleted": removed,
        "snapshots": snapshot_ids,  # with --delete-data: those it deleted (and named in the question)
        "snapshots_state": "deleted" if delete_data else "kept",
    }
    if options.json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(
            f"{name}: terminated {', '.join(ended) or 'nothing (none running)'}; "
            f"data volume {result['data_volume'] or '-'} {kept if volume else ''}".rstrip()
        )
        if removed:
            click.echo(f"{name}: also deleted {', '.join(removed)}")


def _snapshots_in_words(ids: list[str]) -> str:
    from builder.words import counted

    if not ids:
        return "no snapshot (there is none)"
    shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
    return f"its {counted(len(ids), 'snapshot')} ({shown})"


def _confirm_data_deletion(name: str, what: str) -> None:
    from builder.commands.confirm import typed_name

    # The volume is every byte of this instance's data.
    typed_name(
        name,
        f"This deletes {what} for good",
        "nothing was terminated or deleted",
        f"echo {name} | builder destroy {name} --delete-data",
    )


def _local_views(config, name: str | None) -> list:
    from builder.aws.instances import InstanceView
    from builder.local.instances import LocalInstance
    from builder.local.paths import platform_dir

    root = platform_dir(config) / "instances"
    names = [name] if name else sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    views = []
    for instance_name in names:
        instance = LocalInstance(config, instance_name)
        state = instance.state()
        if not state:
            continue
        agent_state, line = instance.agent_report()
        views.append(
            InstanceView(
                instance_name,
                state["instance_id"],
                "running" if instance.running() else "stopped",
                "local",
                str(state["launched_at"]),
                agent_state,
                line,
                instance.health(),
                backup=instance.backup(),
                disk=instance.disk(),
                certificate=instance.certificate(),
            )
        )
    return views


def _destroy_local(options: GlobalOptions, config, name: str, delete_data: bool) -> None:
    from builder.local.instances import LocalInstance

    instance = LocalInstance(config, name)
    if options.dry_run:
        if options.json:
            state = "deleted" if delete_data else "kept"
            plan = {
                "instance": name,
                "dry_run": True,
                "running": instance.running(),
                "data_disk": str(instance.data_disk),
            }
            click.echo(json.dumps({**plan, "data_disk_state": state if instance.data_disk.exists() else "none"}))
            return
        click.echo(f"would power off {name}; would {'DELETE' if delete_data else 'keep'} {instance.data_disk}")
        return
    if delete_data and instance.data_disk.exists():
        _confirm_data_deletion(name, f"data disk {instance.data_disk}")
    how = instance.destroy(delete_data, log=lambda line: click.echo(f"  {line}", err=True))
    kept = "deleted" if delete_data else "kept"
    if options.json:
        result = {"instance": name, "shutdown": how, "data_disk": str(instance.data_disk), "data_disk_state": kept}
        click.echo(json.dumps(result))
    else:
        said = {
            "clean": "shut down cleanly",
            "forced": "FORCED off (no clean shutdown)",
            "not running": "was not running",
        }
        click.echo(f"{name}: {said[how]}; data disk {instance.data_disk} {kept}")
