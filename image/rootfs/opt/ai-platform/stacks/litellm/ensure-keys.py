"""Register each app's LiteLLM virtual key; run in the litellm container after every start (post-start).

Each app calls LiteLLM with a key of its own, so LiteLLM books spend and tokens per app (the key's
alias is the app's name, in LiteLLM_SpendLogs and its UI); only the agent and the owner hold the
master key. The keys are made once by the firstboot agent and kept on the data volume, and reach
this container as AI_PLATFORM_APP_KEY_<APP>. A key LiteLLM does not know (the first boot, or a
database restored from before it) is registered with that same value, so no app's config changes.

Standard library only: it runs on the image's own Python. No key is ever printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

PREFIX = "AI_PLATFORM_APP_KEY_"
API = os.environ.get("AI_PLATFORM_LITELLM_URL", "http://127.0.0.1:4000")
ATTEMPTS, PAUSE = 10, 3.0  # for a proxy that is healthy but still settling its database


class RegistrationError(Exception):
    pass


def call(method: str, path: str, master: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        API + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {master}", "Content-Type": "application/json"},
    )
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"detail": text[:500]}
        except (urllib.error.URLError, OSError) as error:
            if attempt == ATTEMPTS - 1:
                raise RegistrationError(f"LiteLLM at {API} cannot be reached: {error}") from None
            time.sleep(PAUSE)
    raise AssertionError("unreachable")


def is_registered(key: str, master: str) -> bool:
    status, body = call("GET", "/key/info?" + urllib.parse.urlencode({"key": key}), master)
    if status == 200:
        return True
    if status == 404:
        return False
    raise RegistrationError(f"LiteLLM's /key/info answered {status}: {message(body)}")


def register(app: str, key: str, master: str) -> str:
    """POST /key/generate with the app's own value; the alias is the app, or (when an older key of
    the app holds that alias) the app and a fingerprint of the new key."""
    aliases = (app, f"{app}-{hashlib.sha256(key.encode()).hexdigest()[:8]}")
    for alias in aliases:
        body = {"key": key, "key_alias": alias, "metadata": {"app": app, "made_by": "ai-platform"}}
        status, answer = call("POST", "/key/generate", master, body)
        if status == 200:
            return alias
        if "alias" not in message(answer).lower():
            break
    raise RegistrationError(f"LiteLLM refused {app}'s key ({status}): {message(answer)}")


def message(body: dict) -> str:
    detail = body.get("detail") or body.get("error") or body
    if isinstance(detail, dict):
        detail = detail.get("error") or detail.get("message") or detail
    return str(detail)[:500]


def main(environ=os.environ) -> int:
    apps = {name[len(PREFIX) :].lower(): value for name, value in sorted(environ.items()) if name.startswith(PREFIX)}
    if not environ.get("DATABASE_URL"):
        print("ensure-keys: LiteLLM runs without a database, so it has no virtual keys: none registered")
        return 0
    master = environ.get("LITELLM_MASTER_KEY", "")
    if not master:
        print("ensure-keys: LITELLM_MASTER_KEY is not set in the container", file=sys.stderr)
        return 1
    try:
        for app, key in apps.items():
            if is_registered(key, master):
                print(f"ensure-keys: {app}'s key is registered")
            else:
                print(f"ensure-keys: {app}'s key registered now, as {register(app, key, master)!r}")
    except RegistrationError as error:
        print(f"ensure-keys: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
