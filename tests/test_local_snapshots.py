"""Snapshots of a local instance's data disk and restores from them (builder/local/data_snapshots.py),
`builder backups` / `builder restore --target local`, and LocalUpgradeTarget's three data methods.

The disks are real (sparse raw files, qcow2 copies made by qemu-img) and so is the qemu of a
running instance: `qemu-system-x86_64 -machine none` holds the data disk and answers on the QMP
socket as a booted instance's qemu does, without a guest (a boot takes minutes under TCG; the
backup job is qemu's, not the guest's). Its writes after a snapshot go through qemu's own
`qemu-io` monitor command, as a guest's writes go through qemu. Where a boot would be needed (the
stop and start around a restore, the agent's wait) the instance's launch/destroy/wait are
stand-ins: that whole path runs in the VM in tests/test_chain_local.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.config.schema import PlatformConfig
from builder.errors import BuilderError
from builder.local import data_snapshots
from builder.local.instances import LocalInstance
from builder.local.qmp import Qmp
from builder.upgrade import LocalUpgradeTarget

DISK_BYTES = 64 * 2**20
BEFORE, AFTER = 1 * 2**20, 40 * 2**20  # where the markers go on the disk


def write_at(disk: Path, offset: int, data: bytes) -> None:
    with open(disk, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def read_at(disk: Path, offset: int, size: int) -> bytes:
    with open(disk, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def as_raw(snapshot: data_snapshots.Snapshot, tmp_path: Path) -> Path:
    raw = tmp_path / f"{snapshot.id}.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", snapshot.path, str(raw)], check=True)
    return raw


@pytest.fixture
def instance(tmp_path):
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "state")}})
    made = LocalInstance(config, "alpha")
    made.directory.mkdir(parents=True)
    made.data_disk.parent.mkdir(parents=True)
    with open(made.data_disk, "wb") as handle:
        handle.truncate(DISK_BYTES)
    write_at(made.data_disk, BEFORE, b"written before")
    return made


@pytest.fixture
def running(instance):
    """The instance's qemu, holding its data disk and listening on its QMP socket (no guest)."""
    command = [
        "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
        "-drive", f"file={instance.data_disk},if=none,id=data,format=raw",
        "-qmp", f"unix:{instance.qmp},server=on,wait=off",
    ]  # fmt: skip
    qemu = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not instance.qmp.exists():
        assert qemu.poll() is None, qemu.stderr.read()
        time.sleep(0.05)
    (instance.directory / "state.json").write_text(json.dumps({"instance_id": "local-alpha-1", "pid": qemu.pid}))
    yield qemu
    qemu.terminate()
    qemu.wait(30)
    instance.qmp.unlink(missing_ok=True)


def guest_writes(instance: LocalInstance, offset: int, pattern: int) -> None:
    """A write through qemu, as the guest's go (qemu-io prints on qemu's stdout; the disk shows it)."""
    with Qmp(instance.qmp) as qmp:
        qmp.execute("human-monitor-command", **{"command-line": f'qemu-io data "write -P {pattern} {offset} 4k"'})


def test_a_snapshot_while_stopped_is_a_clean_sparse_copy_with_its_record(instance, tmp_path):
    lines: list[str] = []
    snapshot = data_snapshots.take(instance, "manual", lines.append)
    assert snapshot.consistency == data_snapshots.CLEAN and snapshot.reason == "manual"
    assert (
        snapshot.disk_bytes == DISK_BYTES and 0 < snapshot.size_bytes < DISK_BYTES / 8
    )  # the empty space is not copied
    assert read_at(as_raw(snapshot, tmp_path), BEFORE, 14) == b"written before"
    record = json.loads((data_snapshots.snapshots_dir(instance) / f"{snapshot.id}.json").read_text())
    assert record == snapshot.to_json() and record["taken_at"].endswith("Z")
    assert [s.id for s in data_snapshots.list_snapshots(instance)] == [snapshot.id]
    assert not list(data_snapshots.snapshots_dir(instance).glob("*partial*"))
    assert any(snapshot.id in line for line in lines)
    assert data_snapshots.snapshots_dir(instance).stat().st_mode & 0o777 == 0o700  # the host's other users: out


def test_two_snapshots_in_the_same_second_get_their_own_ids_and_the_newest_is_the_latest(instance):
    first = data_snapshots.take(instance, "manual", lambda _line: None)
    second = data_snapshots.take(instance, "manual", lambda _line: None)
    assert first.id != second.id
    assert data_snapshots.find(instance, None) == second
    assert data_snapshots.find(instance, first.id) == first


