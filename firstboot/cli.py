"""`firstboot run [--only STEP] [--skip STEP]`, `firstboot status [--json]`, `firstboot health` (the
timer's), `firstboot grow-data`, `firstboot egress` (each time dockerd starts) and `firstboot readahead`
(ai-platform-readahead.service's).

Exit codes, as cloud-init's: 0 done, 1 failed, 2 done with recoverable warnings; and 75 failed for a
passing reason (an outage that outlasted the retries), which the unit answers by starting the agent again.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import sys
from pathlib import Path

from firstboot import agent, egress
from firstboot.framework import Context, Retry, UnknownStep, run_steps, select
from firstboot.status import exit_code, read_status


def main(argv: list[str] | None = None, settings: agent.Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firstboot", description="Turn this instance into a running platform.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the boot steps (every boot; each step converges)")
    run.add_argument("--only", action="append", default=[], metavar="STEP", help="run only STEP (repeatable)")
    run.add_argument("--skip", action="append", default=[], metavar="STEP", help="skip STEP (repeatable)")
    show = commands.add_parser("status", help="show the last run's report")
    show.add_argument("--json", action="store_true", help="the status file as it is")
    commands.add_parser("health", help="check every stack's containers now; report a change (timer)")
    commands.add_parser("grow-data", help="grow the data filesystem into a volume made larger, online")
    commands.add_parser(
        "certificate", help="renew the edge's certificate when due; reload the edge on a change (timer)"
    )
    commands.add_parser("egress", help="apply the containers' egress policy (/etc/ai-platform/egress.json) to iptables")
    commands.add_parser("readahead", help="read the baked models once, so their first load is not slow (AWS)")
    arguments = parser.parse_args(argv)
    settings = settings or agent.Settings()

    if arguments.command == "status":
        return _show_status(settings.paths.status, arguments.json)
    if arguments.command == "health":
        return _health(settings)
    if arguments.command == "grow-data":
        return _grow_data(settings)
    if arguments.command == "certificate":
        return _certificate(settings)
    if arguments.command == "egress":
        return _egress(settings)
    if arguments.command == "readahead":
        return _read_ahead(settings)
    logging.basicConfig(level=logging.INFO, format="firstboot: %(message)s", stream=sys.stderr)
    try:
        steps = select(agent.STEPS, arguments.only, arguments.skip)
    except UnknownStep as exc:
        parser.error(str(exc))
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.paths.state_dir / "firstboot.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("firstboot: another run is in progress; not starting a second one", file=sys.stderr)
            return 1
        context = Context(state_dir=settings.paths.state_dir, platform=None, values={"settings": settings})
        retry = Retry(deadline=settings.transient_deadline, sleep=settings.sleep, clock=settings.clock)
        status = run_steps(steps, context, settings.paths.status, on_step=_tag_progress(context), retry=retry)
    print(status.summary(), flush=True)  # the unit sends stdout to the console too
    return exit_code(status.state, status.first_error)


def _tag_progress(context: Context):
    """On AWS, each finished step on the instance's status tags (once its id is known)."""
    from firstboot.report import publish_step_tags

    def tag(status, record) -> None:
        config = context.values.get("config")
        if config is not None and config.target == "aws" and context.instance_id and record.state != "skipped":
            publish_step_tags(context.platform.ec2, context.instance_id, status, record)

    return tag


