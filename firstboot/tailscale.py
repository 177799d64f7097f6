"""Joining the tailnet.

Already joined (tailscaled keeps its state in /var/lib/tailscale, a bind mount of the data volume's
copy: see tailscale_state.py) -> nothing to do. Otherwise `tailscale up` with the auth key read from
SSM through the instance role (handed over in a file under /run, never on the command line), the
configured hostname and tags, retried with backoff. A refusal of the key or the tags fails at once
(TailscaleError: only a new key or config cures it); anything else, such as the control server out
of reach, is a passing failure (TailscaleUnavailable) that the agent waits out. The edge's
certificate (`tailscale cert`, or a self-signed one): firstboot/certificate.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class TailscaleError(Exception):
    pass


class TailscaleUnavailable(TailscaleError):
    """`tailscale up` kept failing for a reason other than a refusal: the control server out of reach,
    a timeout. Such failures pass."""


# What the control server answers when the key or the requested tags are refused ("backend error:
# invalid key: API key does not exist", "... requested tags [tag:x] are invalid or not permitted"):
# trying again cannot help.
REFUSALS = ("invalid key", "are invalid or not permitted")


@dataclass
class TailscaleCli:
    """The `tailscale` command, as the agent uses it."""

    binary: str = "tailscale"
    timeout: float = 120
    # Where the auth key waits, 0600 in a 0700 folder on tmpfs, while `tailscale up` reads it.
    key_dir: Path = Path("/run/ai-platform/tailscale")

    def status(self) -> dict | None:
        result = self._run("status", "--json")
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def up(self, auth_key_file: Path, hostname: str, tags: tuple[str, ...]) -> subprocess.CompletedProcess:
        # `--auth-key=file:PATH`: tailscale reads the key from the file (cmd/tailscale/cli/up.go,
        # resolveValueFromFile, at v1.102.3; since v1.16.0, then spelled --authkey), so the key is never
        # in /proc/<pid>/cmdline, which every user of the host can read.
        arguments = ["up", f"--auth-key=file:{auth_key_file}", f"--hostname={hostname}"]
        if tags:
            arguments.append(f"--advertise-tags={','.join(tags)}")
        return self._run(*arguments)

    def cert(
        self, domain: str, cert_file: Path, key_file: Path, min_validity: str | None = None
    ) -> subprocess.CompletedProcess:
        """With min_validity (a Go duration), tailscaled renews first when the one it holds ends sooner."""
        validity = [f"--min-validity={min_validity}"] if min_validity else []
        return self._run("cert", f"--cert-file={cert_file}", f"--key-file={key_file}", *validity, domain)

    def _run(self, *arguments: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [self.binary, *arguments], capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise TailscaleError(f"{self.binary}: not installed (the image should carry it)") from None
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess([self.binary, *arguments], 124, "", f"timed out after {self.timeout} s")


def first_ipv4(status: dict | None) -> str:
    """The node's tailnet IPv4 address from `tailscale status --json`, or "" when it has none."""
    for address in ((status or {}).get("Self") or {}).get("TailscaleIPs") or []:
        if "." in address:
            return address
    return ""


def dns_name(status: dict | None) -> str:
    """The node's MagicDNS name (host.tailnet.ts.net) from `tailscale status --json`, or ""."""
    return (((status or {}).get("Self") or {}).get("DNSName") or "").rstrip(".")


def is_running(status: dict | None) -> bool:
    return bool(status) and status.get("BackendState") == "Running"


SETTLED_STATES = ("Running", "NeedsLogin", "NeedsMachineAuth", "Stopped")


def wait_settled(
    cli: TailscaleCli, timeout: float = 30, sleep: Callable[[float], None] = time.sleep, poll: float = 1
) -> None:
    """After tailscaled (re)starts on kept state it is Starting for a moment: wait (bounded) until
    it says whether the node is still logged in, so that `join` does not log in again needlessly."""
    waited = 0.0
    while waited < timeout:
        if ((cli.status() or {}).get("BackendState")) in SETTLED_STATES:
            return
        sleep(poll)
        waited += poll


def join(
    cli: TailscaleCli,
    auth_key: Callable[[], str],
    hostname: str,
    tags: tuple[str, ...],
    *,
    attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Join unless already joined; True when this call joined. `auth_key` is read only if needed.
    A refused key or tag raises TailscaleError at once; other failures, `attempts` times over,
    TailscaleUnavailable."""
    if is_running(cli.status()):
        return False
    key = auth_key()
    key_file = _key_file(cli.key_dir, key)
    try:
        delay = 2.0
        errors = []
        for attempt in range(1, attempts + 1):
            result = cli.up(key_file, hostname, tags)
            if result.returncode == 0 and is_running(cli.status()):
                return True
            error = (result.stderr or result.stdout or f"exit {result.returncode}").strip().replace(key, "[redacted]")
            if any(refusal in error for refusal in REFUSALS):
                raise TailscaleError(f"tailscale up was refused: {error}")
            errors.append(error)
            if attempt < attempts:
                sleep(delay)
                delay *= 2
        raise TailscaleUnavailable(f"tailscale up failed {attempts} times; last error: {errors[-1]}")
    finally:
        key_file.unlink(missing_ok=True)  # read by then, or a new one is written at the next join


def _key_file(directory: Path, key: str) -> Path:
    """The key in a file only root reads: 0600 from its first byte, in a folder of mode 0700."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / "auth-key"
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key)
    return path