def test_an_unknown_snapshot_is_refused_naming_the_ones_there_are(instance):
    with pytest.raises(BuilderError, match=r"no snapshots of its data disk.*--take"):
        data_snapshots.find(instance, None)
    taken = data_snapshots.take(instance, "manual", lambda _line: None)
    with pytest.raises(
        BuilderError, match=f"--snapshot snap-nope: alpha has no such snapshot; its snapshots: {taken.id}"
    ):
        data_snapshots.find(instance, "snap-nope")


def test_a_snapshot_while_it_runs_is_the_disk_at_that_instant_through_qemus_backup_job(instance, running, tmp_path):
    snapshot = data_snapshots.take(instance, "manual", lambda _line: None)
    guest_writes(instance, AFTER, 0x55)  # the guest writes on after the snapshot
    assert snapshot.consistency == data_snapshots.CRASH
    copy = as_raw(snapshot, tmp_path)
    assert read_at(copy, BEFORE, 14) == b"written before"
    assert read_at(copy, AFTER, 4) == bytes(4)
    assert read_at(instance.data_disk, AFTER, 4) == b"\x55" * 4
    assert snapshot.size_bytes < DISK_BYTES / 8  # the backup job skipped the empty space too
    # qemu let go of the copy (the node is deleted): qemu-img may open it, locks and all.
    subprocess.run(["qemu-img", "info", snapshot.path], check=True, capture_output=True)
    assert running.poll() is None  # the instance ran on throughout


def test_a_live_snapshot_of_a_qemu_without_a_qmp_socket_says_how_to_take_one_and_leaves_nothing(instance):
    (instance.directory / "state.json").write_text(json.dumps({"pid": os.getpid()}))  # "running", no QMP
    with pytest.raises(BuilderError, match=r"no QMP monitor.*take the snapshot while it is stopped"):
        data_snapshots.take(instance, "manual", lambda _line: None)
    assert list(data_snapshots.snapshots_dir(instance).iterdir()) == []
    assert data_snapshots.list_snapshots(instance) == []


def test_a_restore_swaps_the_disk_and_keeps_the_one_it_replaced(instance, tmp_path):
    snapshot = data_snapshots.take(instance, "manual", lambda _line: None)
    write_at(instance.data_disk, AFTER, b"written after")
    replaced = data_snapshots.restore(instance, snapshot, lambda _line: None)
    assert read_at(instance.data_disk, BEFORE, 14) == b"written before"
    assert read_at(instance.data_disk, AFTER, 13) == bytes(13)
    assert instance.data_disk.stat().st_size == DISK_BYTES
    kept = Path(replaced.disk)
    assert kept.parent == instance.data_disk.parent and kept.name.startswith("alpha.replaced-")
    assert read_at(kept, AFTER, 13) == b"written after"  # every byte of the replaced disk is kept
    assert json.loads(kept.with_suffix(".json").read_text())["replaced_by"] == snapshot.id
    assert data_snapshots.replaced_disks(instance) == [replaced]
    assert Path(snapshot.path).is_file()  # the snapshot stays for another restore
    assert not list(instance.data_disk.parent.glob(".*restoring"))


def test_a_restore_refuses_a_running_instance(instance, running):
    snapshot = data_snapshots.take(instance, "manual", lambda _line: None)
    with pytest.raises(BuilderError, match="alpha is running: its data disk is swapped only while it is stopped"):
        data_snapshots.restore(instance, snapshot, lambda _line: None)
    assert data_snapshots.replaced_disks(instance) == []


class Vm:
    """What a boot would do around a restore, played on the real instance object: running until
    destroyed, launched again on demand, its agent reporting `report`."""

    def __init__(self, instance: LocalInstance, report: str = "done", launch_fails: bool = False):
        self.instance, self.report, self.launch_fails = instance, report, launch_fails
        self.up, self.calls = True, []
        instance.running = lambda: self.up
        instance.image_record = lambda: None
        instance.destroy = self.destroy
        instance.launch = self.launch
        instance.wait = lambda timeout, on_change, on_step: (self.report, f"ai-platform firstboot: {self.report}")

    def destroy(self, delete_data, log):
        self.calls.append("stop")
        self.up = False
        return "clean"

    def launch(self, log, image=None):
        self.calls.append(("start", read_at(self.instance.data_disk, AFTER, 13)))
        if self.launch_fails:
            raise BuilderError("qemu exited at once")
        self.up = True
        return {"instance_id": "local-alpha-2"}


@pytest.fixture
def any_image(monkeypatch):
    monkeypatch.setattr(data_snapshots, "current_image", lambda config: "the image")


