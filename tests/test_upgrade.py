"""`builder upgrade`'s story (builder/upgrade.py) with a fake target: the instance moves to the new
image, or goes back to the one it ran before by itself, and the data volume is never let go. The
real local chain (stop, new root disk, same data disk) runs in tests/test_chain_local.py."""

from __future__ import annotations

import json

import pytest
from moto_server import image_of, launched_on_moto, play_agent, tags_of

from builder.errors import BuilderError
from builder.upgrade import UpgradePlan, upgrade


class FakeTarget:
    """An instance whose agent reports, per image, the state the test gives it ("timeout": none;
    "wait raises": the wait itself fails). `raises` names the calls that fail ("snapshot",
    "restore", "started_stacks", "stop 2": the second stop); `before_stacks` the images whose
    agent stops before its stacks step. The data volume is a name: "original", then, once an
    image has run its stacks on it, "touched by IMAGE"; a restore makes it "from SNAPSHOT" and
    keeps the one it replaces."""

    def __init__(self, image: str | None, outcomes: dict[str, str], raises=(), before_stacks=()):
        self.running_image = image
        self.outcomes = outcomes
        self.raises = set(raises)
        self.before_stacks = set(before_stacks)
        self.calls: list[str] = []
        self.volume_owner: str | None = image  # which image's instance holds the data volume
        self.volume = "original"
        self.kept: list[str] = []
        self.stops = 0
        self.last_started: str | None = None

    def image(self):
        return self.running_image

    def stop(self, log):
        self.stops += 1
        self.calls.append(f"stop {self.running_image}")
        if f"stop {self.stops}" in self.raises:
            raise RuntimeError("the stop broke")
        self.volume_owner = None  # detached while no instance runs
        return "clean"

    def snapshot_data(self, reason, log):
        self.calls.append(f"snapshot {reason}")
        if "snapshot" in self.raises:
            raise RuntimeError("no snapshot today")
        return "snap-1"

    def start(self, image, log):
        self.calls.append(f"start {image}")
        self.last_started = image
        if self.outcomes.get(image) == "start raises":  # as the wheel's missing file once did
            raise FileNotFoundError(f"no such file for {image}")
        self.running_image = self.volume_owner = image
        if image not in self.before_stacks and self.outcomes.get(image) not in (None, "done"):
            self.volume = f"touched by {image}"

    def started_stacks(self):
        self.calls.append("started_stacks?")
        if "started_stacks" in self.raises:
            raise RuntimeError("cannot tell")
        return self.last_started not in self.before_stacks and self.outcomes.get(self.last_started) != "start raises"

    def restore_data(self, snapshot, log):
        self.calls.append(f"restore {snapshot}")
        if "restore" in self.raises:
            raise RuntimeError("no volume from it")
        self.kept.append(self.volume)
        self.volume = f"from {snapshot}"
        return f"kept {self.kept[-1]}"

    def relaunch_hint(self, image):
        return f"builder launch alpha --ami {image}"

    def wait(self, timeout, log):
        outcome = self.outcomes[self.running_image]
        if outcome == "timeout":
            raise BuilderError(f"did not report within {timeout:g} s")
        if outcome == "wait raises":
            raise ConnectionError("the endpoint went away")
        return outcome, f"firstboot: {outcome}"


def test_a_new_image_that_comes_up_is_kept():
    target = FakeTarget("old", {"new": "done"})
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert (result.state, result.image) == ("upgraded", "new")
    assert target.calls == ["stop old", "snapshot before-upgrade", "start new"]
    assert result.snapshot == "snap-1" and "its data from before is in snap-1" in result.detail


@pytest.mark.parametrize("outcome", ["failed", "timeout"])
def test_a_new_image_that_fails_or_never_reports_goes_back_by_itself(outcome):
    target = FakeTarget("old", {"new": outcome, "old": "done"})
    lines: list[str] = []
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lines.append)
    assert (result.state, result.image) == ("rolled back", "old")
    assert target.calls == [
        "stop old",
        "snapshot before-upgrade",
        "start new",
        "stop new",
        "started_stacks?",
        "restore snap-1",
        "start old",
    ]
    assert target.volume_owner == "old"  # the data volume is back with a running instance
    assert (target.volume, target.kept) == ("from snap-1", ["touched by new"])
    assert any("going back to old" in line for line in lines)


