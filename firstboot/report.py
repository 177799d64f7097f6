"""The report outside the instance: its state as EC2 tags, which `builder launch --wait` follows.

The status file itself is written by the runner after every step (firstboot/status.py).
"""

from __future__ import annotations

from typing import Any

from firstboot.status import Status, StepRecord

STATUS_TAG = "ai-platform:status"
STATUS_DETAIL_TAG = "ai-platform:status-detail"
TAG_VALUE_LIMIT = 256  # EC2 tag values hold at most 256 characters


def publish_status_tags(ec2: Any, instance_id: str, status: Status) -> str:
    """Tag the instance with the state and the one-line summary (redacted like the status file)."""
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[
            {"Key": STATUS_TAG, "Value": status.state},
            {"Key": STATUS_DETAIL_TAG, "Value": status.summary()[:TAG_VALUE_LIMIT]},
        ],
    )
    return f"instance tags: {STATUS_TAG}={status.state}"


def publish_step_tags(ec2: Any, instance_id: str, status: Status, record: StepRecord) -> None:
    """While the boot runs: state "running" and the step that just finished, e.g. "storage: ok in 6.1 s"."""
    seconds = f" in {record.seconds:.1f} s" if record.seconds is not None else ""
    detail = f"{record.name}: {record.state}{seconds}" + (f": {record.detail}" if record.detail else "")
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[{"Key": STATUS_TAG, "Value": "running"}, {"Key": STATUS_DETAIL_TAG, "Value": detail[:TAG_VALUE_LIMIT]}],
    )


def publish_running_detail(ec2: Any, instance_id: str, detail: str) -> None:
    """While a step runs: its progress so far, e.g. the stacks healthy yet and those still starting."""
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[{"Key": STATUS_TAG, "Value": "running"}, {"Key": STATUS_DETAIL_TAG, "Value": detail[:TAG_VALUE_LIMIT]}],
    )
