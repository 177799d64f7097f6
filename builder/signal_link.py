"""Linking the bot's Signal number to the instance: one command, then the owner's scan.

The Signal REST API (signal-cli-rest-api 0.100) is reached only through the edge's owner route
(/signal/, Basic auth with the owner's edge password). `GET /v1/qrcodelink/raw?device_name=`
starts a link session and answers {"device_link_uri": "sgnl://linkdevice?…"}; the owner's phone
scans it as a QR code (Signal → Settings → Linked devices). `GET /v1/accounts` lists the numbers
signal-cli holds: the link is done when the config's number is among them.
"""

from __future__ import annotations

import hashlib
import io
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from builder.errors import BuilderError

OWNER_USER = "owner"  # the edge's owner routes (firstboot/apps/edge.py)


class SignalApi:
    """The instance's Signal API behind its edge, as the owner."""

    def __init__(
        self,
        base: str,
        password: str,
        session=None,
        verify: bool = True,
        timeout: float = 60,
        unreachable: str = "is the instance running?",
    ):
        import requests

        self.base, self.auth, self.verify, self.timeout = base.rstrip("/"), (OWNER_USER, password), verify, timeout
        self.unreachable = unreachable  # what to check when the edge does not answer, for this target
        self.session = session or requests.Session()

    def get(self, path: str, **params):
        import requests

        url = f"{self.base}/signal{path}"
        try:
            response = self.session.get(url, params=params, auth=self.auth, verify=self.verify, timeout=self.timeout)
        except requests.RequestException as exc:
            raise BuilderError(f"{url} cannot be reached ({exc.__class__.__name__}): {self.unreachable}") from None
        if response.status_code == 401:
            raise BuilderError(f"{url}: the edge refused the owner's password (builder credentials NAME shows it)")
        if response.status_code != 200:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text
            raise BuilderError(f"{url}: HTTP {response.status_code}: {reason.strip()[:300]}")
        return response.json()

    def accounts(self) -> list[str]:
        return list(self.get("/v1/accounts"))

    def link_uri(self, device_name: str) -> str:
        uri = self.get("/v1/qrcodelink/raw", device_name=device_name).get("device_link_uri", "")
        if not uri.startswith("sgnl://"):
            raise BuilderError(f"the Signal API sent no device link (got {uri[:60]!r})")
        return uri


def pinned_certificate(base: str, sha256: str, directory: Path, timeout: float = 30) -> str:
    """The edge's certificate, when it is exactly the one its agent reported (its SHA-256), in a file
    for requests to verify against: a self-signed certificate is trusted by its fingerprint, and the
    name in the URL must still be one it carries. Anything else: refused, before the owner's password
    is sent."""
    address = urlsplit(base)
    try:
        pem = ssl.get_server_certificate((address.hostname, address.port or 443), timeout=timeout)
    except OSError as exc:
        raise BuilderError(f"{base} cannot be reached ({exc.__class__.__name__})") from None
    presented = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    if presented != sha256:
        raise BuilderError(
            f"{base} presents a certificate (sha256 {presented[:16]}…) that is not the one the instance reported "
            f"(sha256 {sha256[:16]}…): the owner's password is not sent. If the instance changed its certificate "
            "since, its report follows within a minute of the change: try again"
        )
    path = Path(directory) / "edge-certificate.pem"
    path.write_text(pem)
    return str(path)


def qr_text(uri: str) -> str:
    """The QR code of `uri` for a terminal (segno: pure Python, no image library)."""
    import segno

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True)
    return out.getvalue()


def link(
    api: SignalApi,
    account: str,
    device_name: str,
    show: Callable[[str], None],
    timeout: float = 300,
    poll: float = 2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Show the link code and wait until `account` is linked; returns what happened."""
    if account in api.accounts():
        return f"{account} is linked already"
    uri = api.link_uri(device_name)
    show(qr_text(uri))
    show(f"Scan it with the phone of {account}: Signal → Settings → Linked devices → Link new device.")
    show(f"(or open {uri} on it) — waiting up to {timeout:g} s")
    deadline = clock() + timeout
    while clock() < deadline:
        sleep(poll)
        if account in api.accounts():
            return f"{account} is linked; Clawdbot's Signal channel picks it up within a minute"
    raise BuilderError(f"{account} was not linked within {timeout:g} s; run the command again for a new code")
