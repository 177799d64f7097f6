"""The outside world as the agent's steps see it: AWS clients and systemd.

`Platform` is the real one. Tests inject their own where the real thing cannot run here
(systemd as PID 1 outside a VM); the AWS clients point at a moto server through the
instance config's `endpoints.aws`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from firstboot.framework import StepFailed, TransientError
from firstboot.instance_config import DEFAULT_IMDS, InstanceConfig

log = logging.getLogger("firstboot")


class Systemd:
    """systemctl, as the agent uses it."""

    def daemon_reload(self) -> None:
        self._systemctl("daemon-reload")

    def start(self, unit: str, wait: bool = True) -> None:
        """`wait=False` queues the start and returns (--no-block): the caller follows the units itself."""
        self._systemctl("start", unit) if wait else self._systemctl("start", "--no-block", unit)

    def restart(self, unit: str) -> None:
        self._systemctl("restart", "--no-block", unit)

    def stop(self, unit: str) -> None:
        self._systemctl("stop", unit)

    def active_state(self, unit: str) -> str:
        """systemd's ActiveState: active, activating, failed, inactive, …"""
        return self._property(unit, "ActiveState") or "unknown"

    def condition_failed(self, unit: str) -> bool:
        """True when the unit did not start because a Condition…= was unmet. A unit whose start is
        still queued has ConditionResult=no too, but no condition timestamp: it has not been checked."""
        checked = self._property(unit, "ConditionTimestampMonotonic") not in ("", "0")
        return checked and self._property(unit, "ConditionResult") == "no"

    def job_queued(self, unit: str) -> bool:
        """True while the unit has a job queued or running: a start that waits on a unit it is ordered
        after (systemctl show prints `Job=` with no id when there is none)."""
        return self._property(unit, "Job") != ""

    def show(self, unit: str, name: str) -> str:
        """One property of the unit as `systemctl show` gives it ("" when it has none)."""
        return self._property(unit, name)

    @staticmethod
    def _property(unit: str, name: str) -> str:
        result = subprocess.run(
            ["systemctl", "show", f"--property={name}", "--value", unit], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    @staticmethod
    def _systemctl(*args: str) -> None:
        result = subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"systemctl {' '.join(args)} failed: {result.stderr.strip() or result.returncode}")


class Platform:
    def __init__(
        self,
        config: InstanceConfig,
        systemd: Systemd | None = None,
        patience: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.systemd = systemd or Systemd()
        self.patience = PATIENCE_SECONDS if patience is None else patience
        self.sleep, self.clock = sleep, clock
        # Told of each wait for IAM propagation while it lasts (the agent puts it in the status file).
        self.on_wait: Callable[[str], None] = lambda _message: None

    def client(self, service: str) -> Any:
        return Patient(
            self._boto3_client(service),
            deadline=self.patience,
            sleep=self.sleep,
            clock=self.clock,
            on_wait=lambda message: self.on_wait(message),  # looked up at the wait: set after the client
        )

    def _boto3_client(self, service: str) -> Any:
        # boto3 only when a step talks to AWS: the local target never imports it.
        import boto3

        if self.config.imds_endpoint != DEFAULT_IMDS:
            # The instance role's credentials come from the same metadata service as the identity.
            os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.config.imds_endpoint.rstrip("/") + "/"
        from botocore.config import Config

        return boto3.client(
            service,
            region_name=self.config.region,
            endpoint_url=self.config.aws_endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=20),
        )

    @cached_property
    def ec2(self) -> Any:
        return self.client("ec2")

    @cached_property
    def ssm(self) -> Any:
        return self.client("ssm")


# What a role that exists but has not reached every AWS endpoint yet looks like (launch creates the
# role seconds before the instance boots): refused, or no credentials from the metadata service.
PROPAGATION_ERRORS = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"}
PATIENCE_SECONDS = 180.0