def test_a_start_that_raises_after_the_stop_goes_back_to_the_old_image():
    """An exception in any step after the stop once left the group at 0 with no instance."""
    target = FakeTarget("old", {"new": "start raises", "old": "done"})
    lines: list[str] = []
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lines.append)
    assert (result.state, result.image) == ("rolled back", "old")
    assert target.calls == [
        "stop old",
        "snapshot before-upgrade",
        "start new",
        "stop old",
        "started_stacks?",
        "start old",
    ]
    assert target.volume_owner == "old" and target.volume == "original"  # nothing started: nothing restored
    assert "its start failed: FileNotFoundError: no such file for new" in result.detail


def test_when_the_way_back_cannot_start_either_the_error_says_how_to_bring_it_back():
    target = FakeTarget("old", {"new": "start raises", "old": "start raises"})
    with pytest.raises(
        BuilderError,
        match=r"its data from before the upgrade is in snap-1: `builder launch alpha --ami old` brings it back",
    ):
        upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)


def test_a_failed_snapshot_starts_the_old_image_again_and_fails_saying_so():
    """No upgrade without a way back: the new image never starts."""
    target = FakeTarget("old", {"new": "done", "old": "done"}, raises={"snapshot"})
    with pytest.raises(
        BuilderError,
        match=r"not upgraded: the snapshot .* failed \(RuntimeError: no snapshot today\); it runs old again, nothing",
    ):
        upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert target.calls == ["stop old", "snapshot before-upgrade", "start old"]
    assert (target.volume_owner, target.volume) == ("old", "original")


def test_a_new_image_that_fails_before_its_stacks_goes_back_on_the_same_volume():
    target = FakeTarget("old", {"new": "failed", "old": "done"}, before_stacks={"new"})
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert result.state == "rolled back"
    assert "restore snap-1" not in target.calls
    assert (target.volume_owner, target.volume, target.kept) == ("old", "original", [])


@pytest.mark.parametrize("outcome", ["wait raises", "timeout", "failed"])
def test_any_failure_of_the_new_image_restores_the_snapshot_before_the_old_image_starts(outcome):
    target = FakeTarget("old", {"new": outcome, "old": "done"})
    lines: list[str] = []
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lines.append)
    assert (result.state, result.image, result.snapshot) == ("rolled back", "old", "snap-1")
    assert target.calls.index("restore snap-1") < target.calls.index("start old")
    assert (target.volume, target.kept) == ("from snap-1", ["touched by new"])  # kept, never dropped
    assert "kept touched by new" in lines


def test_when_it_cannot_tell_whether_the_stacks_started_it_restores():
    target = FakeTarget("old", {"new": "failed", "old": "done"}, raises={"started_stacks"})
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert result.state == "rolled back" and target.volume == "from snap-1"


def test_a_failed_restore_still_starts_the_old_image_and_says_how_to_put_the_data_back():
    target = FakeTarget("old", {"new": "failed", "old": "done"}, raises={"restore"})
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert (result.state, target.volume_owner) == ("rolled back", "old")
    assert target.volume == "touched by new" and target.kept == []
    assert "restoring its data volume from snap-1 failed (RuntimeError: no volume from it)" in result.detail
    assert "`builder restore alpha --snapshot snap-1` puts the data from before back" in result.detail


def test_a_failed_stop_on_the_way_back_leaves_the_volume_alone_and_still_starts_the_old_image():
    """The new image may still hold the volume: no restore under it."""
    target = FakeTarget("old", {"new": "failed", "old": "done"}, raises={"stop 2"})
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert target.calls[-2:] == ["stop new", "start old"]
    assert "its stop failed (RuntimeError: the stop broke)" in result.detail
    assert target.kept == []


def test_the_same_image_changes_nothing():
    target = FakeTarget("same", {})
    result = upgrade(UpgradePlan("alpha", "same", "same"), target, 60, lambda line: None)
    assert result.state == "unchanged" and target.calls == []


def test_when_both_images_fail_the_error_says_so_and_the_volume_stays_attached():
    target = FakeTarget("old", {"new": "failed", "old": "timeout"})
    with pytest.raises(BuilderError, match=r"nor again on old.*data volume is kept"):
        upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert target.volume_owner == "old"