def test_restoring_a_running_instance_stops_it_swaps_and_starts_it_again(instance, any_image):
    snapshot = data_snapshots.take(instance, "manual", lambda _line: None)
    write_at(instance.data_disk, AFTER, b"written after")
    vm = Vm(instance)
    result = data_snapshots.restore_instance(instance, snapshot, lambda _line: None, 60)
    assert vm.calls == ["stop", ("start", bytes(13))]  # started on the restored disk
    assert (result["started"], result["agent_state"], result["shutdown"]) == (True, "done", "clean")
    assert read_at(Path(result["replaced_disk"]), AFTER, 13) == b"written after"


def test_a_restore_that_fails_after_the_stop_starts_the_instance_again_on_its_disk(instance, any_image, monkeypatch):
    snapshot = data_snapshots.take(instance, "manual", lambda _line: None)
    write_at(instance.data_disk, AFTER, b"written after")
    vm = Vm(instance)
    monkeypatch.setattr(data_snapshots, "_convert", lambda *_args: (_ for _ in ()).throw(BuilderError("disk full")))
    with pytest.raises(
        BuilderError, match=r"the restore failed \(disk full\); alpha's data disk is unchanged and it runs"
    ):
        data_snapshots.restore_instance(instance, snapshot, lambda _line: None, 60)
    assert vm.calls == ["stop", ("start", b"written after")] and vm.up
    assert data_snapshots.replaced_disks(instance) == []


def test_a_restored_instance_that_does_not_start_says_what_is_left_and_how_to_start_it(instance, any_image):
    snapshot = data_snapshots.take(instance, "manual", lambda _line: None)
    Vm(instance, launch_fails=True)
    with pytest.raises(BuilderError) as raised:
        data_snapshots.restore_instance(instance, snapshot, lambda _line: None, 60)
    said = str(raised.value)
    assert f"alpha's data disk is a copy of {snapshot.id} (the disk it replaced is kept: " in said
    assert "`builder launch alpha --target local` starts it" in said


# --- the commands -----------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path, instance):
    (tmp_path / "platform.yaml").write_text(f"version: 1\nlocal: {{state_dir: {tmp_path / 'state'}}}\n")


def test_backups_takes_and_lists_snapshots(builder, config_file, instance):
    taken = builder("--json", "backups", "alpha", "--target", "local", "--take")
    assert taken.code == 0, taken.err
    snapshot = json.loads(taken.out)
    assert (snapshot["reason"], snapshot["consistency"]) == ("manual", "clean")
    listed = json.loads(builder("--json", "backups", "alpha", "--target", "local").out)
    assert [s["id"] for s in listed["snapshots"]] == [snapshot["id"]] and listed["replaced_disks"] == []
    shown = builder("backups", "alpha", "--target", "local")
    assert shown.code == 0 and "1 snapshot of" in shown.out and snapshot["id"] in shown.out


def test_backups_take_dry_run_writes_nothing(builder, config_file, instance):
    result = builder("backups", "alpha", "--target", "local", "--take", "--dry-run")
    assert result.code == 0, result.err
    assert "would take a clean snapshot" in result.out
    assert not data_snapshots.snapshots_dir(instance).exists()


def test_restore_needs_exactly_one_of_snapshot_and_latest(builder, config_file, instance):
    for words in ([], ["--latest", "--snapshot", "snap-x"]):
        result = builder("restore", "alpha", "--target", "local", *words)
        assert result.code == 2 and "--snapshot ID or --latest" in result.err


def test_restore_asks_for_the_name_and_a_closed_stdin_changes_nothing(builder, config_file, instance, monkeypatch):
    data_snapshots.take(instance, "manual", lambda _line: None)
    write_at(instance.data_disk, AFTER, b"written after")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    closed = builder("restore", "alpha", "--target", "local", "--latest")
    assert closed.code == 1 and "standard input is closed; nothing was stopped or changed" in closed.err
    monkeypatch.setattr(sys, "stdin", io.StringIO("beta\n"))
    wrong = builder("restore", "alpha", "--target", "local", "--latest")
    assert wrong.code == 1 and "did not match: nothing was stopped or changed" in wrong.err
    planned = builder("restore", "alpha", "--target", "local", "--latest", "--dry-run")
    assert planned.code == 0 and "leave it stopped" in planned.out
    assert read_at(instance.data_disk, AFTER, 13) == b"written after"
    assert data_snapshots.replaced_disks(instance) == []
    monkeypatch.setattr(sys, "stdin", io.StringIO("alpha\n"))
    done = builder("--json", "restore", "alpha", "--target", "local", "--latest")
    assert done.code == 0, done.err
    assert json.loads(done.out)["started"] is False
    assert read_at(instance.data_disk, AFTER, 13) == bytes(13)
    [kept] = data_snapshots.replaced_disks(instance)
    assert read_at(Path(kept.disk), AFTER, 13) == b"written after"