class IamNotPropagated(StepFailed):
    """A call still refused when the wait for IAM propagation ran out: the role's policy may lack it."""


class AwsUnavailable(TransientError):
    """A call that failed for a passing reason: throttled, a server error, no connection (each still so
    after botocore's own retries), or no credentials from the metadata service yet."""


def passing_failure(error: Exception) -> str | None:
    """Why an AWS call failed for a passing reason, or None: the throttling and transient errors that
    botocore's standard retry mode itself retries (its own checkers judge)."""
    from botocore.exceptions import ClientError
    from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker

    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        context = RetryContext(1, parsed_response=error.response, http_response=_HttpStatus(status))
        reason = error.response.get("Error", {}).get("Code") or f"HTTP {status}"
    else:
        context, reason = RetryContext(1, caught_exception=error), type(error).__name__
    checkers = (ThrottledRetryableChecker(), TransientRetryableChecker())
    return reason if any(checker.is_retryable(context) for checker in checkers) else None


class _HttpStatus:
    """The one attribute of botocore's AWSResponse that its transient-error checker reads."""

    def __init__(self, status_code: int | None):
        self.status_code = status_code


class Patient:
    """A boto3 client whose calls wait out IAM propagation: a refusal (or no credentials yet) is tried
    again with growing pauses for `deadline` seconds, each wait logged with its reason and told to
    `on_wait`. A refusal past the deadline raises IamNotPropagated, which says which call, why, and how
    long it waited (the status file's first error then says so). A passing failure (throttled, a server
    error, no connection, no credentials past the deadline) raises AwsUnavailable, which the agent waits
    out by trying its step again. Any other error is raised as it is."""

    def __init__(
        self,
        client: Any,
        deadline: float = PATIENCE_SECONDS,
        sleep=time.sleep,
        clock=time.monotonic,
        on_wait: Callable[[str], None] | None = None,
    ):
        self._client, self._deadline, self._sleep, self._clock = client, deadline, sleep, clock
        self._on_wait = on_wait or (lambda _message: None)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if (
            name.startswith("_")
            or name in {"exceptions", "meta", "get_paginator", "get_waiter"}
            or not callable(attribute)
        ):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

            started, pause = self._clock(), 2.0
            while True:
                try:
                    return attribute(*args, **kwargs)
                except ClientError as exc:
                    reason, error = exc.response.get("Error", {}).get("Code", ""), exc
                    if reason not in PROPAGATION_ERRORS:
                        _raise_passing(name, exc)
                        raise
                except NoCredentialsError as exc:
                    reason, error = "no credentials from the instance role yet", exc
                except BotoCoreError as exc:
                    _raise_passing(name, exc)
                    raise
                waited = self._clock() - started
                if waited + pause > self._deadline and isinstance(error, NoCredentialsError):
                    raise AwsUnavailable(
                        f"{name}: still no credentials from the instance role after waiting {waited:.0f} s "
                        "(the metadata service gives none yet)"
                    ) from error
                if waited + pause > self._deadline:
                    raise IamNotPropagated(
                        f"{name} still refused ({reason}) after waiting {waited:.0f} s for the instance role's IAM "
                        f"permissions to propagate (refused this long, the role's policy may lack it): {error}"
                    ) from error
                message = (
                    f"waiting for the instance role's IAM permissions: {name} refused ({reason}), "
                    f"{waited:.0f} s so far, trying again in {pause:.0f} s"
                )
                log.warning("%s", message)
                self._on_wait(message)
                self._sleep(pause)
                pause = min(pause * 2, 30)

        return call


def _raise_passing(name: str, error: Exception) -> None:
    """AwsUnavailable from `error` when it is a passing failure; nothing otherwise."""
    reason = passing_failure(error)
    if reason is not None:
        said = getattr(error, "response", {}).get("Error", {}).get("Message") or str(error)
        raise AwsUnavailable(f"{name} failed for a passing reason ({reason}: {said})") from error
