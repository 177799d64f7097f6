"""`builder upgrade NAME`: the instance moves onto another image with the same data, or goes back.

The story, whatever the target:
  1. stop the instance cleanly (its stacks stop before power-off; the data volume is kept);
  2. start it from the new image on the same data volume, and wait for its agent;
  3. done (or degraded): the instance now runs the new image;
     failed, or no report within the wait: stop it, start it again from the image it ran before,
     wait again, and say that it went back and why.
The data volume is never deleted nor left without an instance that owns it.

A target is anything with the four calls of `UpgradeTarget`; the local one (qemu) is below, the
tests drive the story with a fake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from builder.errors import BuilderError

SETTLED = ("done", "degraded")
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
        if self.template and self.changes:
            document["launch_template"] = self.template
        return document


@dataclass(frozen=True)
class UpgradeResult:
    state: str  # "upgraded", "unchanged" or "rolled back"
    image: str  # the image the instance runs at the end
    detail: str


def upgrade(plan: UpgradePlan, target: UpgradeTarget, wait_timeout: float, log: Callable[[str], None]) -> UpgradeResult:
    if not plan.changes:
        return UpgradeResult("unchanged", plan.new, f"{plan.name} already runs {plan.new}")
    how = target.stop(log)
    log(f"stopped {plan.name} ({how}); starting it from {plan.new}")
    # From here on the instance is down: whatever fails, the story ends with it running again.
    reason = _start(target, plan.new, log) or _settle(target, wait_timeout, log)
    if reason is None:
        return UpgradeResult("upgraded", plan.new, f"{plan.name} runs {plan.new}")
    if plan.current is None:
        raise BuilderError(
            f"{plan.name} did not come up on {plan.new} ({reason}), and the image it ran before is not "
            "known: it is left on the new image with its data volume; see its console"
        )
    log(f"{plan.name} did not come up on {plan.new} ({reason}): going back to {plan.current}")
    target.stop(log)
    refused = _start(target, plan.current, log)
    if refused is not None:
        raise BuilderError(
            f"{plan.name} did not come up on {plan.new} ({reason}), and starting it again on {plan.current} "
            f"failed ({refused}); its data volume is kept: `{target.relaunch_hint(plan.current)}` brings it back"
        )
    again = _settle(target, wait_timeout, log)
    if again is not None:
        raise BuilderError(
            f"{plan.name} did not come up on {plan.new} ({reason}) nor again on {plan.current} ({again}); "
            "its data volume is kept and attached to it"
        )
    return UpgradeResult("rolled back", plan.current, f"{plan.new} did not come up ({reason}); back on {plan.current}")


def _start(target: UpgradeTarget, image: str, log: Callable[[str], None]) -> str | None:
    """None when the start went through; else why not (the caller goes back, or says what is left)."""
    try:
        target.start(image, log)
    except Exception as exc:  # any failure, a bug included: the instance must not stay down for it
        return f"its start failed: {type(exc).__name__}: {exc}"
    return None


def _settle(target: UpgradeTarget, timeout: float, log: Callable[[str], None]) -> str | None:
    """None when the agent reports done or degraded; else why not."""
    try:
        state, line = target.wait(timeout, log)
    except BuilderError as exc:
        return str(exc)
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
    is injected where no agent runs (moto).

    Not an instance refresh: a refresh judges the new instance by EC2's health checks only and
    would call an image whose agent failed healthy; this story follows the agent and goes back."""

    def __init__(self, clients, config, name: str, wait_for_agent=None):
        from builder.aws import instances, names

        self.clients, self.config, self.name = clients, config, name
        self.group = names.group_name(config.name, name)
        self.wait_for_agent = wait_for_agent or instances.wait_for_agent
        self.instance_id: str | None = None

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

        ended = []
        if group.find(self.clients.autoscaling, self.group):
            ended = group.scale(self.clients.autoscaling, self.clients.ec2, self.group, 0, log)
        ended += terminate(self.clients.ec2, self.config.name, self.name, log)  # any outside the group
        return "terminated " + ", ".join(ended) if ended else "not running"

    def start(self, image: str, log: Callable[[str], None]) -> None:
        from builder.aws.launch import launch, plan_launch

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
