"""The platform's snapshot policy: Amazon Data Lifecycle Manager snapshots its data volumes on a schedule.

One policy per platform. It targets volumes by one tag, `ai-platform:snapshot-policy`=<platform>,
which only data volumes carry (DLM targets a volume that has ANY of a policy's target tags, so the
platform and role tags would reach other platforms' data volumes and this one's root volumes). A
daily schedule (after the on-volume dump) and a weekly one, each with a count of snapshots kept;
each snapshot gets the volume's tags (platform, instance, role) and `ai-platform:snapshot-reason`=
scheduled; optionally each is copied to another region under a key of that region. Snapshots of an
encrypted volume are encrypted with the volume's key by EBS itself. Request shapes follow botocore's
`dlm` service model (2018-01-12).

Why Data Lifecycle Manager and not AWS Backup: AWS Backup would select the volumes by platform AND
role (its conditions all must match) and offers a vault lock, but its EBS backups are recovery
points of a vault: deleted, listed and restored through Backup's API, with a vault and a plan and a
selection to make and keep, and its service role would need AWS's broad managed policies. DLM's
snapshots are plain EBS snapshots with the volume's tags, which `builder backups`, `restore`,
`upgrade`'s before-upgrade snapshot and `destroy --delete-data` handle with the EC2 calls they
already use; one policy and one narrow role is all there is to keep current. What DLM lacks (an
AND of tags) one tag of ours makes up for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from builder.aws import names
from builder.config.schema import PlatformConfig
from builder.errors import BuilderError

SCHEDULED = "scheduled"
DATA_ROLES = (names.DATA_ROLE, "data-replaced")  # a volume replaced by a restore keeps its snapshots' role
SCHEDULE_PERIOD = timedelta(hours=24)  # the daily schedule: status warns after two of them
ROLE_WAIT_ATTEMPTS = 12  # a new role takes a while to be assumable by DLM (IAM is eventually consistent)
ROLE_WAIT_SECONDS = 5


def description(platform: str) -> str:
    return f"Data volume snapshots of platform {platform}"  # DLM allows letters, digits, space, _ and -


def policy_details(config: PlatformConfig) -> dict:
    settings = config.backups.snapshots
    hours, minutes = (int(part) for part in settings.time_utc.split(":"))

    def schedule(name: str, create: dict, keep: int, copies_kept: dict) -> dict:
        rule: dict[str, Any] = {
            "Name": name,
            "CopyTags": True,
            "TagsToAdd": [{"Key": names.SNAPSHOT_REASON_TAG, "Value": SCHEDULED}],
            "CreateRule": {"Location": "CLOUD", **create},
            "RetainRule": {"Count": keep},
        }
        if settings.copy_to_region:
            # Copies are encrypted whatever the source (the key given, else aws/ebs of that region),
            # and kept as long as the snapshots they copy (a copy rule takes only an age).
            copy: dict[str, Any] = {
                "Target": settings.copy_to_region,
                "Encrypted": True,
                "CopyTags": True,
                "RetainRule": copies_kept,
            }
            if settings.copy_kms_key:
                copy["CmkArn"] = settings.copy_kms_key
            rule["CrossRegionCopyRules"] = [copy]
        return rule

    schedules = [
        schedule(
            "daily",
            {"Interval": 24, "IntervalUnit": "HOURS", "Times": [settings.time_utc]},
            settings.keep_daily,
            {"Interval": settings.keep_daily, "IntervalUnit": "DAYS"},
        )
    ]
    if settings.keep_weekly:
        schedules.append(
            schedule(
                "weekly",
                {"CronExpression": f"cron({minutes} {hours} ? * {settings.weekly_day} *)"},
                settings.keep_weekly,
                {"Interval": settings.keep_weekly, "IntervalUnit": "WEEKS"},
            )
        )
    return {
        "PolicyType": "EBS_SNAPSHOT_MANAGEMENT",
        "ResourceTypes": ["VOLUME"],
        "ResourceLocations": ["CLOUD"],
        "TargetTags": [{"Key": names.SNAPSHOT_POLICY_TAG, "Value": config.name}],
        "Schedules": schedules,
    }


def desired_policy(config: PlatformConfig, role_arn: str) -> dict:
    """The policy as CreateLifecyclePolicy/UpdateLifecyclePolicy take it (without id and tags)."""
    return {
        "ExecutionRoleArn": role_arn,
        "Description": description(config.name),
        "State": "ENABLED",
        "PolicyDetails": policy_details(config),
    }


def schedule_in_words(config: PlatformConfig) -> str:
    settings = config.backups.snapshots
    words = f"daily at {settings.time_utc} UTC, {settings.keep_daily} kept"
    if settings.keep_weekly:
        words += f"; weekly on {settings.weekly_day}, {settings.keep_weekly} kept"
    if settings.copy_to_region:
        key = settings.copy_kms_key or "aws/ebs"
        words += f"; each copied to {settings.copy_to_region} (key {key})"
    return words


@dataclass
class PolicyPlan:
    """What the launch does with the platform's policy: create, update, keep, or off (no DLM call)."""

    action: str
    policy_id: str | None = None
    changed: list[str] = field(default_factory=list)
    schedule: str = ""

    def line(self) -> str:
        if self.action == "off":
            return (
                "snapshots off (backups.snapshots.enabled: false): no snapshot policy made or changed; "
                "one made before goes on until deleted"
            )
        if self.action == "create":
            return f"create snapshot policy (Data Lifecycle Manager): {self.schedule}"
        if self.action == "update":
            return f"update snapshot policy {self.policy_id} ({', '.join(self.changed)} changed): {self.schedule}"
        return f"keep snapshot policy {self.policy_id} as it is: {self.schedule}"


