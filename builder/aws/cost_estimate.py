"""`launch --dry-run`'s estimate of a month's cost of one instance of the configuration: its hours
(from aws.schedule, else 730 h always on) at the instance type's on-demand price, its root volume
while it runs, its data volume all month, and the data volume's snapshots; prices from the AWS
Price List API (builder/aws/pricing.py). A price it cannot get is "unknown" with the reason, and
then so is the total: never a guess.

Not in it: data transfer, Tailscale, the cloud model providers, KMS requests, CloudWatch, the
baked AMI's own snapshot, taxes, savings plans and reserved prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from builder.aws.pricing import PriceUnknown, lookup
from builder.hours import HOURS_PER_MONTH, monthly_hours

GP3_BASE_IOPS, GP3_BASE_MIBPS = 3000, 125  # included in gp3's storage price


@dataclass
class Item:
    what: str
    quantity: str
    usd: Decimal | None  # None: unknown
    reason: str = ""  # why unknown, or what is assumed

    def to_json(self) -> dict:
        return {"item": self.what, "quantity": self.quantity, "usd": _money(self.usd), "note": self.reason or None}


@dataclass
class Estimate:
    items: list[Item]
    hours_basis: str

    @property
    def total(self) -> Decimal | None:
        if any(item.usd is None for item in self.items):
            return None
        return sum((item.usd for item in self.items), Decimal(0))

    def lines(self) -> list[str]:
        reasons = [item.reason for item in self.items if item.usd is None]
        shared = reasons[0] if len(reasons) > 1 and len(set(reasons)) == 1 else ""  # the API did not answer: once
        lines = [f"{item.what}: {item.quantity} = {_shown(item, shared)}" for item in self.items]
        total = self.total
        if total is None:
            lines.append("total: unknown (a price above is unknown" + (f": {shared})" if shared else ")"))
        else:
            lines.append(f"total: ${total:.2f} a month (on-demand prices; without data transfer and other services)")
        return [*lines, f"hours: {self.hours_basis}"]

    def to_json(self) -> dict:
        return {"items": [i.to_json() for i in self.items], "total_usd": _money(self.total), "hours": self.hours_basis}


def _money(usd: Decimal | None) -> str | None:
    return None if usd is None else f"{usd:.2f}"


def _shown(item: Item, shared_reason: str = "") -> str:
    if item.usd is None:
        return "unknown" if item.reason == shared_reason else f"unknown ({item.reason})"
    return f"${item.usd:.2f}" + (f" ({item.reason})" if item.reason else "")


class _Prices:
    """Lookups that stop asking after the API failed once: its reason stands for the rest."""

    def __init__(self, client: Any):
        self.client, self.failure = client, ""

    def get(self, service: str, what: str, pick=None, **attributes: str):
        if self.failure:
            raise PriceUnknown(self.failure)
        try:
            return lookup(self.client, service, what, pick, **attributes)
        except PriceUnknown as exc:
            if "did not answer" in str(exc):
                self.failure = str(exc)
            raise


def estimate(client: Any, config: Any, now: datetime) -> Estimate:
    """`client`: a Price List client (pricing.pricing_client); `now`: the month starts then."""
    prices = _Prices(client)
    region = config.aws.region
    hours = monthly_hours(config.aws.schedule, now)
    share = Decimal(str(hours.hours)) / HOURS_PER_MONTH  # of the month the instance (and its root volume) exists
    items = []

    def item(what: str, quantity: str, amount: Decimal, lookup_args: tuple, note: str = "", **attributes) -> None:
        try:
            price = prices.get(*lookup_args, **attributes)
        except PriceUnknown as exc:
            items.append(Item(what, quantity, None, str(exc)))
            return
        items.append(Item(what, f"{quantity} x ${price.usd.normalize():f}/{price.unit}", amount * price.usd, note))

    instance_type = config.aws.instance_type
    item(
        f"instance {instance_type}",
        f"{hours.hours:g} h",
        Decimal(str(hours.hours)),
        ("AmazonEC2", f"{instance_type} on-demand Linux in {region}"),
        regionCode=region,
        instanceType=instance_type,
        operatingSystem="Linux",
        tenancy="Shared",
        preInstalledSw="NA",
        capacitystatus="Used",
        licenseModel="No License required",
    )
    root_gib = config.image.root_volume_size_gib
    item(
        "root volume (gp3, exists while the instance runs)",
        f"{root_gib} GiB x {share:.2f} month",
        root_gib * share,
        ("AmazonEC2", f"gp3 storage in {region}"),
        regionCode=region,
        productFamily="Storage",
        volumeApiName="gp3",
    )
    volume = config.data_volume
    item(
        f"data volume ({volume.type}, all month)",
        f"{volume.size_gib} GiB",
        Decimal(volume.size_gib),
        ("AmazonEC2", f"{volume.type} storage in {region}"),
        regionCode=region,
        productFamily="Storage",
        volumeApiName=volume.type,
    )
    _volume_performance(item, volume, region)
    _snapshots(item, config, region)
    return Estimate(items, hours.basis)


def _volume_performance(item, volume, region: str) -> None:
    if volume.type == "gp3":
        extra_iops = max(0, (volume.iops or GP3_BASE_IOPS) - GP3_BASE_IOPS)
        extra_mibps = max(0, (volume.throughput_mibps or GP3_BASE_MIBPS) - GP3_BASE_MIBPS)
        if extra_iops:
            item(
                "data volume IOPS over gp3's 3000",
                f"{extra_iops} IOPS",
                Decimal(extra_iops),
                ("AmazonEC2", f"gp3 IOPS in {region}"),
                regionCode=region,
                productFamily="System Operation",
                volumeApiName="gp3",
            )
        if extra_mibps:
            item(
                "data volume throughput over gp3's 125 MiB/s",
                f"{extra_mibps} MiB/s",
                Decimal(extra_mibps),
                ("AmazonEC2", f"gp3 throughput in {region}"),
                regionCode=region,
                productFamily="Provisioned Throughput",
                volumeApiName="gp3",
            )
    elif volume.iops:  # io1/io2: provisioned IOPS (io2's tiers show as several prices: unknown)
        item(
            f"data volume provisioned IOPS ({volume.type})",
            f"{volume.iops} IOPS",
            Decimal(volume.iops),
            ("AmazonEC2", f"{volume.type} IOPS in {region}"),
            regionCode=region,
            productFamily="System Operation",
            volumeApiName=volume.type,
        )


def _snapshots(item, config, region: str) -> None:
    snapshots = config.backups.snapshots
    if not snapshots.enabled:
        return
    gib = config.data_volume.size_gib
    kept = f"{snapshots.keep_daily} daily + {snapshots.keep_weekly} weekly kept"
    # Snapshots are incremental: the first holds what was written, each later one only the blocks
    # changed since; builder cannot know how much changes, so: one full copy of the volume.
    assumed = f"assumed: they hold one full copy of the volume ({kept}; daily changes come on top)"

    def standard_snapshot(attributes: dict) -> bool:
        return attributes.get("usagetype", "").endswith("EBS:SnapshotUsage")

    for where in [region, *([snapshots.copy_to_region] if snapshots.copy_to_region else [])]:
        label = "snapshots" if where == region else f"snapshot copies in {where}"
        item(
            label,
            f"{gib} GiB",
            Decimal(gib),
            ("AmazonEC2", f"EBS snapshot storage in {where}", standard_snapshot),
            assumed,
            regionCode=where,
            productFamily="Storage Snapshot",
        )
