"""Snapshots of a local instance's data disk, and restores from them: the local side of `builder
backups`, `builder restore` and the copy `builder upgrade` takes before it moves.

Under local.state_dir/<platform>/:

    snapshots/<name>/<id>.qcow2          a copy of the data disk (qcow2: a sparse 40 GiB disk copies
                                         to what it holds, its empty space costs nothing)
    snapshots/<name>/<id>.json           its record: when, its size, why (`manual` | `before-upgrade`,
                                         with the upgrade's from and to images), how consistent
    data/<name>.replaced-<time>.img      a data disk a restore swapped out, with a .json beside it
                                         saying when and by which snapshot: kept, never deleted

How a copy is taken depends on whether the instance runs:
- stopped: `qemu-img convert` of the disk nobody holds (qemu's lock refuses a disk a VM still has).
  Consistent: the guest's shutdown stopped the stacks and unmounted the disk. This is the copy
  `upgrade` takes, after the stop, before the new image touches the data.
- running: a backup job through qemu's QMP monitor (blockdev-backup, sync=full): the disk as it was
  at the instant the job started, while the guest writes on (qemu copies a block aside before the
  guest overwrites it). Crash-consistent, like an EBS snapshot of an attached volume (what AWS's
  scheduled snapshots are): what a power cut at that instant would leave; Postgres recovers from
  its WAL, a file the guest had not yet written back is not in it. Stopping the instance for a
  manual snapshot would cost two shutdowns and a boot (tens of minutes under TCG) for a
  consistency the databases do not need. The record says which kind each copy is.

A restore happens while the instance is stopped: the snapshot is converted into a new raw disk
beside the current one, the current one gets a second name (a hard link, with its record), and
the new one takes its place in one rename, so there is never a moment without a data disk (a
launch would make a blank one).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.errors import BuilderError
from builder.local.instances import LocalImage, LocalInstance, current_image
from builder.local.paths import platform_dir, private_dir, private_file
from builder.local.qemu import DATA_DRIVE
from builder.local.qmp import Qmp, QmpError
from builder.words import bytes_in_words

REASONS = ("manual", "before-upgrade")
CLEAN, CRASH = "clean", "crash-consistent"  # stopped copy, live copy
JOB_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Snapshot:
    id: str
    instance: str
    taken_at: str  # UTC, ISO 8601
    reason: str
    consistency: str  # CLEAN or CRASH
    size_bytes: int  # what the copy takes on this machine
    disk_bytes: int  # the data disk's size, as the guest sees it
    path: str
    upgrade_from: str | None = None
    upgrade_to: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReplacedDisk:
    """A data disk a restore swapped out: all its bytes kept, never deleted by builder."""

    disk: str
    instance: str
    replaced_at: str
    replaced_by: str  # the snapshot the new disk was made from

    def to_json(self) -> dict:
        return asdict(self)


def snapshots_dir(instance: LocalInstance) -> Path:
    return platform_dir(instance.config) / "snapshots" / instance.name


def list_snapshots(instance: LocalInstance) -> list[Snapshot]:
    """The instance's snapshots, oldest first; a record whose copy is gone is not one."""
    directory = snapshots_dir(instance)
    found = []
    for record in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        snapshot = Snapshot(**json.loads(record.read_text()))
        if Path(snapshot.path).is_file():
            found.append(snapshot)
    return sorted(found, key=lambda s: (s.taken_at, s.id))


def find(instance: LocalInstance, snapshot_id: str | None) -> Snapshot:
    """The snapshot named `snapshot_id`, or the newest one when None."""
    snapshots = list_snapshots(instance)
    if not snapshots:
        raise BuilderError(
            f"{instance.name} has no snapshots of its data disk in {snapshots_dir(instance)}: "
            f"`builder backups {instance.name} --target local --take` takes one"
        )
    if snapshot_id is None:
        return snapshots[-1]
    for snapshot in snapshots:
        if snapshot.id == snapshot_id:
            return snapshot
    known = ", ".join(s.id for s in snapshots)
    raise BuilderError(f"--snapshot {snapshot_id}: {instance.name} has no such snapshot; its snapshots: {known}")


def replaced_disks(instance: LocalInstance) -> list[ReplacedDisk]:
    """The data disks restores swapped out, oldest first."""
    directory = instance.data_disk.parent
    records = sorted(directory.glob(f"{instance.name}.replaced-*.json")) if directory.is_dir() else []
    return [ReplacedDisk(**json.loads(record.read_text())) for record in records]


