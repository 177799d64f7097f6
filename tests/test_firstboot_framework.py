"""How steps run: order, frequency as data, stop at the first failure, the report always, redaction."""

from __future__ import annotations

import json

import pytest

from firstboot.framework import (
    PER_INSTANCE,
    Context,
    Retry,
    Step,
    StepFailed,
    TransientError,
    UnknownStep,
    run_steps,
    select,
)
from firstboot.identity import Identity
from firstboot.status import EXIT_TRANSIENT, exit_code


def context_for(tmp_path, instance_id="i-aaa"):
    context = Context(state_dir=tmp_path / "state", platform=None)
    context.values["identity"] = Identity(instance_id, None, None)
    return context


def test_a_per_instance_step_runs_once_per_instance_id(tmp_path):
    runs = []
    steps = [Step("join", lambda c: runs.append(c.instance_id) or "joined", PER_INSTANCE)]
    status_path = tmp_path / "status.json"

    run_steps(steps, context_for(tmp_path, "i-aaa"), status_path)
    second = run_steps(steps, context_for(tmp_path, "i-aaa"), status_path)
    run_steps(steps, context_for(tmp_path, "i-bbb"), status_path)  # a new instance from the same image

    assert runs == ["i-aaa", "i-bbb"]
    assert second.steps[0].state == "skipped" and "already done for instance i-aaa" in second.steps[0].detail


def test_a_per_instance_step_that_failed_runs_again(tmp_path):
    attempts = []

    def flaky(context):
        attempts.append(1)
        if len(attempts) == 1:
            raise StepFailed("not yet")
        return "done"

    steps = [Step("join", flaky, PER_INSTANCE)]
    first = run_steps(steps, context_for(tmp_path), tmp_path / "status.json")
    second = run_steps(steps, context_for(tmp_path), tmp_path / "status.json")
    assert (first.state, second.state) == ("failed", "done")
    assert len(attempts) == 2


def test_stops_at_the_first_failure_but_the_report_runs_with_the_final_state(tmp_path):
    seen = {}
    steps = [
        Step("one", lambda c: "fine"),
        Step("two", lambda c: (_ for _ in ()).throw(StepFailed("disk refused"))),
        Step("three", lambda c: pytest.fail("must not run")),
        Step("report", lambda c: seen.setdefault("state", c.status.state), always=True),
    ]
    status = run_steps(steps, context_for(tmp_path), tmp_path / "status.json")
    assert [s.state for s in status.steps] == ["ok", "failed", "skipped", "ok"]
    assert seen["state"] == "failed"
    assert status.first_error == {"step": "two", "message": "disk refused"}
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


def test_a_failing_report_is_a_warning_not_a_failure(tmp_path):
    steps = [Step("one", lambda c: "fine"), Step("report", lambda c: 1 / 0, always=True)]
    status = run_steps(steps, context_for(tmp_path), tmp_path / "status.json")
    assert status.state == "degraded"
    assert status.steps[1].warnings == ["report: ZeroDivisionError: division by zero"]


def test_secrets_in_error_messages_are_redacted(tmp_path):
    def leaky(context):
        context.redact.register("s3cr3t-value")
        raise RuntimeError("request failed with key s3cr3t-value")

    run_steps([Step("leaky", leaky)], context_for(tmp_path), tmp_path / "status.json")
    text = (tmp_path / "status.json").read_text()
    assert "s3cr3t-value" not in text
    assert "request failed with key [redacted]" in text


def test_the_status_file_shows_a_step_in_progress(tmp_path):
    seen = {}

    def look(context):
        seen.update(json.loads((tmp_path / "status.json").read_text()))
        return ""

    run_steps([Step("one", lambda c: ""), Step("two", look)], context_for(tmp_path), tmp_path / "status.json")
    assert seen["state"] == "running"
    assert [(s["name"], s["state"]) for s in seen["steps"]] == [("one", "ok"), ("two", "running")]


def test_selection():
    steps = [Step("config", str, prerequisite=True), Step("a", str), Step("b", str), Step("report", str, always=True)]
    assert [s.name for s in select(steps, only=["b"])] == ["config", "b", "report"]
    assert [s.name for s in select(steps, skip=["a"])] == ["config", "b", "report"]
    with pytest.raises(UnknownStep, match="no step 'c'"):
        select(steps, only=["c"])
    with pytest.raises(UnknownStep, match="cannot be skipped"):
        select(steps, skip=["config"])


class Clock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_passing_failure_is_tried_again_with_growing_pauses_each_wait_in_the_status_file(tmp_path):
    seen = []

    def outage(context):
        seen.append(json.loads((tmp_path / "status.json").read_text())["steps"][0]["detail"])
        if len(seen) < 4:
            raise TransientError("SSM did not answer (key s3cr3t-value)")
        return "reached"

    context, clock = context_for(tmp_path), Clock()
    context.redact.register("s3cr3t-value")
    retry = Retry(deadline=600, first_pause=5, longest_pause=15, sleep=clock.sleep, clock=lambda: clock.now)
    status = run_steps([Step("one", outage)], context, tmp_path / "status.json", retry=retry)
    assert (status.state, status.steps[0].detail, status.first_error) == ("done", "reached", None)
    assert clock.sleeps == [5, 10, 15]
    assert seen[0] == "" and seen[3] == (
        "waiting: SSM did not answer (key [redacted]) (try 3 failed, 15 s so far, trying again in 15 s)"
    )


def test_a_passing_failure_past_the_deadline_fails_the_run_marked_transient(tmp_path):
    def outage(context):
        raise TransientError("control server unreachable")

    clock = Clock()
    retry = Retry(deadline=60, first_pause=5, longest_pause=30, sleep=clock.sleep, clock=lambda: clock.now)
    steps = [Step("one", outage), Step("two", lambda c: pytest.fail("must not run"))]
    status = run_steps(steps, context_for(tmp_path), tmp_path / "status.json", retry=retry)
    assert clock.sleeps == [5, 10, 20] and clock.now <= 60
    assert status.state == "failed" and [s.state for s in status.steps] == ["failed", "skipped"]
    assert status.first_error == {
        "step": "one",
        "message": "control server unreachable (a passing failure, still there after 4 tries over 35 s: "
        "the agent's unit starts it again)",
        "transient": True,
    }
    assert exit_code(status.state, status.first_error) == EXIT_TRANSIENT


def test_any_other_failure_stops_the_run_at_once(tmp_path):
    tries, clock = [], Clock()
    retry = Retry(deadline=600, sleep=clock.sleep, clock=lambda: clock.now)

    def refused(context):
        tries.append(1)
        raise StepFailed("the auth key was refused")

    status = run_steps([Step("one", refused)], context_for(tmp_path), tmp_path / "status.json", retry=retry)
    assert (len(tries), clock.sleeps) == (1, [])
    assert status.first_error == {"step": "one", "message": "the auth key was refused"}
    assert exit_code(status.state, status.first_error) == 1
