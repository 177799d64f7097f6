"""`launch --dry-run`'s estimate of a month's cost (builder/aws/cost_estimate.py) from the AWS
Price List API. moto has no Price List API: the client is stubbed with botocore's Stubber, which
checks each GetProducts request against botocore's pricing model. The answers are shaped as the
API's are (each PriceList entry a JSON string of product and terms); the prices are made up."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import boto3
from botocore.stub import Stubber

from builder.aws.cost_estimate import estimate
from builder.config.schema import PlatformConfig

JUNE = datetime(2026, 6, 1, tzinfo=timezone.utc)  # a Monday, 02:00 in Berlin
BERLIN = {"timezone": "Europe/Berlin", "start": "0 8 * * 1-5", "stop": "0 20 * * 1-5"}


def pricing():
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    return client, Stubber(client)


def product(usd: str, unit: str, **attributes: str) -> str:
    dimension = {"unit": unit, "pricePerUnit": {"USD": usd}, "description": "made up", "beginRange": "0"}
    return json.dumps(
        {
            "product": {"productFamily": "x", "attributes": attributes, "sku": "SKU"},
            "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": {"SKU.JRTCKXETXF.6YS6EN2CT7": dimension}}}},
        }
    )


def expect(stubber: Stubber, products: list[str], **attributes: str) -> None:
    filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in attributes.items()]
    request = {"ServiceCode": "AmazonEC2", "Filters": filters, "FormatVersion": "aws_v1", "MaxResults": 100}
    stubber.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": products}, request)


def config(**aws) -> PlatformConfig:
    return PlatformConfig.model_validate(
        {
            "version": 1,
            "aws": {"region": "eu-central-1", "instance_type": "g5.2xlarge", **aws},
            "data_volume": {"size_gib": 200, "iops": 6000, "throughput_mibps": 250},
        }
    )


def test_the_month_is_priced_from_the_schedules_hours_the_volumes_and_the_snapshots():
    client, stubber = pricing()
    region = {"regionCode": "eu-central-1"}
    expect(
        stubber,
        [product("1.5", "Hrs")],
        **region,
        instanceType="g5.2xlarge",
        operatingSystem="Linux",
        tenancy="Shared",
        preInstalledSw="NA",
        capacitystatus="Used",
        licenseModel="No License required",
    )
    expect(stubber, [product("0.1", "GB-Mo")], **region, productFamily="Storage", volumeApiName="gp3")  # root
    expect(stubber, [product("0.1", "GB-Mo")], **region, productFamily="Storage", volumeApiName="gp3")  # data
    expect(stubber, [product("0.006", "IOPS-Mo")], **region, productFamily="System Operation", volumeApiName="gp3")
    expect(
        stubber, [product("0.05", "GiBps-mo")], **region, productFamily="Provisioned Throughput", volumeApiName="gp3"
    )
    snapshots = [  # the API lists each snapshot kind: only standard storage is the policy's
        product("0.0125", "GB-Mo", usagetype="EUC1-EBS:SnapshotArchiveStorage"),
        product("0.05", "GB-Mo", usagetype="EUC1-EBS:SnapshotUsage"),
    ]
    expect(stubber, snapshots, **region, productFamily="Storage Snapshot")
    with stubber:
        result = estimate(client, config(schedule=BERLIN), JUNE)
    stubber.assert_no_pending_responses()
    usd = {item.what: item.usd for item in result.items}
    hours = Decimal(22 * 12 + 4)  # June's weekdays 08:00-20:00 Berlin, and 1 July to 10:00 UTC
    assert usd["instance g5.2xlarge"] == hours * Decimal("1.5")
    assert usd["root volume (gp3, exists while the instance runs)"] == 100 * (hours / 730) * Decimal("0.1")
    assert usd["data volume (gp3, all month)"] == 200 * Decimal("0.1")
    assert usd["data volume IOPS over gp3's 3000"] == 3000 * Decimal("0.006")
    assert usd["data volume throughput over gp3's 125 MiB/s"] == 125 * Decimal("0.05")
    assert usd["snapshots"] == 200 * Decimal("0.05")
    assert result.total == sum(usd.values())
    lines = result.lines()
    assert "instance g5.2xlarge: 268 h x $1.5/Hrs = $402.00" in lines
    assert any(
        line.startswith("snapshots: 200 GiB x $0.05/GB-Mo = $10.00 (assumed: they hold one full copy") for line in lines
    )
    assert lines[-1].startswith("hours: from the schedule (start '0 8 * * 1-5', stop '0 20 * * 1-5', Europe/Berlin)")


def test_an_api_that_denies_makes_every_price_unknown_with_the_reason_and_asks_once():
    client, stubber = pricing()
    stubber.add_client_error("get_products", "AccessDeniedException", "not authorized to perform pricing:GetProducts")
    with stubber:
        result = estimate(client, config(), JUNE)
    assert all(item.usd is None for item in result.items) and result.total is None
    lines = result.lines()
    assert lines[0] == "instance g5.2xlarge: 730 h = unknown"
    assert "total: unknown (a price above is unknown: the Price List API did not answer: access denied" in lines[-2]
    assert "pricing:GetProducts" in lines[-2]
    assert "$" not in "".join(lines[:-2])  # no price was made up


def test_no_credentials_is_unknown_not_a_failure(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from builder.aws.pricing import pricing_client

    result = estimate(pricing_client(boto3.Session()), config(), JUNE)
    assert result.total is None
    assert "no AWS credentials found" in result.items[0].reason


def test_a_price_the_filters_do_not_pin_to_one_is_unknown_and_the_rest_still_counts():
    client, stubber = pricing()
    region = {"regionCode": "eu-central-1"}
    two = [product("1.5", "Hrs"), product("1.6", "Hrs")]
    expect(
        stubber,
        two,
        **region,
        instanceType="g5.2xlarge",
        operatingSystem="Linux",
        tenancy="Shared",
        preInstalledSw="NA",
        capacitystatus="Used",
        licenseModel="No License required",
    )
    expect(stubber, [], **region, productFamily="Storage", volumeApiName="gp3")
    for _ in range(4):
        stubber.add_response("get_products", {"PriceList": [product("0.1", "GB-Mo", usagetype="EBS:SnapshotUsage")]})
    with stubber:
        result = estimate(client, config(), JUNE)
    [instance, root, *rest] = result.items
    assert (
        instance.usd is None
        and "has 2 prices, not one for g5.2xlarge on-demand Linux in eu-central-1" in instance.reason
    )
    assert root.usd is None and "has no price for gp3 storage in eu-central-1" in root.reason
    assert all(item.usd is not None for item in rest) and result.total is None
