"""A stand-in for the `tailscale` CLI and, behind it, the tailnet's control server.

The control server cannot run here (it is Tailscale's service), so this script plays both: it keeps
the node's state in $FAKE_TAILSCALE_STATE (JSON) and accepts only the auth key in
$FAKE_TAILSCALE_VALID_KEY. It fails the first $FAKE_TAILSCALE_FAIL_UP `up` calls, and its error
message repeats the key it was given, as a careless real tool might, so redaction is tested.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_TAILSCALE_STATE"])


def load() -> dict:
    if STATE.exists():
        return json.loads(STATE.read_text())
    return {"BackendState": "NeedsLogin", "CertDomains": [], "calls": [], "failed_ups": 0}


def save(state: dict) -> None:
    STATE.write_text(json.dumps(state))


def main(argv: list[str]) -> int:
    state = load()
    state["calls"].append(argv)
    command = argv[0] if argv else ""
    options = dict(arg[2:].split("=", 1) for arg in argv[1:] if arg.startswith("--") and "=" in arg)
    if command == "status":
        save(state)
        if state["BackendState"] != "Running":
            print("Logged out.", file=sys.stderr)
        shown = {key: state[key] for key in ("BackendState", "CertDomains")}
        if state["BackendState"] == "Running":  # an address from the CGNAT range tailnets use; never contacted
            shown["Self"] = {"TailscaleIPs": ["100.101.102.103", "fd7a:115c:a1e0::1"]}
        print(json.dumps(shown))
        return 0
    if command == "up":
        if state["failed_ups"] < int(os.environ.get("FAKE_TAILSCALE_FAIL_UP", "0")):
            state["failed_ups"] += 1
            save(state)
            print(f"backend error: control server unreachable (key {options.get('auth-key')})", file=sys.stderr)
            return 1
        if options.get("auth-key") != os.environ.get("FAKE_TAILSCALE_VALID_KEY"):
            save(state)
            print(f"backend error: invalid key: {options.get('auth-key')}", file=sys.stderr)
            return 1
        state["BackendState"] = "Running"
        state["hostname"] = options.get("hostname")
        state["tags"] = options.get("advertise-tags", "").split(",")
        state["CertDomains"] = json.loads(os.environ.get("FAKE_TAILSCALE_CERT_DOMAINS", "[]"))
        save(state)
        return 0
    if command == "cert":
        Path(options["cert-file"]).write_text(f"FAKE CERTIFICATE for {argv[-1]}\n")
        Path(options["key-file"]).write_text("FAKE KEY\n")
        save(state)
        return 0
    save(state)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
