"""Who this instance is: id, zone and region.

On AWS from IMDSv2 (a session token first, then the instance identity document), with bounded
retries and a deadline (past it ImdsUnavailable: a passing outage, which the agent waits out longer),
and never through a proxy: an HTTP(S)_PROXY in the environment must not
see the metadata service. On the local target from cloud-init's instance data (NoCloud).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TOKEN_TTL_SECONDS = 21600
CLOUD_INIT_INSTANCE_DATA = Path("/run/cloud-init/instance-data.json")


class IdentityError(Exception):
    pass


class ImdsUnavailable(IdentityError):
    """The metadata service did not answer within the deadline: on EC2 it always comes back."""


@dataclass(frozen=True)
class Identity:
    instance_id: str
    availability_zone: str | None
    region: str | None


# No ProxyHandler entries: IMDS is link-local and must never be reached through a proxy.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def imds_identity(
    endpoint: str,
    *,
    deadline_seconds: float = 60,
    request_timeout: float = 2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Identity:
    """The identity document from IMDSv2; retries with backoff until `deadline_seconds`."""
    deadline = clock() + deadline_seconds
    delay = 0.25
    last_error = ""
    while True:
        try:
            token = metadata_request(
                "PUT",
                f"{endpoint}/latest/api/token",
                {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
                request_timeout,
            )
            document = json.loads(
                metadata_request(
                    "GET",
                    f"{endpoint}/latest/dynamic/instance-identity/document",
                    {"X-aws-ec2-metadata-token": token},
                    request_timeout,
                )
            )
            return Identity(document["instanceId"], document.get("availabilityZone"), document.get("region"))
        except (OSError, ValueError, KeyError) as exc:  # URLError is an OSError; bad JSON a ValueError
            last_error = f"{type(exc).__name__}: {exc}"
        if clock() + delay > deadline:
            raise ImdsUnavailable(
                f"instance metadata (IMDSv2 at {endpoint}) did not answer within "
                f"{deadline_seconds:g} s; last error: {last_error}"
            )
        sleep(delay)
        delay = min(delay * 2, 5)


def cloud_init_identity(path: Path = CLOUD_INIT_INSTANCE_DATA) -> Identity:
    """The identity cloud-init found (NoCloud on the local target): its standard v1 keys."""
    try:
        v1 = json.loads(path.read_text(encoding="utf-8"))["v1"]
        return Identity(v1["instance_id"], v1.get("availability_zone"), v1.get("region"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentityError(f"{path}: no cloud-init instance data ({type(exc).__name__}: {exc})") from None


def metadata_request(method: str, url: str, headers: dict[str, str], timeout: float) -> str:
    """One request to the metadata service, never through a proxy (also firstboot/egress_policy.py)."""
    request = urllib.request.Request(url, method=method, headers=headers)
    with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
        return response.read().decode("utf-8")
