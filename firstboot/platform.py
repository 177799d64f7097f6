"""The outside world as the agent's steps see it: AWS clients and systemd.

`Platform` is the real one. Tests inject their own where the real thing cannot run here
(systemd as PID 1 outside a VM); the AWS clients point at a moto server through the
instance config's `endpoints.aws`.
"""

from __future__ import annotations

import os
import subprocess
from functools import cached_property
from typing import Any

from firstboot.instance_config import DEFAULT_IMDS, InstanceConfig


class Systemd:
    """systemctl, as the agent uses it."""

    def daemon_reload(self) -> None:
        self._systemctl("daemon-reload")

    def start(self, unit: str, wait: bool = True) -> None:
        """`wait=False` queues the start and returns (--no-block): the caller follows the units itself."""
        self._systemctl("start", unit) if wait else self._systemctl("start", "--no-block", unit)

    def active_state(self, unit: str) -> str:
        """systemd's ActiveState: active, activating, failed, inactive, …"""
        return self._property(unit, "ActiveState") or "unknown"

    def condition_failed(self, unit: str) -> bool:
        """True when the unit did not start because a Condition…= was unmet."""
        return self._property(unit, "ConditionResult") == "no"

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
    def __init__(self, config: InstanceConfig, systemd: Systemd | None = None):
        self.config = config
        self.systemd = systemd or Systemd()

    def client(self, service: str) -> Any:
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
