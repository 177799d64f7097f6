"""The report outside the instance: its state as EC2 tags, which `builder launch --wait` follows.

The status file itself is written by the runner after every step (firstboot/status.py).
"""

from __future__ import annotations

from typing import Any

from firstboot.status import Status

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