def test_restore_of_an_unknown_snapshot_names_the_flag(builder, config_file, instance):
    none_yet = builder("restore", "alpha", "--target", "local", "--latest", "--yes")
    assert none_yet.code == 1 and "`builder backups alpha --target local --take` takes one" in none_yet.err
    data_snapshots.take(instance, "manual", lambda _line: None)
    result = builder("restore", "alpha", "--target", "local", "--snapshot", "snap-nope", "--yes")
    assert result.code == 1 and "--snapshot snap-nope" in result.err


# --- LocalUpgradeTarget -----------------------------------------------------------------------


@pytest.fixture
def image_dir(tmp_path):
    directory = tmp_path / "images" / "new"
    directory.mkdir(parents=True)
    (directory / "root.qcow2").write_bytes(b"")
    (directory / "image.json").write_text(json.dumps({"disk": str(directory / "root.qcow2")}))
    return directory


def test_the_upgrade_snapshot_is_taken_while_stopped_and_names_both_images(instance, image_dir):
    (instance.directory / "image.json").write_text(json.dumps({"disk": "/images/old/root.qcow2"}))
    target = LocalUpgradeTarget(instance, upgrade_to=str(image_dir))
    snapshot_id = target.snapshot_data("before-upgrade", lambda _line: None)
    [snapshot] = data_snapshots.list_snapshots(instance)
    assert snapshot.id == snapshot_id and snapshot.consistency == data_snapshots.CLEAN
    assert (snapshot.reason, snapshot.upgrade_from, snapshot.upgrade_to) == (
        "before-upgrade",
        "/images/old",
        str(image_dir),
    )


def test_the_upgrade_snapshot_refuses_a_running_instance(instance, running):
    with pytest.raises(BuilderError, match="still runs"):
        LocalUpgradeTarget(instance).snapshot_data("before-upgrade", lambda _line: None)


def test_restore_data_puts_the_snapshot_back_and_keeps_the_disk_the_new_image_touched(instance):
    target = LocalUpgradeTarget(instance)
    snapshot_id = target.snapshot_data("before-upgrade", lambda _line: None)
    write_at(instance.data_disk, AFTER, b"migrated data")
    said = target.restore_data(snapshot_id, lambda _line: None)
    assert read_at(instance.data_disk, AFTER, 13) == bytes(13)
    [kept] = data_snapshots.replaced_disks(instance)
    assert said.endswith(kept.disk) and read_at(Path(kept.disk), AFTER, 13) == b"migrated data"


STEPS_TO_SECRETS = [
    "firstboot: step config: ok in 0.1 s",
    "firstboot: step identity: ok in 0.2 s",
    "firstboot: step storage: ok in 3.0 s",
    "firstboot: step tailscale: ok in 0.1 s",
    "firstboot: step secrets: ok in 0.4 s",
]


def started_with_console(instance: LocalInstance, image_dir: Path, console: list[str] | None) -> LocalUpgradeTarget:
    """A start() whose qemu wrote `console` (None: qemu never started, the old console stays)."""

    def launch(log, image=None):
        if console is None:
            raise BuilderError("qemu exited at once")
        instance.console.write_text("".join(f"[  12.0] {line}\r\n" for line in console))
        return {}

    instance.launch = launch
    target = LocalUpgradeTarget(instance)
    with contextlib.suppress(BuilderError):
        target.start(str(image_dir), lambda _line: None)
    return target


@pytest.mark.parametrize(
    ("console", "started"),
    [
        (None, False),  # qemu never ran for this start
        (["Linux version 6.1"], True),  # nothing of the agent: not known
        ([*STEPS_TO_SECRETS, "ai-platform firstboot: failed (5 ok, 1 failed); gdrive: no rclone"], False),
        ([*STEPS_TO_SECRETS, "firstboot: step gdrive: ok in 0.1 s"], False),  # stopped during `stacks`
        ([*STEPS_TO_SECRETS, "firstboot: step gdrive: ok in 0.1 s", "firstboot: step stacks: ok in 1.0 s"], True),
        ([*STEPS_TO_SECRETS, "firstboot: healthy: ai-platform-stack@data.service after 40 s"], True),
    ],
    ids=["no-qemu", "no-agent-lines", "failed-before", "cut-before", "stacks-step-ended", "a-stack-healthy"],
)
def test_started_stacks_reads_the_last_starts_console(instance, image_dir, console, started):
    instance.console.write_text("ai-platform firstboot: done (the old image's boot)\nfirstboot: healthy: x after 1 s\n")
    assert started_with_console(instance, image_dir, console).started_stacks() is started


def test_started_stacks_is_not_known_before_any_start(instance):
    assert LocalUpgradeTarget(instance).started_stacks() is True