def find_policy(dlm: Any, platform: str) -> dict | None:
    """The platform's policy in full (GetLifecyclePolicy), found by its target tag; None: none."""
    try:
        found = dlm.get_lifecycle_policies(
            TargetTags=[f"{names.SNAPSHOT_POLICY_TAG}={platform}"], ResourceTypes=["VOLUME"]
        )["Policies"]
    except dlm.exceptions.ResourceNotFoundException:  # DLM's answer when no policy matches
        return None
    kind = "EBS_SNAPSHOT_MANAGEMENT"
    ours = [policy for policy in found if policy.get("PolicyType", kind) == kind]
    if len(ours) > 1:
        ids = ", ".join(sorted(policy["PolicyId"] for policy in ours))
        raise BuilderError(
            f"more than one snapshot policy targets {names.SNAPSHOT_POLICY_TAG}={platform}: {ids}; "
            "delete all but one (EC2 console, Lifecycle Manager)"
        )
    if not ours:
        return None
    return dlm.get_lifecycle_policy(PolicyId=ours[0]["PolicyId"])["Policy"]


def differences(existing: dict, desired: dict) -> list[str]:
    """The parts of `desired` that `existing` does not hold as given (what AWS adds of its own is ignored)."""
    wording = {
        "ExecutionRoleArn": "role",
        "Description": "description",
        "State": "state",
        "TargetTags": "target tags",
        "Schedules": "schedules",
    }
    changed = []
    for key, value in desired.items():
        if key == "PolicyDetails":
            for detail, wanted in value.items():
                if not _holds(existing.get("PolicyDetails", {}).get(detail), wanted):
                    changed.append(wording.get(detail, detail))
        elif not _holds(existing.get(key), value):
            changed.append(wording.get(key, key))
    return changed