def take(
    instance: LocalInstance,
    reason: str,
    log: Callable[[str], None],
    upgrade_from: str | None = None,
    upgrade_to: str | None = None,
) -> Snapshot:
    """Copy the data disk: through qemu's monitor while the instance runs, directly while it is stopped."""
    if reason not in REASONS:
        raise ValueError(f"reason {reason!r}: one of {', '.join(REASONS)}")
    disk = instance.data_disk
    if not disk.is_file():
        raise BuilderError(f"{instance.name} has no data disk to snapshot ({disk})")
    # Copies of the owner's secrets and databases: no other user of the host reads them.
    directory = private_dir(snapshots_dir(instance))
    snapshot_id = _unique(directory, "snap-" + _stamp())
    partial = directory / f"{snapshot_id}.partial.qcow2"
    final = directory / f"{snapshot_id}.qcow2"
    started = time.monotonic()
    live = instance.running()
    try:
        if live:
            log(f"taking {snapshot_id} of {disk.name} while {instance.name} runs (through qemu's QMP monitor)")
            _backup_live(instance, snapshot_id, partial, log)
        else:
            log(f"taking {snapshot_id} of {disk.name} while {instance.name} is stopped")
            _convert(disk, "raw", partial, "qcow2")
        private_file(partial).rename(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    snapshot = Snapshot(
        id=snapshot_id,
        instance=instance.name,
        taken_at=_iso(),
        reason=reason,
        consistency=CRASH if live else CLEAN,
        size_bytes=final.stat().st_blocks * 512,
        disk_bytes=disk.stat().st_size,
        path=str(final),
        upgrade_from=upgrade_from,
        upgrade_to=upgrade_to,
    )
    _write_json(directory / f"{snapshot_id}.json", snapshot.to_json())
    seconds = time.monotonic() - started
    log(f"took {snapshot_id} in {seconds:.0f} s ({bytes_in_words(snapshot.size_bytes)} on this machine)")
    return snapshot


def restore(instance: LocalInstance, snapshot: Snapshot, log: Callable[[str], None]) -> ReplacedDisk | None:
    """While the instance is stopped: its data disk becomes a copy of `snapshot`; the disk it had is
    kept under a second name with a record beside it (None when it had none)."""
    if instance.running():
        raise BuilderError(f"{instance.name} is running: its data disk is swapped only while it is stopped")
    disk = instance.data_disk
    private_dir(disk.parent)
    incoming = disk.with_name(f".{disk.name}.restoring")
    log(f"making a new data disk from {snapshot.id} (taken {snapshot.taken_at}, {snapshot.reason})")
    try:
        _convert(Path(snapshot.path), "qcow2", incoming, "raw")
        private_file(incoming)
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise
    replaced = None
    if disk.exists():
        kept = disk.parent / (_unique(disk.parent, f"{instance.name}.replaced-{_stamp()}", suffix=".img") + ".img")
        replaced = ReplacedDisk(str(kept), instance.name, _iso(), snapshot.id)
        try:
            os.link(disk, kept)  # a second name first: the data disk's own name never goes missing
        except OSError:  # a filesystem without hard links: a rename, then the swap right after
            disk.rename(kept)
        _write_json(kept.with_suffix(".json"), replaced.to_json())
    os.replace(incoming, disk)
    log(f"{disk.name} is now a copy of {snapshot.id}" + (f"; the disk it replaced is kept: {kept}" if replaced else ""))
    return replaced


def restore_plan(instance: LocalInstance, snapshot: Snapshot) -> dict:
    """What `restore_instance` would do, changing nothing (`builder restore --dry-run`)."""
    running = instance.running()
    image = _image_to_start(instance) if running else None
    return {
        "instance": instance.name,
        "snapshot": snapshot.to_json(),
        "running": running,
        "data_disk": str(instance.data_disk),
        "replaced_disk": str(instance.data_disk.with_name(f"{instance.name}.replaced-<time>.img"))
        if instance.data_disk.exists()
        else None,
        "restarts_on": str(image.disk) if image else None,
    }


def restore_instance(
    instance: LocalInstance,
    snapshot: Snapshot,
    log: Callable[[str], None],
    wait_timeout: float,
    on_change: Callable[[str, str], None] = lambda _state, _line: None,
    on_step: Callable[[str], None] = lambda _line: None,
) -> dict:
    """`builder restore --target local`: a running instance is stopped cleanly, its data disk
    swapped, and started again on the image it ran, then followed until its agent reports (as
    `launch --wait`). A stopped one gets the swap only: its next launch starts on the restored disk."""
    running = instance.running()
    image = _image_to_start(instance) if running else None  # a missing image stops it here, before the stop
    how = instance.destroy(delete_data=False, log=log) if running else "not running"
    result = {"instance": instance.name, "snapshot": snapshot.id, "shutdown": how, "started": running}
    try:
        replaced = restore(instance, snapshot, log)
    except Exception as exc:
        if not running:
            raise
        failed = f"the restore failed ({exc}); {instance.name}'s data disk is unchanged"
        try:  # back up on the disk it had
            instance.launch(log, image=image)
        except Exception as again:
            raise BuilderError(
                f"{failed}, and starting it again failed ({again}): "
                f"`builder launch {instance.name} --target local` starts it"
            ) from None
        raise BuilderError(f"{failed} and it runs again on it") from None
    result["replaced_disk"] = replaced.disk if replaced else None
    if not running:
        return result
    left = (
        f"{instance.name}'s data disk is a copy of {snapshot.id}"
        + (f" (the disk it replaced is kept: {replaced.disk})" if replaced else "")
        + ", but"
    )
    try:
        state = instance.launch(log, image=image)
    except Exception as exc:  # whatever it was, the user needs to know what is left
        raise BuilderError(
            f"{left} it did not start again ({exc}); `builder launch {instance.name} --target local` starts it"
        ) from None
    try:
        agent_state, line = instance.wait(wait_timeout, on_change, on_step=on_step)
    except BuilderError as exc:
        raise BuilderError(f"{left} {exc}") from None
    if agent_state == "failed":
        raise BuilderError(f"{left} its agent failed on it: {line}; console: {instance.console}")
    result.update(instance_id=state["instance_id"], agent_state=agent_state, agent_detail=line)
    return result


def _image_to_start(instance: LocalInstance) -> LocalImage:
    """The image the instance last ran (a restore changes the data, not the image); the current
    one for an instance that never recorded it."""
    record = instance.image_record()
    if record is None:
        return current_image(instance.config)
    image = LocalImage.from_json(record)
    if image.missing():
        raise BuilderError(
            f"{instance.name} last ran the image at {image.disk.parent}, and {image.missing()} is gone: "
            "nothing was stopped or changed"
        )
    return image


def _backup_live(instance: LocalInstance, node: str, target: Path, log: Callable[[str], None]) -> None:
    """A point-in-time copy of the running guest's data disk into `target` (qcow2), by a backup job
    that qemu runs beside the guest."""
    if not instance.qmp.exists():
        raise BuilderError(
            f"{instance.name}'s qemu has no QMP monitor ({instance.qmp}; launched by an older builder): "
            f"stop it (`builder destroy {instance.name} --target local`) and take the snapshot while it is stopped"
        )
    _run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), str(instance.data_disk.stat().st_size)])
    with Qmp(instance.qmp) as qmp:
        qmp.execute(
            "blockdev-add",
            **{"driver": "qcow2", "node-name": node, "file": {"driver": "file", "filename": str(target)}},
        )
        try:
            qmp.execute(
                "blockdev-backup",
                **{"job-id": node, "device": DATA_DRIVE, "target": node, "sync": "full", "auto-dismiss": False},
            )
            _wait_for_job(qmp, node, log)
        except BaseException:  # whatever failed, qemu lets go of the copy; the first failure is the one told
            _quietly(qmp, "job-dismiss", id=node)
            _quietly(qmp, "blockdev-del", **{"node-name": node})
            raise
        qmp.execute("job-dismiss", id=node)
        qmp.execute("blockdev-del", **{"node-name": node})


