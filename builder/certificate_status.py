"""The edge's certificate as builder uses it, on both targets, from the line the agent reports
(firstboot/certificate_report.py: the instance's certificate tag on AWS, its console locally):
`builder status` shows its kind and end, the URLs builder prints use the name it carries, and
`builder signal link` checks the edge presents exactly it.
"""

from __future__ import annotations

import time

from firstboot.certificate_report import parse_line

WARN_WITHIN_DAYS = 14  # a tailnet certificate renews a month before its end: closer, its renewals failed


def describe(line: str, now: float | None = None) -> dict | None:
    """{"kind", "name", "expires", "days_left", "sha256", "hsts", "warning"}; None before the agent's first line."""
    report = parse_line(line) if line and line != "-" else None
    if report is None:
        return None
    now = time.time() if now is None else now
    days = report.days_left(now)
    warning = None
    if days <= 0:
        warning = "expired"
    elif report.kind == "tailnet" and days < WARN_WITHIN_DAYS:
        warning = f"ends in {days:.0f} days and was not renewed: see the instance's ai-platform-certificate.service"
    return {
        "kind": report.kind,
        "name": report.name,
        "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.not_after)),
        "days_left": round(days, 1),
        "sha256": report.sha256,
        "hsts": report.trusted,
        "warning": warning,
    }


def summary(described: dict) -> str:
    """One line for `builder status`."""
    expires = described["expires"].replace("T", " ").removesuffix("Z")[:16]
    text = f"{described['kind']} for {described['name']}, expires {expires} UTC (in {described['days_left']:.0f} d)"
    if described["kind"] == "self-signed":
        text += ", browsers ask before they connect (HTTPS on in the tailnet gives a trusted one)"
    return text + (f"; WARNING: {described['warning']}" if described["warning"] else "")
