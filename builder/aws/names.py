"""Names and tags of the platform's AWS resources: one place, shared with the agent on the instance."""

from __future__ import annotations

import hashlib

from firstboot.backup_record import BACKUP_TAG
from firstboot.certificate_report import CERTIFICATE_TAG
from firstboot.disk_space import DISK_TAG
from firstboot.health import HEALTH_TAG
from firstboot.readahead import TAG as READAHEAD_TAG
from firstboot.report import STATUS_DETAIL_TAG, STATUS_TAG
from firstboot.volume import DATA_ROLE, INSTANCE_TAG, PLATFORM_TAG, ROLE_TAG

__all__ = [
    "BACKUP_TAG",
    "CERTIFICATE_TAG",
    "DATA_ROLE",
    "DISK_TAG",
    "HEALTH_TAG",
    "INSTANCE_TAG",
    "PLATFORM_TAG",
    "READAHEAD_TAG",
    "ROLE_TAG",
    "STATUS_DETAIL_TAG",
    "STATUS_TAG",
]

TAILSCALE_PORT = 41641  # WireGuard over UDP: the one inbound port

# The one tag a platform's snapshot policy targets (value: the platform), on its data volumes only.
# Data Lifecycle Manager targets a volume carrying ANY of a policy's target tags, so the platform and
# role tags together would reach every platform's data volumes and this platform's root volumes:
# one tag says both. A volume replaced by a restore loses it (it is kept, not snapshotted again).
SNAPSHOT_POLICY_TAG = "ai-platform:snapshot-policy"
SNAPSHOT_REASON_TAG = "ai-platform:snapshot-reason"  # scheduled | before-upgrade | manual


def snapshot_role_name(platform: str) -> str:
    """The role Data Lifecycle Manager assumes for the platform's snapshot policy (at most 42 characters)."""
    return f"{platform}-snapshots"


def security_group_name(platform: str) -> str:
    return f"{platform}-instances"


def role_name_for(platform: str, instance: str) -> str:
    """The role and instance profile of one platform instance. IAM names hold at most 64 characters
    (a platform name and an instance name may reach 32 and 31): a longer one is cut and made unique
    by a digest of both names; shorter ones stay as they always were."""
    name = f"{platform}-{instance}-firstboot"
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(f"{platform}/{instance}".encode()).hexdigest()[:8]
    return f"{platform}-{instance}"[:44] + f"-{digest}-firstboot"


def launch_template_name(platform: str, instance: str) -> str:
    return f"{platform}-{instance}"


def group_name(platform: str, instance: str) -> str:
    """The instance's Auto Scaling group of one (names reach 255 characters: no cut needed)."""
    return f"{platform}-{instance}"


def tags(platform: str, instance: str | None = None, **extra: str) -> list[dict[str, str]]:
    values = {PLATFORM_TAG: platform, **({INSTANCE_TAG: instance} if instance else {}), **extra}
    if instance:
        values.setdefault("Name", f"{platform}-{instance}")
    return [{"Key": key, "Value": value} for key, value in values.items()]