def test_an_unknown_previous_image_leaves_the_instance_on_the_new_one_and_says_so():
    target = FakeTarget(None, {"new": "failed"})
    with pytest.raises(BuilderError, match="image it ran before is not known"):
        upgrade(UpgradePlan("alpha", None, "new"), target, 60, lambda line: None)
    assert target.volume_owner == "new"


def test_the_dry_run_says_what_changes_and_what_stays(builder, tmp_path):
    """A local instance recorded as running image A; the current image is B: the plan shows A -> B."""
    state = tmp_path / "state"
    images = state / "ai-platform" / "images"
    for name in ("a", "b"):
        (images / name).mkdir(parents=True)
        (images / name / "root.qcow2").write_bytes(b"")
        record = {"disk": str(images / name / "root.qcow2"), "kernel": None, "initrd": None}
        (images / name / "image.json").write_text(json.dumps(record))
    (images / "current.json").write_text((images / "b" / "image.json").read_text())
    instance = state / "ai-platform" / "instances" / "alpha"
    instance.mkdir(parents=True)
    (instance / "image.json").write_text((images / "a" / "image.json").read_text())
    config = tmp_path / "platform.yaml"
    config.write_text(f"version: 1\nlocal:\n  state_dir: {state}\n")
    result = builder("--config", str(config), "--json", "--dry-run", "upgrade", "alpha", "--target", "local")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["image"] == {"from": str(images / "a"), "to": str(images / "b")}
    assert plan["changes"] is True and "every stack" in plan["restarts"] and "the data volume" in plan["keeps"]
    assert plan["snapshot"]["reason"] == "before-upgrade"
    assert [step.split()[0] for step in plan["steps"]] == ["stop", "snapshot", "start", "if"]  # snapshot first
    assert not (instance / "state.json").exists()  # nothing was started


