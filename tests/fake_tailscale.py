"""A stand-in for the `tailscale` CLI and, behind it, the tailnet's control server.

The control server cannot run here (it is Tailscale's service), so this script plays both: it keeps
the node's state in $FAKE_TAILSCALE_STATE (JSON) and accepts only the auth key in
$FAKE_TAILSCALE_VALID_KEY, given as `--auth-key=file:PATH` or inline. It fails the first
$FAKE_TAILSCALE_FAIL_UP `up` calls, and its error message repeats the key it was given, as a
careless real tool might, so redaction is tested.
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


def cert(state: dict, domain: str, options: dict) -> int:
    """As tailscaled does: the certificate it holds for `domain` while it has at least --min-validity
    left (any time left without the flag), else a new one. Let's Encrypt is played by a CA of the
    test's ($FAKE_TAILSCALE_CA_DIR: ca.crt, ca.key) issuing for $FAKE_TAILSCALE_CERT_DAYS days; with
    $FAKE_TAILSCALE_CERT_FAIL it answers that message and writes nothing. Without a CA: text files."""
    if os.environ.get("FAKE_TAILSCALE_CERT_FAIL"):
        save(state)
        print(os.environ["FAKE_TAILSCALE_CERT_FAIL"], file=sys.stderr)
        return 1
    ca = os.environ.get("FAKE_TAILSCALE_CA_DIR")
    if not ca:
        Path(options["cert-file"]).write_text(f"FAKE CERTIFICATE for {domain}\n")
        Path(options["key-file"]).write_text("FAKE KEY\n")
        save(state)
        return 0
    import subprocess
    import time

    held = Path(ca) / f"held-{domain}"
    wanted = int(options.get("min-validity", "0h").removesuffix("h")) * 3600
    left = state.get("held", {}).get(domain, 0) - time.time()
    if left <= wanted or not Path(f"{held}.crt").exists():
        days = os.environ.get("FAKE_TAILSCALE_CERT_DAYS", "90")
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
        run(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={domain}",
            "-keyout",
            f"{held}.key",
            "-out",
            f"{held}.csr",
        )
        extensions = Path(f"{held}.ext")
        extensions.write_text(f"subjectAltName=DNS:{domain}\nextendedKeyUsage=serverAuth\n")
        run(
            "x509",
            "-req",
            "-in",
            f"{held}.csr",
            "-CA",
            f"{ca}/ca.crt",
            "-CAkey",
            f"{ca}/ca.key",
            "-CAcreateserial",
            "-days",
            days,
            "-extfile",
            str(extensions),
            "-out",
            f"{held}.crt",
        )
        state.setdefault("held", {})[domain] = time.time() + int(days) * 86400
        state["issued"] = state.get("issued", 0) + 1
    Path(options["cert-file"]).write_bytes(Path(f"{held}.crt").read_bytes())
    Path(options["key-file"]).write_bytes(Path(f"{held}.key").read_bytes())
    save(state)
    return 0


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
            shown["Self"]["DNSName"] = os.environ.get("FAKE_TAILSCALE_DNS_NAME", "")
        print(json.dumps(shown))
        return 0
    if command == "up":
        if options.get("auth-key", "").startswith("file:"):
            # As tailscale does (cmd/tailscale/cli/up.go at v1.102.3: resolveValueFromFile): the key is
            # the file's trimmed content. The file's and its folder's modes are kept for the tests.
            key_file = Path(options["auth-key"].removeprefix("file:"))
            state["key_file_modes"] = [key_file.stat().st_mode & 0o777, key_file.parent.stat().st_mode & 0o777]
            options["auth-key"] = key_file.read_text().strip()
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
        return cert(state, argv[-1], options)
    save(state)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