def _health(settings: agent.Settings) -> int:
    """Every stack's health now, and the on-volume backups' state: the health file always; for each, a
    console line and its AWS tag on a change."""
    from firstboot import backup_record, disk_space, health, instance_config, platform_resume, storage

    config = instance_config.load_instance_config(settings.paths.instance_config)
    platform = settings.make_platform(config) if settings.make_platform else None
    if platform is None:
        from firstboot.platform import Platform

        platform = Platform(config)
    mount_unit = storage.mount_unit_name(str(settings.paths.data_mount))
    resumed = platform_resume.resume(platform.systemd, mount_unit)
    if resumed:
        print(f"firstboot: {resumed}", flush=True)
    stacks = health.instance_stacks(settings.paths.systemd_dir)
    found = health.check(stacks, platform.systemd, settings.containers or health.docker_states)
    record_path = settings.paths.state_dir / "health.json"
    account = config.stack.signal_account
    if account and {"signal_api", "clawdbot"} <= set(stacks):
        from firstboot import signal_channel

        found[health.SIGNAL_CHANNEL] = signal_channel.state(
            account, settings.signal_accounts or signal_channel.signal_cli_accounts
        )
        previous = health.previous_record(record_path).get(health.SIGNAL_CHANNEL)
        if signal_channel.follow(previous, found[health.SIGNAL_CHANNEL], platform.systemd.restart):
            print(f"firstboot: {account} was linked: {signal_channel.CLAWDBOT_UNIT} restarted", flush=True)
    from firstboot import gpu

    if gpu.is_gpu_image(settings.paths.image_variant):
        found[health.GPU] = gpu.report()
    _follow_data_growth(settings)
    _show_on_the_index(settings, found)
    line = health.summary(found)
    previous_backup = health.previous_backup_line(record_path)
    backup = backup_record.report(settings.paths.data_mount)
    previous_disk = health.previous_disk(record_path)
    disk = _watch_disk(settings, previous_disk.get("dropped"))
    status = read_status(settings.paths.status) or {}
    instance_id = status.get("instance_id") if config.target == "aws" else None
    previous_egress = health.previous_egress_line(record_path)
    egress_state = _follow_egress(settings, platform.systemd)
    if health.record(found, record_path, backup=backup.to_json(), disk=disk.to_json(), egress=egress_state):
        print(line, flush=True)  # the unit sends stdout to the console: `builder status` reads it there
        _publish(instance_id, "health", lambda: health.publish_health_tag(platform.ec2, instance_id, line))
    if backup.line() != previous_backup:
        print(backup.line(), flush=True)
        _publish(
            instance_id, "backup", lambda: backup_record.publish_backup_tag(platform.ec2, instance_id, backup.line())
        )
    for action in disk.actions:
        print(f"firstboot: data volume: {action}", flush=True)  # the disk line below stays the last one
    if egress_state and egress_state["line"] != previous_egress:
        print(egress_state["line"], flush=True)
    _report_read_ahead(settings, instance_id, platform)
    if disk.line() != previous_disk.get("line"):
        print(disk.line(), flush=True)
        _publish(instance_id, "disk", lambda: disk_space.publish_disk_tag(platform.ec2, instance_id, disk.line()))
    return 0


def _follow_egress(settings: agent.Settings, systemd) -> dict | None:
    """The egress policy's last outcome for the health file; while it failed, its unit is started
    again (every minute: the health timer's period). None before dockerd's first start has tried."""
    from firstboot import egress_report

    report = egress_report.read(settings.paths.state_dir)
    if report is not None and not report.enforced:
        try:
            systemd.restart(egress_report.EGRESS_UNIT)
        except Exception as exc:  # the health check goes on; the next minute tries again
            print(f"firstboot: {egress_report.EGRESS_UNIT} not started again: {exc}", file=sys.stderr)
    return report.to_json() if report else None


def _show_on_the_index(settings: agent.Settings, found: dict[str, str]) -> None:
    """Each stack's health on the edge's index page (firstboot/edge_state.py)."""
    from firstboot import edge_state, health

    stacks = {stack: state for stack, state in found.items() if stack != health.SIGNAL_CHANNEL}
    try:
        edge_state.write(settings.paths.etc_dir, stacks)
    except OSError as exc:  # the health check goes on either way
        print(f"firstboot: the edge's state file not written: {exc}", file=sys.stderr)


