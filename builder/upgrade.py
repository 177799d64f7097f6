"""`builder upgrade NAME`: the instance moves onto another image with the same data, or goes back.

The story, whatever the target:
  1. stop the instance cleanly (its stacks stop before power-off; the data volume is kept);
  2. snapshot the data volume while nothing holds it (a consistent copy); a failed snapshot ends
     the upgrade there: the old image starts again, nothing changed;
  3. start it from the new image on the same data volume, and wait for its agent;
  4. done (or degraded): the instance now runs the new image;
     failed, no report within the wait, or any exception after the stop: stop it; when the new
     image got as far as its stacks (whose apps may have migrated their databases), make the data
     volume anew from the snapshot (the one the new image touched is kept and marked); start it
     again from the image it ran before, wait again, and say that it went back and why.
The data volume is never deleted nor left without an instance that owns it; the instance is never
left down: where going back fails too, the error names what is where and the command that brings
it back.

A target is anything with the calls of `UpgradeTarget`; the local one (qemu) and the AWS one are
below, the tests drive the story with a fake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

from builder.errors import BuilderError, failure_line

SETTLED = ("done", "degraded")
BEFORE_UPGRADE = "before-upgrade"  # the snapshot's reason (ai-platform:snapshot-reason)
STACKS_STEP = "services"  # the agent's step that starts the stacks (firstboot/agent.py): apps migrate there


class UpgradeTarget(Protocol):
    def image(self) -> str | None:
        """The image the instance runs now (None: not known, as for an instance launched before
        builder recorded it)."""

    def stop(self, log: Callable[[str], None]) -> str:
        """Stop it cleanly, keeping its data; returns how ("clean", "forced", "not running")."""

    def start(self, image: str, log: Callable[[str], None]) -> None:
        """Start it from `image` on its data volume."""

    def wait(self, timeout: float, log: Callable[[str], None]) -> tuple[str, str]:
        """(the agent's final state, its line); raises BuilderError when it does not report in time."""

    def relaunch_hint(self, image: str) -> str:
        """The command that starts it again on `image`, for when builder could not."""

    def snapshot_data(self, reason: str, log: Callable[[str], None]) -> str:
        """Copy the data volume while the instance is stopped (so the copy is consistent); returns the copy's id."""

    def started_stacks(self) -> bool:
        """Whether the instance started by the last start() got as far as starting its stacks (the
        agent's status shows its stacks step began); True when that is not known."""

    def restore_data(self, snapshot: str, log: Callable[[str], None]) -> str:
        """While the instance is stopped: make its data volume anew from `snapshot` and swap it in;
        the replaced volume/disk is kept and marked, never deleted; returns a line naming what was kept."""


@dataclass(frozen=True)
class UpgradePlan:
    name: str
    current: str | None
    new: str
    template: str | None = None  # AWS: what the launch template becomes

    @property
    def changes(self) -> bool:
        return self.current != self.new

    def to_json(self) -> dict:
        document = {
            "instance": self.name,
            "image": {"from": self.current, "to": self.new},
            "changes": self.changes,
            # A new root disk from the new image: every stack restarts, the data volume stays.
            "restarts": ["the instance (new root disk)", "every stack"] if self.changes else [],
            "keeps": ["the data volume", "the secrets and keys on it", "the owner's credentials"],
        }
        if self.changes:
            document["steps"] = [
                f"stop {self.name} (its stacks stop cleanly; the data volume is kept)",
                f"snapshot the data volume (reason {BEFORE_UPGRADE}) before the new image starts",
                f"start {self.name} from {self.new} and wait for its agent",
                f"if it does not come up: stop it, restore the data volume from that snapshot if the new "
                f"image started its stacks (the volume it touched is kept), and start "
                f"{self.current or 'the previous image'} again",
            ]
            document["snapshot"] = {"reason": BEFORE_UPGRADE, "when": "after the stop, before the new image starts"}
        if self.template and self.changes:
            document["launch_template"] = self.template
        return document


@dataclass(frozen=True)
class UpgradeResult:
    state: str  # "upgraded", "unchanged" or "rolled back"
    image: str  # the image the instance runs at the end
    detail: str
    snapshot: str | None = None  # the copy of the data volume taken before the new image started


def upgrade(plan: UpgradePlan, target: UpgradeTarget, wait_timeout: float, log: Callable[[str], None]) -> UpgradeResult:
    if not plan.changes:
        return UpgradeResult("unchanged", plan.new, f"{plan.name} already runs {plan.new}")
    how = target.stop(log)
    log(f"stopped {plan.name} ({how}); snapshotting its data volume")
    # From here on the instance is down: whatever fails, the story ends with it running again.
    try:
        snapshot = target.snapshot_data(BEFORE_UPGRADE, log)
    except Exception as exc:  # nothing has changed yet: the old image starts again, and that is all
        _back_without_a_snapshot(plan, target, failure_line(exc), wait_timeout, log)  # raises
    log(f"data volume copied to {snapshot}; starting {plan.name} from {plan.new}")
    reason = _start(target, plan.new, log) or _settle(target, wait_timeout, log)
    if reason is None:
        return UpgradeResult(
            "upgraded", plan.new, f"{plan.name} runs {plan.new}; its data from before is in {snapshot}", snapshot
        )
    if plan.current is None:
        raise BuilderError(
            f"{plan.name} did not come up on {plan.new} ({reason}), and the image it ran before is not "
            f"known: it is left on the new image with its data volume (its data from before is in {snapshot}); "
            "see its console"
        )
    log(f"{plan.name} did not come up on {plan.new} ({reason}): going back to {plan.current}")
    return _go_back(plan, target, snapshot, reason, wait_timeout, log)


def _go_back(
    plan: UpgradePlan, target: UpgradeTarget, snapshot: str, reason: str, wait_timeout: float, log
) -> UpgradeResult:
    """Stop the new image, put the data from before back where it touched it, start the old image."""
    assert plan.current is not None
    problems: list[str] = []
    try:
        target.stop(log)
        stopped = True
    except Exception as exc:
        stopped = False
        problems.append(f"its stop failed ({failure_line(exc)}), so its data volume was left as it is")
    if stopped:
        try:
            touched = target.started_stacks()
        except Exception as exc:  # not known: restore, the safe side
            log(f"could not tell whether {plan.new} started its stacks ({failure_line(exc)}): restoring all the same")
            touched = True
        if touched:
            try:
                log(target.restore_data(snapshot, log))
            except Exception as exc:
                problems.append(
                    f"restoring its data volume from {snapshot} failed ({failure_line(exc)}), so {plan.current} "
                    f"runs on the volume {plan.new} touched; `builder restore {plan.name} --snapshot {snapshot}` "
                    "puts the data from before back"
                )
        else:
            log(f"{plan.new} did not start its stacks: the data volume is as it was ({snapshot} is kept)")
    said = "; ".join(problems)
    refused = _start(target, plan.current, log)
    if refused is not None:
        raise BuilderError(
            f"{plan.name} did not come up on {plan.new} ({reason}), and starting it again on {plan.current} "
            f"failed ({refused}){'; ' + said if said else ''}; its data volume is kept and its data from before the "
            f"upgrade is in {snapshot}: `{target.relaunch_hint(plan.current)}` brings it back"
        )
    again = _settle(target, wait_timeout, log)
    if again is not None:
        raise BuilderError(
            f"{plan.name} did not come up on {plan.new} ({reason}) nor again on {plan.current} ({again})"
            f"{'; ' + said if said else ''}; its data volume is kept and attached to it, and its data from before "
            f"the upgrade is in {snapshot}"
        )
    detail = f"{plan.new} did not come up ({reason}); back on {plan.current}"
    return UpgradeResult("rolled back", plan.current, detail + (f"; {said}" if said else ""), snapshot)


def _back_without_a_snapshot(plan: UpgradePlan, target: UpgradeTarget, why: str, wait_timeout: float, log) -> NoReturn:
    """The snapshot failed: no upgrade without a way back. The old image starts again; the error says so."""
    failed = f"{plan.name} was not upgraded: the snapshot of its data volume failed ({why})"
    if plan.current is None:
        raise BuilderError(
            f"{failed}, and the image it ran before is not known: it is stopped, its data volume kept; "
            f"`{target.relaunch_hint(plan.new)}` starts it on the new image"
        )
    log(f"the snapshot failed ({why}): starting {plan.current} again, nothing changed")
    refused = _start(target, plan.current, log)
    if refused is not None:
        raise BuilderError(
            f"{failed}, and starting it again on {plan.current} failed ({refused}); its data volume is kept as it "
            f"was: `{target.relaunch_hint(plan.current)}` brings it back"
        )
    again = _settle(target, wait_timeout, log)
    if again is not None:
        raise BuilderError(
            f"{failed}; it was started again on {plan.current} but did not come up ({again}); its data volume is "
            "kept and attached to it"
        )
    raise BuilderError(f"{failed}; it runs {plan.current} again, nothing changed")


def _start(target: UpgradeTarget, image: str, log: Callable[[str], None]) -> str | None:
    """None when the start went through; else why not (the caller goes back, or says what is left)."""
    try:
        target.start(image, log)
    except Exception as exc:  # any failure, a bug included: the instance must not stay down for it
        return f"its start failed: {failure_line(exc)}"
    return None


def _settle(target: UpgradeTarget, timeout: float, log: Callable[[str], None]) -> str | None:
    """None when the agent reports done or degraded; else why not."""
    try:
        state, line = target.wait(timeout, log)
    except Exception as exc:  # a timeout (BuilderError), or anything else: the story goes on
        return str(exc) if isinstance(exc, BuilderError) else f"its wait failed: {failure_line(exc)}"
    return None if state in SETTLED else f"{state}: {line}"


class LocalUpgradeTarget:
    """A local instance under qemu; an image is a directory of the local image store (or any
    directory holding a baked image's image.json). Its data copies are qcow2 snapshots of the data
    disk (builder/local/data_snapshots.py); `upgrade_to` is the image it moves to, for their records."""

    def __init__(self, instance, shutdown_wait: float | None = None, upgrade_to: str | None = None):
        self.instance = instance
        self.shutdown_wait = shutdown_wait
        self.upgrade_to = upgrade_to
        self._console_before_start: tuple | None = None
        self._started = False

    def image(self) -> str | None:
        record = self.instance.image_record()
        return str(Path(record["disk"]).parent.resolve()) if record else None

    def stop(self, log: Callable[[str], None]) -> str:
        if self.shutdown_wait is None:
            return self.instance.destroy(delete_data=False, log=log)
        return self.instance.destroy(delete_data=False, log=log, shutdown_wait=self.shutdown_wait)

    def start(self, image: str, log: Callable[[str], None]) -> None:
        self._started, self._console_before_start = True, _fingerprint(self.instance.console)
        self.instance.launch(log=log, image=local_image(Path(image)))

    def wait(self, timeout: float, log: Callable[[str], None]) -> tuple[str, str]:
        return self.instance.wait(timeout, lambda state, line: None, on_step=log)

    def snapshot_data(self, reason: str, log: Callable[[str], None]) -> str:
        """A copy of the data disk while the instance is stopped (so the copy is consistent); its id."""
        from builder.local import data_snapshots

        if self.instance.running():
            raise BuilderError(f"{self.instance.name} still runs: its data disk is copied only once it is stopped")
        upgrade = {"upgrade_from": self.image(), "upgrade_to": self.upgrade_to} if reason == "before-upgrade" else {}
        return data_snapshots.take(self.instance, reason, log, **upgrade).id

    def started_stacks(self) -> bool:
        """Whether the guest of the last start() got as far as starting its stacks, read off its
        console (the root disk, with the agent's status file, is gone once the instance stops):
        the agent's `services` step began once the step before it ended. False only where the
        console says so: qemu never wrote it for that start, or the agent's lines end before."""
        if not self._started:
            return True
        console = self.instance.console
        if _fingerprint(console) in (None, self._console_before_start):
            return False  # launch makes the console anew when qemu starts: no guest ran on the disk
        lines = self.instance.agent_steps()
        if not lines:
            return True  # nothing of the agent on it: not known
        return any(_began_stacks(line) for line in lines)

    def restore_data(self, snapshot: str, log: Callable[[str], None]) -> str:
        """While the instance is stopped: its data disk becomes a copy of `snapshot`; the disk it
        replaced is kept and marked (a .json beside it), never deleted."""
        from builder.local import data_snapshots

        replaced = data_snapshots.restore(self.instance, data_snapshots.find(self.instance, snapshot), log)
        if replaced is None:
            return f"{self.instance.name} had no data disk: the copy of {snapshot} is its first"
        return f"the data disk the new image ran on is kept: {replaced.disk}"

    def relaunch_hint(self, image: str) -> str:
        return f"builder upgrade {self.instance.name} --target local --image {image}"


def _fingerprint(path: Path) -> tuple | None:
    """What tells one version of a file from the next: None when there is none."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_size)


def _began_stacks(line: str) -> bool:
    """Whether an agent's console line shows its step that starts the stacks under way."""
    from firstboot.agent import STEPS

    names = [step.name for step in STEPS]
    before = names[names.index(STACKS_STEP) - 1]
    return (
        f"step {STACKS_STEP}:" in line
        or "firstboot: healthy:" in line
        or f"step {before}: ok" in line
        or f"step {before}: already done" in line
    )


def local_image(directory: Path):
    """The baked image in `directory` (its image.json), checked whole."""
    from builder.local.instances import LocalImage

    record = directory / "image.json"
    if not record.is_file():
        raise BuilderError(f"{directory} holds no baked image (no image.json): name a directory of the image store")
    image = LocalImage.from_json(json.loads(record.read_text()))
    if image.missing():
        raise BuilderError(f"the image in {directory} names {image.missing()}, which is gone")
    return image


class AwsUpgradeTarget:
    """An AWS instance in its Auto Scaling group of one. Stopping sets the group to 0 and waits
    until its instance is terminated (the data volume detaches and is kept); starting is `launch`
    from the given AMI: a new launch template version, made the default, and the group back at one,
    which launches its instance from it. Waiting follows the agent's status tags; `wait_for_agent`
    is injected where no agent runs (moto). The data volume's copy is an EBS snapshot
    (builder/aws/snapshots.py), tagged with the images the upgrade moves between; restoring it
    swaps a volume made from it in by its tags.

    Not an instance refresh: a refresh judges the new instance by EC2's health checks only and
    would call an image whose agent failed healthy; this story follows the agent and goes back."""

    def __init__(self, clients, config, name: str, wait_for_agent=None):
        from builder.aws import instances, names

        self.clients, self.config, self.name = clients, config, name
        self.group = names.group_name(config.name, name)
        self.wait_for_agent = wait_for_agent or instances.wait_for_agent
        self.instance_id: str | None = None
        self.stopped_image: str | None = None  # what the instance ran when stop() ended it
        self.known_before_start: set[str] | None = None  # the instances there were before the last start()
        self.untold_snapshot: str | None = None  # a before-upgrade snapshot whose upgrade-to is not yet tagged

    def image(self) -> str | None:
        from builder.aws import group
        from builder.aws.instances import list_instances

        instance = group.live_instance(group.find(self.clients.autoscaling, self.group))
        if instance is None:  # an instance launched before groups, or none
            running = list_instances(self.clients.ec2, self.config.name, self.name)
            instance = running[-1].instance_id if running else None
        if instance is None:
            return None
        reservations = self.clients.ec2.describe_instances(InstanceIds=[instance])["Reservations"]
        return reservations[0]["Instances"][0]["ImageId"]

    def next_template_version(self) -> str:
        """What the launch template becomes: its next version, made the default."""
        from builder.aws import names

        name = names.launch_template_name(self.config.name, self.name)
        found = self.clients.ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [name]}]
        )["LaunchTemplates"]
        if not found:
            return f"launch template {name}: created (version 1)"
        return f"launch template {name}: version {found[0]['LatestVersionNumber'] + 1} (the new default)"

    def stop(self, log: Callable[[str], None]) -> str:
        from builder.aws import group
        from builder.aws.instances import terminate

        self.stopped_image = self.image()
        ended = []
        if group.find(self.clients.autoscaling, self.group):
            ended = group.scale(self.clients.autoscaling, self.clients.ec2, self.group, 0, log)
        ended += terminate(self.clients.ec2, self.config.name, self.name, log)  # any outside the group
        return "terminated " + ", ".join(ended) if ended else "not running"

    def start(self, image: str, log: Callable[[str], None]) -> None:
        from builder.aws import snapshots
        from builder.aws.instances import data_volume
        from builder.aws.launch import launch, plan_launch

        if self.untold_snapshot:  # the first start after the snapshot is the image the upgrade moves to
            tag = [{"Key": snapshots.UPGRADE_TO_TAG, "Value": image}]
            self.clients.ec2.create_tags(Resources=[self.untold_snapshot], Tags=tag)
            self.untold_snapshot = None
        # `launch` makes a data volume where none is tagged: here that would be an empty one.
        if data_volume(self.clients.ec2, self.config.name, self.name) is None:
            raise BuilderError(
                f"no volume is tagged as {self.name}'s data volume; not starting it on an empty one "
                "(`builder backups NAME` lists its snapshots, the volumes tagged data-replaced are kept)"
            )
        self.known_before_start = set(self._instances())
        self.instance_id = None
        plan = plan_launch(self.clients, self.config, self.name, image)
        result = launch(self.clients, self.config, plan, log)
        self.instance_id = result.instance_id
        log(f"{result.instance_id} runs {image} (launch template version {result.template_version})")

    def wait(self, timeout: float, log: Callable[[str], None]) -> tuple[str, str]:
        assert self.instance_id, "start() first"
        return self.wait_for_agent(
            self.clients.ec2, self.instance_id, timeout=timeout, on_change=lambda state, detail: None
        )

    def relaunch_hint(self, image: str) -> str:
        return f"builder launch {self.name} --ami {image}"

    def snapshot_data(self, reason: str, log: Callable[[str], None]) -> str:
        """Start a snapshot of the detached data volume and return at once: EBS copies the volume as
        it was at this moment, while the next instance may already attach and write it.
        `restore_data` waits for it to complete."""
        from builder.aws import snapshots

        ec2 = self.clients.ec2
        volume = snapshots.data_volume_of(ec2, self.config.name, self.name)
        tags = {}
        if reason == BEFORE_UPGRADE and self.stopped_image:
            tags[snapshots.UPGRADE_FROM_TAG] = self.stopped_image
        snapshot = snapshots.snapshot_volume(ec2, self.config.name, self.name, volume["VolumeId"], reason, log, tags)
        self.untold_snapshot = snapshot if reason == BEFORE_UPGRADE else None
        return snapshot

    def started_stacks(self) -> bool:
        """From the status tags the agent left on the instances the last start() launched (a
        terminated instance keeps its tags while EC2 still lists it)."""
        from builder.aws.instances import started_stacks

        if self.known_before_start is None:
            return True  # no start() seen: not known
        started = {i: tags for i, tags in self._instances().items() if i not in self.known_before_start}
        if not started:  # the start failed before the group launched anything, or EC2 no longer lists it
            return self.instance_id is not None
        return any(started_stacks(tags) is not False for tags in started.values())

    def restore_data(self, snapshot: str, log: Callable[[str], None]) -> str:
        from builder.aws import snapshots

        return snapshots.restore_volume(self.clients.ec2, self.config.name, self.name, snapshot, log).kept_line()

    def _instances(self) -> dict[str, dict[str, str]]:
        """Every instance of this name EC2 lists, terminated ones too, with its tags."""
        from builder.aws import names

        filters = [
            {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [self.config.name]},
            {"Name": f"tag:{names.INSTANCE_TAG}", "Values": [self.name]},
        ]
        found = {}
        for page in self.clients.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    found[instance["InstanceId"]] = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
        return found
