"""The edge's certificate as the agent reports it, for `builder status`, its URLs and `signal link`:

    ai-platform certificate: tailnet demo.tail1234.ts.net until 2025-03-01T12:00:00Z sha256:<64 hex> hsts:on
    ai-platform certificate: self-signed demo.tail1234.ts.net until 2027-06-01T08:00:00Z sha256:<64 hex> hsts:off

One line, written at every boot (the tailscale step) and by the daily renewal when it changed: on
the console and, on AWS, as the instance's certificate tag. The name is the one clients should use
(the certificate carries it); the fingerprint lets builder check it is talking to that certificate.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firstboot.report import TAG_VALUE_LIMIT
from firstboot.status import write_atomic

CERTIFICATE_TAG = "ai-platform:certificate"
LINE_PREFIX = "ai-platform certificate:"
RECORD_NAME = "certificate.json"  # in the agent's state directory
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
LINE = re.compile(
    rf"{LINE_PREFIX} (?P<kind>tailnet|self-signed) (?P<name>\S+) until (?P<until>\S+) "
    r"sha256:(?P<sha256>[0-9a-f]{64}) hsts:(?P<hsts>on|off)"
)


@dataclass(frozen=True)
class CertificateReport:
    kind: str
    name: str
    not_after: float
    sha256: str
    trusted: bool

    def line(self) -> str:
        until = time.strftime(TIME_FORMAT, time.gmtime(self.not_after))
        hsts = "on" if self.trusted else "off"
        return f"{LINE_PREFIX} {self.kind} {self.name} until {until} sha256:{self.sha256} hsts:{hsts}"[:TAG_VALUE_LIMIT]

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / 86400


def of_served(served) -> CertificateReport:
    """From firstboot.certificate.Served."""
    return CertificateReport(served.kind, served.name, served.not_after, served.sha256, served.trusted)


def parse_line(line: str | None) -> CertificateReport | None:
    match = LINE.search(line or "")
    if match is None:
        return None
    try:
        not_after = calendar.timegm(time.strptime(match["until"], TIME_FORMAT))
    except ValueError:
        return None
    return CertificateReport(match["kind"], match["name"], not_after, match["sha256"], match["hsts"] == "on")


def record(report: CertificateReport, state_dir: Path) -> bool:
    """Keep the line in the state directory; True when it differs from the one kept before."""
    path = state_dir / RECORD_NAME
    previous = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        previous = json.loads(path.read_text()).get("line")
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"version": 1, "line": report.line()}, indent=2) + "\n", mode=0o644)
    return previous != report.line()


def publish_certificate_tag(ec2: Any, instance_id: str, report: CertificateReport) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": CERTIFICATE_TAG, "Value": report.line()}])