def _holds(existing: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(existing, dict) and all(_holds(existing.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(wanted)
            and all(_holds(e, w) for e, w in zip(existing, wanted, strict=True))
        )
    return existing == wanted


def plan_policy(dlm: Any, config: PlatformConfig, role_arn: str) -> PolicyPlan:
    """Reads only: the policy there is, against the one the config asks for."""
    if not config.backups.snapshots.enabled:
        return PolicyPlan("off")
    words = schedule_in_words(config)
    existing = find_policy(dlm, config.name)
    if existing is None:
        return PolicyPlan("create", schedule=words)
    changed = differences(existing, desired_policy(config, role_arn))
    return PolicyPlan("update" if changed else "keep", existing["PolicyId"], changed, words)


def apply_policy(
    dlm: Any,
    config: PlatformConfig,
    plan: PolicyPlan,
    role_arn: str,
    role_is_new: bool,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Create or update the policy as planned; returns the id of a policy this call created."""
    desired = desired_policy(config, role_arn)
    if plan.action == "update":
        dlm.update_lifecycle_policy(PolicyId=plan.policy_id, **desired)
        log(f"updated snapshot policy {plan.policy_id} ({', '.join(plan.changed)}): {plan.schedule}")
        return None
    if plan.action != "create":
        return None
    attempts = ROLE_WAIT_ATTEMPTS if role_is_new else 1
    for attempt in range(1, attempts + 1):
        try:
            policy_id = dlm.create_lifecycle_policy(**desired, Tags={names.PLATFORM_TAG: config.name})["PolicyId"]
            break
        except dlm.exceptions.InvalidRequestException:
            # A role made seconds ago may not be assumable yet: DLM refuses it as an invalid request.
            if attempt == attempts:
                raise
            sleep(ROLE_WAIT_SECONDS)
    log(f"created snapshot policy {policy_id}: {plan.schedule}")
    return policy_id


def delete_policy(dlm: Any, platform: str) -> str | None:
    """Delete the platform's policy; its id, or None when there was none. Its snapshots stay."""
    existing = find_policy(dlm, platform)
    if existing is None:
        return None
    dlm.delete_lifecycle_policy(PolicyId=existing["PolicyId"])
    return existing["PolicyId"]


def instance_snapshots(ec2: Any, platform: str, instance: str) -> list[dict]:
    """Every snapshot of the data volumes of `platform`/`instance` that this account owns, oldest first."""
    filters = [
        {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
        {"Name": f"tag:{names.INSTANCE_TAG}", "Values": [instance]},
        {"Name": f"tag:{names.ROLE_TAG}", "Values": list(DATA_ROLES)},
    ]
    found = [
        snapshot
        for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=filters)
        for snapshot in page["Snapshots"]
    ]
    return sorted(found, key=lambda snapshot: snapshot["StartTime"])


def snapshots_everywhere(clients: Any, config: PlatformConfig, instance: str) -> list[tuple[str, str]]:
    """(region, snapshot id) of every snapshot of the instance's data volumes: in aws.region, and the
    copies in backups.snapshots.copy_to_region (they carry the same tags)."""
    found = [(config.aws.region, s["SnapshotId"]) for s in instance_snapshots(clients.ec2, config.name, instance)]
    region = config.backups.snapshots.copy_to_region
    if region:
        copies = instance_snapshots(clients.client("ec2", region), config.name, instance)
        found += [(region, snapshot["SnapshotId"]) for snapshot in copies]
    return found


def last_snapshots(ec2: Any, platform: str) -> dict[str, dict]:
    """The newest snapshot of each instance's data volume, by instance name (pending ones count)."""
    filters = [
        {"Name": f"tag:{names.PLATFORM_TAG}", "Values": [platform]},
        {"Name": f"tag:{names.ROLE_TAG}", "Values": [names.DATA_ROLE]},
    ]
    newest: dict[str, dict] = {}
    for page in ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=filters):
        for snapshot in page["Snapshots"]:
            if snapshot.get("State") == "error":
                continue
            tags = {tag["Key"]: tag["Value"] for tag in snapshot.get("Tags", [])}
            instance = tags.get(names.INSTANCE_TAG)
            if instance and (instance not in newest or snapshot["StartTime"] > newest[instance]["StartTime"]):
                newest[instance] = snapshot
    return newest


def snapshot_report(
    snapshot: dict | None, volume_created: datetime | None, enabled: bool, now: datetime | None = None
) -> tuple[dict | None, str | None]:
    """What `builder status` says of an instance's last snapshot: (its summary, a warning or None).
    A warning when the last one is older than two schedule periods, or when snapshots are on and the
    volume has lived two periods without one."""
    now = now or datetime.now(timezone.utc)
    limit = 2 * SCHEDULE_PERIOD
    if snapshot is None:
        if enabled and volume_created is not None and now - volume_created > limit:
            return None, (
                f"no snapshot of the data volume yet, {_age(now - volume_created)} after it was made: check the "
                "snapshot policy (EC2 console, Lifecycle Manager) and its role"
            )
        return None, None
    tags = {tag["Key"]: tag["Value"] for tag in snapshot.get("Tags", [])}
    age = now - snapshot["StartTime"]
    summary = {
        "snapshot_id": snapshot["SnapshotId"],
        "started": snapshot["StartTime"].isoformat(),
        "age_hours": round(age.total_seconds() / 3600, 1),
        "state": snapshot.get("State", "-"),
        "reason": tags.get(names.SNAPSHOT_REASON_TAG, "-"),
    }
    warning = None
    if age > limit:
        warning = f"the last snapshot is {_age(age)} old, more than two schedule periods ({_age(limit)})"
    return summary, warning


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 72 else f"{hours / 24:.0f} days"


def age_in_words(summary: dict) -> str:
    return _age(timedelta(hours=summary["age_hours"]))