def test_no_instance_and_a_missing_image_are_clear_errors_that_change_nothing(builder, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text(f"version: 1\nlocal:\n  state_dir: {tmp_path / 'state'}\n")
    missing = builder("--config", str(config), "upgrade", "alpha", "--target", "local")
    assert missing.code == 1 and "no local instance alpha" in missing.err
    instance = tmp_path / "state/ai-platform/instances/alpha"
    instance.mkdir(parents=True)
    (instance / "image.json").write_text(json.dumps({"disk": "/nowhere/root.qcow2"}))
    wrong = builder("--config", str(config), "upgrade", "alpha", "--target", "local", "--image", str(tmp_path))
    assert wrong.code == 1 and "holds no baked image" in wrong.err
    assert sorted(p.name for p in instance.iterdir()) == ["image.json"]


def test_on_aws_a_new_ami_gets_a_new_template_version_and_a_failing_one_goes_back_onto_the_snapshot(aws, baked):
    """The injected wait plays the agent: done on the good AMI, failed at its services step (its
    stacks had started) on the broken one, by the instance's ImageId."""
    from moto_server import make_tagged_ami

    from builder.aws.instances import data_volume
    from builder.aws.snapshots import list_snapshots
    from builder.upgrade import AwsUpgradeTarget

    ec2, clients, config, newer = launched_on_moto(aws, baked)
    broken = make_tagged_ami(ec2, baked, "ai-platform-build-3", {"ai-platform:platform": "ai-platform"})
    volume = data_volume(ec2, "ai-platform", "alpha")["VolumeId"]

    def agent(ec2_client, instance_id, *, timeout, on_change):
        if image_of(ec2_client, instance_id) == broken:
            return play_agent(ec2_client, instance_id, "failed", failed_at="services")
        return play_agent(ec2_client, instance_id, "done")

    target = AwsUpgradeTarget(clients, config, "alpha", wait_for_agent=agent)
    assert target.image() == baked
    moved = upgrade(UpgradePlan("alpha", baked, newer), target, 60, lambda line: None)
    assert (moved.state, target.image()) == ("upgraded", newer)
    assert data_volume(ec2, "ai-platform", "alpha")["VolumeId"] == volume  # an upgrade that works keeps it
    lines: list[str] = []
    back = upgrade(UpgradePlan("alpha", newer, broken), target, 60, lines.append)
    assert (back.state, back.image, target.image()) == ("rolled back", newer, newer)
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")["LaunchTemplateVersions"]
    amis = [v["LaunchTemplateData"]["ImageId"] for v in sorted(versions, key=lambda v: v["VersionNumber"])]
    assert amis == [baked, newer, broken, newer]

    # Each upgrade snapshotted the volume first, tagged with the images it moved between.
    taken = {view.snapshot_id: view for view in list_snapshots(ec2, "ai-platform", "alpha")}
    assert {(v.reason, v.upgrade_from, v.upgrade_to, v.volume_id) for v in taken.values()} == {
        ("before-upgrade", baked, newer, volume),
        ("before-upgrade", newer, broken, volume),
    }
    assert taken[back.snapshot].upgrade_to == broken
    # The broken image had started its stacks: the old image came back on a volume made from the
    # snapshot; the volume the broken image touched is kept, tagged as replaced.
    restored = data_volume(ec2, "ai-platform", "alpha")
    assert restored["VolumeId"] != volume
    assert tags_of(restored)["ai-platform:restored-from"] == back.snapshot
    [old] = ec2.describe_volumes(VolumeIds=[volume])["Volumes"]
    assert tags_of(old)["ai-platform:role"] == "data-replaced"
    assert tags_of(old)["ai-platform:replaced-by"] == restored["VolumeId"]
    assert any(f"kept the replaced data volume {volume}" in line for line in lines)
    running = ec2.describe_instances(
        Filters=[
            {"Name": "tag:ai-platform:instance", "Values": ["alpha"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    [final] = [i for r in running for i in r["Instances"]]
    [group] = aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert [i["InstanceId"] for i in group["Instances"]] == [final["InstanceId"]]  # the group's own
    assert (group["MinSize"], group["DesiredCapacity"], group["LaunchTemplate"]["Version"]) == (1, 1, "$Default")
    [attached] = ec2.describe_volumes(VolumeIds=[restored["VolumeId"]])["Volumes"][0]["Attachments"]
    assert attached["InstanceId"] == final["InstanceId"]


def test_on_aws_an_exception_at_any_step_after_the_stop_leaves_it_running_on_its_previous_image(
    aws, baked, monkeypatch
):
    """One instance, one upgrade per step after the stop, each with an exception injected there
    (the last leaves it on the new image, so it goes last). After each: the group keeps one
    instance, the launch template's default starts the image it should, the data volume is the
    one it should be, and no volume is gone."""
    from builder.aws import group, launch, snapshots
    from builder.aws.instances import data_volume
    from builder.upgrade import AwsUpgradeTarget

    ec2, clients, config, newer = launched_on_moto(aws, baked)
    scaling = aws.client("autoscaling")
    current = data_volume(ec2, "ai-platform", "alpha")["VolumeId"]
    roles = [{"Name": "tag:ai-platform:role", "Values": ["data", "data-replaced", "data-restoring"]}]

    def data_volumes() -> set[str]:  # (root volumes go with their instances)
        return {v["VolumeId"] for v in ec2.describe_volumes(Filters=roles)["Volumes"]}

    every_volume = data_volumes()

    def fails_at_services(ec2_client, instance_id, *, timeout, on_change):
        state = "failed" if image_of(ec2_client, instance_id) == newer else "done"
        return play_agent(ec2_client, instance_id, state, failed_at="services" if state == "failed" else None)

    def raises_on_the_new_image(ec2_client, instance_id, *, timeout, on_change):
        if image_of(ec2_client, instance_id) != newer:
            return play_agent(ec2_client, instance_id, "done")
        from firstboot.report import publish_step_tags
        from firstboot.status import Status, StepRecord

        play_agent(ec2_client, instance_id, "running")
        step = StepRecord("stacks", "ok", seconds=1.0)
        publish_step_tags(ec2_client, instance_id, Status(steps=[step]), step)  # its stacks step is done
        raise ConnectionResetError("the wait lost its connection")

    def boom(*args, **kwargs):
        raise RuntimeError("injected")

    def once(function):
        calls = []

        def first_call_fails(*args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                raise RuntimeError("injected")
            return function(*args, **kwargs)

        return first_call_fails

    def put_template_failing_for_the_new_image(ec2_client, config, plan, *rest):
        if plan.ami_id == newer:
            raise RuntimeError("injected")
        return original_put_template(ec2_client, config, plan, *rest)

    original_put_template = launch._put_template
    original_create_tags = clients.ec2.create_tags

    def swap_fails(Resources, Tags):  # the new volume made, the old one marked: its role=data tag fails
        if Tags == [{"Key": "ai-platform:role", "Value": "data"}] and Resources != [current]:
            raise RuntimeError("injected")
        return original_create_tags(Resources=Resources, Tags=Tags)

    def going_back_stop_fails(original):
        calls = []

        def scale(autoscaling, ec2_client, name, size, log):
            calls.append(size)
            if size == 0 and len(calls) == 2:
                raise RuntimeError("injected")
            return original(autoscaling, ec2_client, name, size, log)

        return scale

    cases = [  # (step, injection, agent, what it runs after, whether a restored volume is the data volume)
        ("snapshot", lambda p: p.setattr(snapshots, "snapshot_volume", boom), fails_at_services, baked, False),
        (
            "template version",
            lambda p: p.setattr(launch, "_put_template", put_template_failing_for_the_new_image),
            fails_at_services,
            baked,
            False,
        ),
        ("group scale-up", lambda p: p.setattr(group, "ensure", once(group.ensure)), fails_at_services, baked, False),
        ("wait", lambda p: None, raises_on_the_new_image, baked, True),
        ("restore", lambda p: p.setattr(clients.ec2, "create_tags", swap_fails), fails_at_services, baked, False),
        (
            "going-back stop",
            lambda p: p.setattr(group, "scale", going_back_stop_fails(group.scale)),
            fails_at_services,
            newer,
            False,
        ),
    ]
    for step, inject, agent, runs, restored in cases:
        with monkeypatch.context() as patch:
            inject(patch)
            target = AwsUpgradeTarget(clients, config, "alpha", wait_for_agent=agent)
            try:
                result = upgrade(UpgradePlan("alpha", baked, newer), target, 60, lambda line: None).state
            except BuilderError as error:
                result = str(error)
        [found] = scaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        assert (found["MinSize"], found["DesiredCapacity"]) == (1, 1), step
        [default] = ec2.describe_launch_template_versions(
            LaunchTemplateName="ai-platform-alpha", Versions=["$Default"]
        )["LaunchTemplateVersions"]
        assert default["LaunchTemplateData"]["ImageId"] == runs, step
        assert image_of(ec2, group.live_instance(found)) == runs, step
        data = data_volume(ec2, "ai-platform", "alpha")["VolumeId"]
        assert (data != current) == restored, step
        now = data_volumes()
        assert every_volume <= now, f"{step}: a volume is gone"
        every_volume, current = now, data
        if step == "snapshot":
            assert "snapshot of its data volume failed (RuntimeError: injected); it runs " in result
        elif step == "going-back stop":
            assert "its stop failed (RuntimeError: injected)" in result and "brings it back" in result
        else:
            assert result == "rolled back", (step, result)
    assert any(
        tags_of(v).get("ai-platform:role") == "data-restoring" for v in ec2.describe_volumes()["Volumes"]
    )  # the volume the failed swap made is kept too


def test_on_aws_the_dry_run_names_the_next_template_version(aws, baked, builder, tmp_path):
    from moto_server import make_tagged_ami

    (tmp_path / "platform.yaml").write_text("version: 1\ndata_volume: {availability_zone: us-east-1a}\n")
    assert builder("launch", "alpha").code == 0
    ec2 = aws.client("ec2")
    newer = make_tagged_ami(ec2, baked, "ai-platform-build-2", {"ai-platform:platform": "ai-platform"})
    result = builder("--json", "upgrade", "alpha", "--ami", newer, "--dry-run")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["image"] == {"from": baked, "to": newer}
    assert document["launch_template"] == "launch template ai-platform-alpha: version 2 (the new default)"
    versions = ec2.describe_launch_template_versions(LaunchTemplateName="ai-platform-alpha")["LaunchTemplateVersions"]
    assert len(versions) == 1  # nothing changed


def test_on_aws_upgrade_moves_only_onto_an_image_that_fits_the_instance_type(aws, baked, builder, tmp_path):
    """A GPU image baked for another platform config must not become a CPU instance's next image."""
    (tmp_path / "platform.yaml").write_text("version: 1\ndata_volume: {availability_zone: us-east-1a}\n")
    assert builder("launch", "alpha").code == 0
    ec2 = aws.client("ec2")
    ec2.create_tags(Resources=[baked], Tags=[{"Key": "ai-platform:variant", "Value": "gpu"}])
    result = builder("upgrade", "alpha", "--dry-run")
    assert result.code == 1, result.out + result.err
    assert "aws.instance_type" in result.err and "gpu images" in result.err
