"""How steps run: in order, each timed and logged, each with a frequency, stopping at the first failure.

Frequencies are data, as in cloud-init: PER_BOOT steps run every boot and must converge (cheap
when all is already right); PER_INSTANCE steps run once per instance id, recorded by a marker
under state_dir/instances/<instance-id>/, so a new instance from the same image or volume runs
them again. A marker is written only after the step succeeded: a killed run repeats the step.

A step that fails for a passing reason (TransientError: a service it needs is out or throttles) is
tried again with growing pauses until `Retry.deadline`; past it the run fails with the failure
marked transient, and the agent's exit status tells its unit to start it again. Every other failure
stops the run at once with its reason. Re-running a step is safe because PER_BOOT steps converge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firstboot.status import DEGRADED, DONE, FAILED, Redactor, Status, StepRecord, write_status

PER_BOOT = "per-boot"
PER_INSTANCE = "per-instance"

log = logging.getLogger("firstboot")


class StepFailed(Exception):
    """A step cannot reach its goal; the message says why and what to do."""


class TransientError(StepFailed):
    """A step cannot reach its goal now, for a reason that passes: a service it needs (the metadata
    service, SSM, Tailscale's control server, EC2) is out, slow or throttling. Tried again."""


@dataclass(frozen=True)
class Retry:
    """How long, and how, a step that failed for a passing reason is tried again."""

    deadline: float = 1200  # seconds from the step's first try: a short outage is waited out
    first_pause: float = 5
    longest_pause: float = 60
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


NO_RETRY = Retry(deadline=0)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], str | None]  # returns a short detail for the report
    frequency: str = PER_BOOT
    prerequisite: bool = False  # runs even when --only names other steps (config, identity)
    always: bool = False  # runs after a failure too, with the final state known (the report)


@dataclass
class Context:
    """What steps share: the platform's services (injected), results of earlier steps, the redactor."""

    state_dir: Path
    platform: Any  # firstboot.platform.Platform, or a test's stand-in
    redact: Redactor = field(default_factory=Redactor)
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    status: Status | None = None
    status_path: Path | None = None

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(self.redact(message))

    def progress(self, message: str) -> None:
        """What the running step is doing now (waiting for IAM, say), in the status file at once; its
        result replaces it when it ends."""
        running = next((r for r in self.status.steps if r.state == "running"), None) if self.status else None
        if running is not None and self.status_path is not None:
            running.detail = self.redact(message)
            write_status(self.status, self.status_path)

    @property
    def instance_id(self) -> str | None:
        identity = self.values.get("identity")
        return identity.instance_id if identity else None


class UnknownStep(ValueError):
    pass


def select(steps: list[Step], only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Step]:
    only, skip = set(only), set(skip)
    names = {step.name for step in steps}
    for name in sorted((only | skip) - names):
        raise UnknownStep(f"no step {name!r}; the steps are: {', '.join(s.name for s in steps)}")
    for step in steps:
        if step.prerequisite and step.name in skip:
            raise UnknownStep(f"step {step.name!r} cannot be skipped: later steps need it")
    return [
        step
        for step in steps
        if step.name not in skip and (not only or step.name in only or step.prerequisite or step.always)
    ]


def run_steps(
    steps: list[Step],
    context: Context,
    status_path: Path,
    on_step: Callable[[Status, StepRecord], None] | None = None,
    retry: Retry = NO_RETRY,
) -> Status:
    """`retry` says how a step that raised TransientError is tried again. `on_step` hears of each
    finished step (the AWS target tags the instance with it, so that `builder launch --wait` prints
    the boot step by step); its failure never fails the boot."""
    status = Status(steps=[StepRecord(step.name) for step in steps])
    context.status, context.status_path = status, status_path
    write_status(status, status_path)
    failed = False
    for step, record in zip(steps, status.steps, strict=True):
        if failed and not step.always:
            record.state, record.detail = "skipped", "not run: an earlier step failed"
            continue
        if step.always:
            status.state = _final_state(status, context)
        if step.frequency == PER_INSTANCE and _marker(context, step).exists():
            record.state, record.detail = "skipped", f"already done for instance {context.instance_id}"
            log.info("step %s: already done for this instance", step.name)
            continue
        record.state = "running"
        write_status(status, status_path)
        warnings_before = len(context.warnings)
        started = time.monotonic()
        try:
            detail = _run_patiently(step, context, record, retry)
        except Exception as exc:  # a step's failure is reported, never a traceback on the console
            record.seconds = round(time.monotonic() - started, 3)
            message = context.redact(str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}")
            if step.always:  # the report cannot fail the boot it reports on
                context.warn(f"{step.name}: {message}")
                record.state = "ok"
            else:
                record.state, record.detail = FAILED, message
                if status.first_error is None:
                    status.first_error = {"step": step.name, "message": message}
                    if isinstance(exc, TransientError):  # the exit status asks for another run (status.exit_code)
                        status.first_error["transient"] = True
                failed = True
                log.error("step %s: failed after %.2f s: %s", step.name, record.seconds, message)
        else:
            record.seconds = round(time.monotonic() - started, 3)
            record.state, record.detail = "ok", context.redact(detail)
            if step.frequency == PER_INSTANCE:
                marker = _marker(context, step)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            log.info("step %s: ok in %.2f s%s", step.name, record.seconds, f": {record.detail}" if detail else "")
        record.warnings = [context.redact(w) for w in context.warnings[warnings_before:]]
        status.instance_id = context.instance_id or status.instance_id
        write_status(status, status_path)
        if on_step is not None and not step.always:
            try:
                on_step(status, record)
            except Exception as exc:  # progress is a courtesy: the report step still tells the outcome
                log.warning("progress of step %s not reported: %s", step.name, context.redact(str(exc)))
    status.state = _final_state(status, context)
    status.finished_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_status(status, status_path)
    return status


def _run_patiently(step: Step, context: Context, record: StepRecord, retry: Retry) -> str:
    """The step's result; a passing failure is tried again, each wait in the status file while it lasts,
    until the next try would start past the deadline."""
    first_try, pause, tries = retry.clock(), retry.first_pause, 0
    while True:
        tries += 1
        try:
            return step.run(context) or ""
        except TransientError as exc:
            if step.always:  # the report is not held up: its failure is only a warning
                raise
            waited = retry.clock() - first_try
            if waited + pause > retry.deadline:
                raise TransientError(
                    f"{exc} (a passing failure, still there after {tries} tries over {waited:.0f} s: "
                    "the agent's unit starts it again)"
                ) from exc
            message = context.redact(
                f"waiting: {exc} (try {tries} failed, {waited:.0f} s so far, trying again in {pause:.0f} s)"
            )
            log.warning("step %s: %s", step.name, message)
            record.detail = message
            if context.status is not None and context.status_path is not None:
                write_status(context.status, context.status_path)
            retry.sleep(pause)
            pause = min(pause * 2, retry.longest_pause)


def _final_state(status: Status, context: Context) -> str:
    if status.first_error:
        return FAILED
    return DEGRADED if context.warnings else DONE


def _marker(context: Context, step: Step) -> Path:
    if not context.instance_id:
        raise StepFailed(f"step {step.name} runs once per instance, but the instance id is not known yet")
    return context.state_dir / "instances" / context.instance_id / f"{step.name}.done"
