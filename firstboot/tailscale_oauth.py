"""Each instance mints its own Tailscale auth key from the platform's OAuth client.

The OAuth client (id and secret, kept in SSM as one SecureString by `builder secrets
set-tailscale-oauth`) is allowed the `auth_keys` scope for the platform's tags only. At a join
the agent trades it for an access token (the client-credentials grant) and asks for one auth key:
single-use, pre-authorized, not ephemeral (the node's state is kept on the data volume), tagged
with the instance's tags, valid for minutes. Nothing but `tailscale up` ever holds that key.

Upstream (tailscale/tailscale at tag v1.102.3), read, not remembered:
- feature/oauthkey/oauthkey.go: the CLI's own minting from a `tskey-client-` secret: a
  clientcredentials config with TokenURL BASE + "/api/v2/oauth/token" (golang.org/x/oauth2: a form
  POST of grant_type=client_credentials, the client's id and secret as HTTP Basic credentials, the
  first style it tries), then CreateKey with Reusable false, Ephemeral, Preauthorized and Tags.
- client/tailscale/keys.go, CreateKeyWithExpiry: POST BASE/api/v2/tailnet/-/keys (tailnet "-": the
  token's own) with {"capabilities": {"devices": {"create": {...}}}, "expirySeconds": N}; a 200
  answers {"key": SECRET, ...}; any other status carries {"message": ...}.
The agent mints the key itself rather than handing the client secret to `tailscale up`: the
secret then never leaves this process, and a refusal (401/403/400: only a new client or config
cures it) is told from an outage (5xx, 429, no network: the boot waits it out) by its status.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from firstboot.tailscale import TailscaleError, TailscaleUnavailable

API_URL = "https://api.tailscale.com"
CLIENT_SECRET_PREFIX = "tskey-client-"  # how feature/oauthkey/oauthkey.go tells an OAuth client secret
KEY_LIFETIME_SECONDS = 600  # used within the minute it is minted; a leaked copy is soon worthless


class OAuthRefused(TailscaleError):
    """Tailscale's API refused the OAuth client or the key it asked for: trying again cannot help."""


class OAuthUnavailable(TailscaleUnavailable):
    """Tailscale's API could not be reached or answered with a passing failure (5xx, 429)."""


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    client_secret: str

    @classmethod
    def parse(cls, value: str, parameter: str) -> OAuthClient:
        """The SSM value `builder secrets set-tailscale-oauth` stores: {"client_id", "client_secret"}."""
        try:
            document = json.loads(value)
            client = cls(str(document["client_id"]), str(document["client_secret"]))
        except (ValueError, TypeError, KeyError):
            raise OAuthRefused(
                f"SSM parameter {parameter} does not hold a Tailscale OAuth client; "
                "store one with `builder secrets set-tailscale-oauth`"
            ) from None
        if not client.client_secret.startswith(CLIENT_SECRET_PREFIX):
            raise OAuthRefused(f"SSM parameter {parameter}: the client secret is not a {CLIENT_SECRET_PREFIX}… secret")
        return client


def mint_auth_key(client: OAuthClient, tags: tuple[str, ...], *, api_url: str = API_URL, timeout: float = 30) -> str:
    """A single-use, pre-authorized auth key for `tags`, minted with `client`."""
    if not tags:  # an OAuth client's keys are always tagged (oauthkey.go: "oauth authkeys require --advertise-tags")
        raise OAuthRefused("tailscale.tags is empty: keys minted by an OAuth client must carry the platform's tags")
    basic = base64.b64encode(
        f"{urllib.parse.quote(client.client_id)}:{urllib.parse.quote(client.client_secret)}".encode()
    ).decode()
    token = _post(
        f"{api_url}/api/v2/oauth/token",
        urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        "the OAuth token",
        timeout,
    ).get("access_token")
    if not token:
        raise OAuthRefused("Tailscale's OAuth token endpoint answered without an access_token")
    request = {
        "capabilities": {
            "devices": {"create": {"reusable": False, "ephemeral": False, "preauthorized": True, "tags": list(tags)}}
        },
        "expirySeconds": KEY_LIFETIME_SECONDS,
    }
    key = _post(
        f"{api_url}/api/v2/tailnet/-/keys",
        json.dumps(request).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        f"an auth key for {','.join(tags)}",
        timeout,
    ).get("key")
    if not key:
        raise OAuthRefused("Tailscale's API answered the key request without a key")
    return key


def _post(url: str, body: bytes, headers: dict[str, str], what: str, timeout: float) -> dict:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        message = _message(exc)
        if exc.code >= 500 or exc.code == 429:
            raise OAuthUnavailable(f"Tailscale's API could not give {what} now: HTTP {exc.code} {message}") from None
        if exc.code in (401, 403):
            raise OAuthRefused(
                f"Tailscale's API refused {what}: HTTP {exc.code} {message}. The OAuth client is revoked, "
                "wrong, or lacks the auth_keys scope for these tags; store a valid one with "
                "`builder secrets set-tailscale-oauth`"
            ) from None
        raise OAuthRefused(f"Tailscale's API refused {what}: HTTP {exc.code} {message}") from None
    except (urllib.error.URLError, OSError) as exc:  # no route, DNS, refused, timed out
        reason = getattr(exc, "reason", exc)
        raise OAuthUnavailable(f"Tailscale's API is out of reach ({url.split('/api/')[0]}): {reason}") from None
    try:
        document = json.loads(answer)
    except ValueError:
        raise OAuthUnavailable(f"Tailscale's API answered {what} with something other than JSON") from None
    return document if isinstance(document, dict) else {}


def _message(error: urllib.error.HTTPError) -> str:
    """The API's {"message": ...} (client/tailscale's ErrResponse), never a whole body."""
    try:
        return str(json.loads(error.read()).get("message", ""))[:300]
    except (ValueError, AttributeError, OSError):
        return ""
