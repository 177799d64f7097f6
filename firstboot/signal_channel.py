"""Clawdbot's Signal channel, looked at with the platform's health every minute.

With the bot's number configured (services.signal_api.account) the channel is on, but it works
only once the owner has linked the number (`builder signal link NAME`): until then it is reported
as waiting, not failed. OpenClaw's gateway skips a channel whose account is not linked when it
starts it (reason "unlinked"); it restarts channels that crash, not ones it skipped. So when the
number shows up among signal-cli's accounts, Clawdbot's stack is restarted once, by itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

LINKED = "linked"
WAITING = "waiting for its link: builder signal link NAME"
CLAWDBOT_UNIT = "ai-platform-stack@clawdbot.service"


def signal_cli_accounts() -> list[str]:
    """The numbers signal-cli holds (GET /v1/accounts inside the Signal API's container)."""
    found = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=ai-platform-signal_api"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    if not found:
        raise RuntimeError("the Signal API is not running")
    listed = subprocess.run(
        ["docker", "exec", found[0], "curl", "-fsS", "--max-time", "20", "http://127.0.0.1:8080/v1/accounts"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listed.returncode != 0:
        raise RuntimeError(listed.stderr.strip() or "GET /v1/accounts failed")
    return list(json.loads(listed.stdout))


def state(account: str, accounts: Callable[[], list[str]] = signal_cli_accounts) -> str:
    try:
        return LINKED if account in accounts() else WAITING
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return f"unknown: {exc}"


def follow(previous: str | None, now: str, restart: Callable[[str], None]) -> bool:
    """Restart Clawdbot when the number has just been linked; True when it did."""
    if now == LINKED and previous is not None and previous != LINKED:
        restart(CLAWDBOT_UNIT)
        return True
    return False
