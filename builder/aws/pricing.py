"""On-demand prices from the AWS Price List API (the `pricing` client, us-east-1 endpoint):
GetProducts with TERM_MATCH filters, each PriceList entry a JSON string (botocore's pricing model:
`SynthesizedJsonPriceListJsonItem` is a plain string) holding the product and its terms.

A price is taken only when the filters leave exactly one on-demand price (one product, one price
dimension): several (tiers, variants the filters do not tell apart) or none is "unknown", with why.
Never a remembered or guessed price. Any failure to ask (no credentials, access denied, no
endpoint) is a `PriceUnknown` with AWS's reason: the caller shows it, and goes on.

moto has no Price List API: the tests stub the client with botocore's Stubber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ENDPOINT_REGION = "us-east-1"  # one of the API's few endpoints; it serves every region's prices


class PriceUnknown(Exception):
    pass


@dataclass(frozen=True)
class Price:
    usd: Decimal
    unit: str  # as the price list says: Hrs, GB-Mo, IOPS-Mo, ...


def pricing_client(session: Any) -> Any:
    """A client that gives up fast: an estimate is not worth a long wait on an unreachable API."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=15)
    return session.client("pricing", region_name=ENDPOINT_REGION, config=config)


def lookup(client: Any, service: str, what: str, pick=None, **attributes: str) -> Price:
    """The one on-demand price of `service` whose attributes match; `pick` narrows the products
    further where a filter cannot (their usagetype's region prefix, say)."""
    filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in attributes.items()]
    products = []
    token = None
    try:
        while True:
            page = client.get_products(
                ServiceCode=service,
                Filters=filters,
                FormatVersion="aws_v1",
                MaxResults=100,
                **({"NextToken": token} if token else {}),
            )
            products += [json.loads(item) for item in page.get("PriceList", [])]
            token = page.get("NextToken")
            if not token:
                break
    except Exception as exc:  # botocore's ClientError, NoCredentialsError, EndpointConnectionError, ...
        raise PriceUnknown(f"the Price List API did not answer: {_reason(exc)}") from exc
    if pick is not None:
        products = [product for product in products if pick(product["product"].get("attributes", {}))]
    prices = [
        Price(Decimal(dimension["pricePerUnit"]["USD"]), dimension.get("unit", ""))
        for product in products
        for term in product.get("terms", {}).get("OnDemand", {}).values()
        for dimension in term.get("priceDimensions", {}).values()
        if "USD" in dimension.get("pricePerUnit", {})
    ]
    if len(prices) != 1:
        found = "no price" if not prices else f"{len(prices)} prices, not one"
        raise PriceUnknown(f"the Price List API has {found} for {what}")
    return prices[0]


def _reason(exc: Exception) -> str:
    from builder.aws.errors import describe

    return describe(exc) or f"{type(exc).__name__}: {exc}"
