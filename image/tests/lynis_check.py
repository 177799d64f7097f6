"""Lynis (the distribution's `lynis` package) on a host: run it, read its report, and tell which of
its findings the image's hardening (image/provision/82-harden.sh) claims to fix.

The full audit takes a minute or two natively (the AWS bake runs it) and about 35 minutes under
TCG, so CI's booted instance runs a focused audit: only the groups the hardening touches.
"""

from __future__ import annotations

REPORT = "/var/log/lynis-report.dat"
THRESHOLD = 80
# The Lynis groups whose tests the hardening changes (`lynis show groups`).
HARDENED_GROUPS = ("ssh", "kernel", "networking", "accounting", "banners", "usb", "storage")
# Tests the hardening fixes: after it, none of them may report a warning or a suggestion, except
# the details README.md ("### Hardening") justifies leaving (matched as substrings of the detail).
# Not KRNL-6000: Lynis reports one suggestion, with no detail, for any sysctl key that differs from its
# profile, and net.ipv4.conf.all.forwarding (Docker's bridges) and kernel.modules_disabled (dockerd
# loads its modules) always differ; image/tests/test_image.py checks the keys the hardening sets.
CLAIMED = {
    "SSH-7408": ("Port",),  # sshd stays on 22: the security group and the tailnet guard it
    "NETW-3200": (),  # dccp, sctp, rds, tipc
    "KRNL-5820": (),  # core dumps
    "BANN-7126": (),
    "BANN-7130": (),
    "ACCT-9626": (),  # sysstat
    "ACCT-9628": (),  # auditd
    "USB-1000": (),
    "STRG-1846": (),
}


def audit_command(groups: tuple[str, ...] | None = None) -> str:
    """`lynis audit system`, all of it or the named groups; --quick: no pause between sections."""
    command = "lynis audit system --quick --no-colors"
    if groups:
        command += f" --tests-from-group '{' '.join(groups)}'"
    return command


def parse_report(text: str) -> dict:
    """The report's hardening index, warnings and suggestions (`key[]=TEST|text|detail|...`)."""
    report: dict = {"hardening_index": None, "warnings": [], "suggestions": []}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "hardening_index" and value.strip().isdigit():
            report["hardening_index"] = int(value)
        elif key in ("warning[]", "suggestion[]"):
            test, text_, detail, *_ = [*value.split("|"), "", "", ""][:4]
            report["warnings" if key == "warning[]" else "suggestions"].append((test, text_, detail))
    return report


def unfixed(report: dict, claimed: dict[str, tuple[str, ...]] = CLAIMED) -> list[tuple[str, str, str]]:
    """The findings of claimed tests that the hardening should have removed and did not."""
    return [
        finding
        for finding in report["warnings"] + report["suggestions"]
        if finding[0] in claimed and not any(allowed in finding[2] for allowed in claimed[finding[0]])
    ]


def describe(report: dict) -> str:
    """The findings, one a line, for a failure message."""
    lines = [f"hardening index {report['hardening_index']}"]
    lines += [f"warning    {test}: {text} [{detail}]" for test, text, detail in report["warnings"]]
    lines += [f"suggestion {test}: {text} [{detail}]" for test, text, detail in report["suggestions"]]
    return "\n".join(lines)


def audit(host, groups: tuple[str, ...] | None = None) -> dict:
    """Run Lynis on a testinfra host (root) and return its parsed report."""
    result = host.run(audit_command(groups))
    assert result.rc == 0, f"lynis failed ({result.rc}): {result.stderr[-2000:]}"
    return parse_report(host.file(REPORT).content_string)