def _read_ahead(settings: agent.Settings) -> int:
    """`firstboot readahead`: the baked models read once (firstboot/readahead.py), when the instance
    config asks for it (AWS, its root volume not initialized by AWS); its line on the console."""
    from firstboot import instance_config, readahead

    paths = settings.paths
    config = instance_config.load_instance_config(paths.instance_config)
    if config.target != "aws" or not config.models_read_ahead:
        print(f"{readahead.PREFIX} not needed here (not AWS, or AWS initializes the root volume)", flush=True)
        return 0
    if not paths.models_dir.is_dir():
        print(f"{readahead.PREFIX} no models at {paths.models_dir}", flush=True)
        return 0
    state = readahead.read_ahead(paths.models_dir, paths.state_dir / "readahead.json")
    print(readahead.line(state), flush=True)
    return 0


def _report_read_ahead(settings: agent.Settings, instance_id: str | None, platform) -> None:
    """The read-ahead's line, each time it moved (its state file; none where it does not run): in the
    health report, on the console and, on AWS, its own tag (`builder status`)."""
    from firstboot import readahead

    state_path = settings.paths.state_dir / "readahead.json"
    if not state_path.exists():
        return
    line = readahead.line(readahead.load(state_path))
    said = settings.paths.state_dir / "readahead-said.txt"
    if said.exists() and said.read_text(encoding="utf-8") == line:
        return
    print(line, flush=True)
    _publish(instance_id, "readahead", lambda: readahead.publish_tag(platform.ec2, instance_id, line))
    said.write_text(line, encoding="utf-8")


def _watch_disk(settings: agent.Settings, dropped: str | None):
    """The data volume's room now (firstboot/disk_space.py); a failure to read it is its warning."""
    from firstboot import disk_space

    try:
        paths = settings.paths
        return disk_space.watch(paths.data_mount, settings.disk, mountinfo=paths.mountinfo, previous_dropped=dropped)
    except (disk_space.DiskError, OSError, KeyError, ValueError) as exc:
        return disk_space.DiskReport(None, (f"not measured: {exc}",), (), None)


def _grow_data(settings: agent.Settings) -> int:
    """`firstboot grow-data`: the data filesystem grown now into its volume, if larger; 1 when it failed
    or no data volume is mounted."""
    from firstboot import data_growth

    paths = settings.paths
    device = data_growth.device_mounted_at(paths.data_mount, paths.mountinfo)
    if device is None:
        print(f"firstboot: nothing is mounted at {paths.data_mount}: nothing to grow", file=sys.stderr)
        return 1
    try:
        growth = data_growth.grow(device, paths.mountinfo)
    except data_growth.GrowthError as exc:
        print(f"firstboot: {exc}", file=sys.stderr)
        return 1
    print(f"{DATA_PREFIX} {growth.line()}" if growth else f"{DATA_PREFIX} {device} has no room to grow into")
    return 0


DATA_PREFIX = "ai-platform data:"


def _follow_data_growth(settings: agent.Settings) -> None:
    """Every health check: a data volume made larger while the instance runs (`builder resize`) gets
    its filesystem grown online. A growth is said on the console; a failure once, not every minute."""
    from firstboot import data_growth

    paths = settings.paths
    said = paths.state_dir / "data-growth.txt"
    try:
        growth = data_growth.grow_mounted(paths.data_mount, paths.mountinfo)
        line = growth.line() if growth else None
    except (data_growth.GrowthError, OSError) as exc:  # the health check goes on either way
        line = f"the data filesystem could not grow into its larger volume: {exc}"
        if said.exists() and said.read_text(encoding="utf-8") == line:
            return
    if line is not None:
        print(f"{DATA_PREFIX} {line}", flush=True)
        said.parent.mkdir(parents=True, exist_ok=True)
        said.write_text(line, encoding="utf-8")


