"""`builder upgrade`'s story (builder/upgrade.py) with a fake target: the instance moves to the new
image, or goes back to the one it ran before by itself, and the data volume is never let go. The
real local chain (stop, new root disk, same data disk) runs in tests/test_chain_local.py."""

from __future__ import annotations

import json

import pytest

from builder.errors import BuilderError
from builder.upgrade import UpgradePlan, upgrade


class FakeTarget:
    """An instance whose agent reports, per image, the state the test gives it ("timeout": none)."""

    def __init__(self, image: str | None, outcomes: dict[str, str]):
        self.running_image = image
        self.outcomes = outcomes
        self.calls: list[str] = []
        self.volume_owner: str | None = image  # which image's instance holds the data volume

    def image(self):
        return self.running_image

    def stop(self, log):
        self.calls.append(f"stop {self.running_image}")
        self.volume_owner = None  # detached while no instance runs
        return "clean"

    def start(self, image, log):
        self.calls.append(f"start {image}")
        self.running_image = self.volume_owner = image

    def wait(self, timeout, log):
        outcome = self.outcomes[self.running_image]
        if outcome == "timeout":
            raise BuilderError(f"did not report within {timeout:g} s")
        return outcome, f"firstboot: {outcome}"


def test_a_new_image_that_comes_up_is_kept():
    target = FakeTarget("old", {"new": "done"})
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lambda line: None)
    assert (result.state, result.image) == ("upgraded", "new")
    assert target.calls == ["stop old", "start new"]


@pytest.mark.parametrize("outcome", ["failed", "timeout"])
def test_a_new_image_that_fails_or_never_reports_goes_back_by_itself(outcome):
    target = FakeTarget("old", {"new": outcome, "old": "done"})
    lines: list[str] = []
    result = upgrade(UpgradePlan("alpha", "old", "new"), target, 60, lines.append)
    assert (result.state, result.image) == ("rolled back", "old")
    assert target.calls == ["stop old", "start new", "stop new", "start old"]
    assert target.volume_owner == "old"  # the data volume is back with a running instance
    assert any("going back to old" in line for line in lines)


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