def _wait_for_job(qmp: Qmp, job_id: str, log: Callable[[str], None]) -> None:
    """Until the job concludes; QmpError with qemu's reason when it concluded with an error. A job
    still running when this is interrupted is cancelled, so that it can be dismissed."""
    started = next_note = time.monotonic()
    try:
        while True:
            [job] = [job for job in qmp.execute("query-jobs") if job["id"] == job_id]
            if job["status"] == "concluded":
                if job.get("error"):
                    raise QmpError(f"qemu's backup of the data disk failed: {job['error']}")
                return
            if time.monotonic() >= next_note:
                done = job["current-progress"] / max(job["total-progress"], 1)
                log(f"copying the data disk: {done:.0%} after {time.monotonic() - started:.0f} s")
                next_note += 30
            time.sleep(JOB_POLL_SECONDS)
    except BaseException:
        if _quietly(qmp, "job-cancel", id=job_id, force=True):
            while next(job for job in qmp.execute("query-jobs") if job["id"] == job_id)["status"] != "concluded":
                time.sleep(JOB_POLL_SECONDS)
        raise


def _quietly(qmp: Qmp, command: str, **arguments) -> bool:
    """A command of the clean-up after a failure: whether it went through (the failure is told, not this)."""
    try:
        qmp.execute(command, **arguments)
    except QmpError:
        return False
    return True


def _convert(source: Path, source_format: str, target: Path, target_format: str) -> None:
    _run(["qemu-img", "convert", "-q", "-f", source_format, "-O", target_format, str(source), str(target)])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuilderError(f"{command[0]} {command[1]} failed: {done.stderr.strip() or f'exit {done.returncode}'}")


def _unique(directory: Path, base: str, suffix: str = ".json") -> str:
    """`base`, or `base-2`, `-3`... where a record of that name exists (two in the same second)."""
    name, count = base, 1
    while (directory / f"{name}{suffix}").exists():
        count += 1
        name = f"{base}-{count}"
    return name


def _write_json(path: Path, document: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(document, indent=2))
    temporary.replace(path)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