def _certificate(settings: agent.Settings) -> int:
    """The daily renewal (ai-platform-certificate.timer): the certificate the boot would serve now, the
    edge reloaded only when a file changed, the report line on the console and the tag when it changed."""
    from firstboot import certificate, certificate_report, instance_config

    paths = settings.paths
    config = instance_config.load_instance_config(paths.instance_config)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.state_dir / "firstboot.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a boot run serves a certificate itself
            print("firstboot: a boot run is in progress; the certificate is left to it", file=sys.stderr)
            return 0
        cli = settings.tailscale if config.tailscale else None
        hostname = config.tailscale.hostname if config.tailscale else f"{config.platform}-{config.instance}"
        wanted = certificate.wanted_from(cli.status() if cli else None, hostname, config.stack.public_host)
        warnings: list[str] = []
        try:
            served = certificate.install(
                cli,
                wanted,
                paths.tls_dir,
                paths.data_mount / "platform" / "tls",
                warnings.append,
                ca_bundle=paths.ca_bundle,
            )
            done = (settings.edge_reload or certificate.reload_edge)() if served.changed else "edge not reloaded"
        except certificate.CertificateError as exc:
            print(f"firstboot: certificate: {exc}", file=sys.stderr)
            return 1
    for warning in warnings:
        print(f"firstboot: warning: {warning}", file=sys.stderr)
    print(f"firstboot: certificate: {served.describe()}; {done}", file=sys.stderr)
    report = certificate_report.of_served(served)
    if certificate_report.record(report, paths.state_dir):
        print(report.line(), flush=True)  # the unit sends stdout to the console: `builder status` reads it
        status = read_status(paths.status) or {}
        instance_id = status.get("instance_id") if config.target == "aws" else None
        if instance_id:
            platform = settings.make_platform(config) if settings.make_platform else None
            if platform is None:
                from firstboot.platform import Platform

                platform = Platform(config)
            _publish(
                instance_id,
                "certificate",
                lambda: certificate_report.publish_certificate_tag(platform.ec2, instance_id, report),
            )
    return 0


def _publish(instance_id: str | None, what: str, tag) -> None:
    """On AWS, a changed line onto the instance's tag; a failure is said, and the next change tries again
    (the health file and the console have the line)."""
    if not instance_id:
        return
    try:
        tag()
    except Exception as exc:
        print(f"firstboot: {what} tag not published: {type(exc).__name__}", file=sys.stderr)


def _egress(settings: agent.Settings) -> int:
    """Run each time dockerd starts (docker.service.d/30-ai-platform-egress.conf, whose failure does not
    stop dockerd) and by ai-platform-egress.service. Fails open and says so (firstboot/egress.py's
    docstring says why): the outcome goes to the report the health check carries and retries."""
    from firstboot import egress_report

    apply = settings.egress_apply or egress.apply
    policy_path = settings.paths.etc_dir / "egress.json"
    try:
        policy = egress.load_policy(policy_path)
        fallback = ""
    except egress.EgressError as exc:
        policy, fallback = egress.default_policy(), f"defaults only ({exc})"
    try:
        apply(policy)
        report = egress_report.EgressReport(True, fallback or egress.describe(policy))
    except (egress.EgressError, OSError) as exc:  # OSError: no iptables at all
        report = egress_report.EgressReport(False, str(exc))
    egress_report.write(report, settings.paths.state_dir)
    print(report.line(), file=sys.stdout if report.enforced and not fallback else sys.stderr, flush=True)
    return 0 if report.enforced else 1


def _show_status(path: Path, as_json: bool) -> int:
    document = read_status(path)
    if document is None:
        print(f"firstboot: no status yet ({path} does not exist)", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        print(
            f"state: {document['state']}  (instance {document.get('instance_id') or '?'}, "
            f"started {document['started_at']}, finished {document.get('finished_at') or '-'})"
        )
        for step in document["steps"]:
            seconds = "" if step["seconds"] is None else f"{step['seconds']:.2f} s"
            print(f"  {step['name']:<10} {step['state']:<8} {seconds:>9}  {step['detail']}")
            for warning in step["warnings"]:
                print(f"  {'':<10} warning: {warning}")
    return exit_code(document["state"], document.get("first_error"))


if __name__ == "__main__":
    sys.exit(main())
