"""The edge's TLS certificate: which one NGINX serves, kept fresh, and whether browsers trust it.

tailnet      `tailscale cert` for the node's HTTPS name (Let's Encrypt, 90 days): asked at every boot
             (the tailscale step) and daily (ai-platform-certificate.timer: `firstboot certificate`)
             with --min-validity, so tailscaled renews it while we wait once fewer than 30 days are
             left (without the flag it hands back the cached one and renews in the background).
             Each one fetched is kept on the data volume: a later boot that cannot fetch one (the
             control server or Let's Encrypt unreachable, HTTPS turned off) serves the kept one
             while it is valid for the node's name, not a self-signed one.
self-signed  otherwise: made on the volume, naming every name and address the URLs use (short host
             name, MagicDNS name, tailnet IPv4/IPv6, the forwarded address of a local VM, localhost,
             127.0.0.1); made again when one of them is missing from it or within 30 days of its end.

HSTS: hsts.conf, next to the certificate (nginx.conf includes it), sends Strict-Transport-Security
only while the served certificate verifies against the system's CA bundle for the node's name. A
browser told HSTS hard-fails, with no way to click through, on a certificate it cannot verify; with a
self-signed certificate the edge also hides an app's own header.

NGINX (in the edge container) is reloaded only when a file it reads changed.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from firstboot.status import write_if_changed

TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
HSTS_CONF = "hsts.conf"
TAILNET_DIR = "tailnet"  # under the volume's tls directory: the last tailnet certificate fetched
SELF_SIGNED_DAYS = 825  # the longest validity Apple clients accept for a TLS server certificate
REISSUE_WITHIN_DAYS = 30  # a self-signed certificate is made again this long before its end
MIN_VALIDITY = "720h"  # `tailscale cert --min-validity`: renewed when fewer than 30 days are left
RENEWAL_FAILING_DAYS = 14  # a tailnet certificate this close to its end: its renewals have failed
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # ca-certificates: what Debian/Ubuntu trust
HSTS_MAX_AGE = 31536000
DAY = 86400
CLOCK_SLACK = 300  # seconds
TAILNET, SELF_SIGNED = "tailnet", "self-signed"


class CertificateError(Exception):
    pass


@dataclass(frozen=True)
class Certificate:
    """What the agent reads of a certificate file (openssl x509)."""

    not_before: float
    not_after: float
    names: frozenset[str]  # its subjectAltName entries, DNS names lower-cased, addresses compressed
    sha256: str  # the fingerprint of its DER form, lower-case hex

    def valid_at(self, now: float) -> bool:
        # A certificate issued a moment ago may start after `now` was read (by a CA without backdating).
        return self.not_before - CLOCK_SLACK <= now < self.not_after

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / DAY

    def names_all(self, names: Sequence[str]) -> bool:
        return {normal_name(name) for name in names} <= self.names


@dataclass(frozen=True)
class Wanted:
    """The names and addresses clients use for this node; the first of `names` is its main name."""

    hostname: str  # the short host name
    dns_name: str = ""  # MagicDNS (host.tailnet.ts.net), "" without
    https_domain: str = ""  # the name the tailnet issues certificates for (CertDomains), "" without
    addresses: tuple[str, ...] = ()  # the tailnet IPv4 and IPv6
    public_host: str | None = None  # a local VM: the forwarded address clients use

    @property
    def main_name(self) -> str:
        return self.https_domain or self.dns_name or self.hostname

    def names(self) -> list[str]:
        names = [self.main_name, self.dns_name, self.hostname, *self.addresses, self.public_host]
        names += ["localhost", "127.0.0.1"]
        unique: list[str] = []
        for name in names:
            if name and normal_name(name) not in {normal_name(n) for n in unique}:
                unique.append(name)
        return unique


def wanted_from(status: dict | None, hostname: str, public_host: str | None = None) -> Wanted:
    """What `tailscale status --json` says of this node (None without a tailnet)."""
    me = (status or {}).get("Self") or {}
    domains = (status or {}).get("CertDomains") or []
    return Wanted(
        hostname=hostname,
        dns_name=(me.get("DNSName") or "").rstrip("."),
        https_domain=domains[0] if domains else "",
        addresses=tuple(me.get("TailscaleIPs") or ()),
        public_host=public_host,
    )


@dataclass(frozen=True)
class Served:
    """The certificate the edge serves now."""

    kind: str  # TAILNET or SELF_SIGNED
    name: str  # the name clients should use (the certificate carries it)
    not_after: float
    sha256: str
    trusted: bool  # verifies against the CA bundle: HSTS on
    changed: bool  # a file NGINX reads was written now
    note: str = ""  # made now, renewed, kept from the volume…

    def describe(self) -> str:
        until = time.strftime("%Y-%m-%d", time.gmtime(self.not_after))
        trust = "HSTS on" if self.trusted else "HSTS off"
        return f"{self.kind} certificate for {self.name} until {until} ({trust}{'; ' + self.note if self.note else ''})"


def normal_name(name: str) -> str:
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name.lower().rstrip(".")


def _openssl(*arguments: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *arguments], input=stdin, capture_output=True, text=True, check=False)


def inspect(path: Path) -> Certificate | None:
    """The first certificate in `path` (a chain file starts with the server's); None when unreadable."""
    if not path.exists():
        return None
    shown = _openssl(
        "x509",
        "-in",
        str(path),
        "-noout",
        "-startdate",
        "-enddate",
        "-fingerprint",
        "-sha256",
        "-ext",
        "subjectAltName",
    )
    if shown.returncode != 0:
        return None
    fields, names = {}, set()
    for line in shown.stdout.splitlines():
        key, _, value = line.strip().partition("=")
        if key in ("notBefore", "notAfter"):
            fields[key] = ssl.cert_time_to_seconds(value)
        elif key.lower().endswith("fingerprint"):
            fields["sha256"] = value.replace(":", "").lower()
        elif line.startswith("    "):  # the subjectAltName's entries: "DNS:a, IP Address:b"
            for entry in line.split(","):
                kind, _, value = entry.strip().partition(":")
                if kind in ("DNS", "IP Address"):
                    names.add(normal_name(value))
    if len(fields) != 3:
        return None
    return Certificate(fields["notBefore"], fields["notAfter"], frozenset(names), fields["sha256"])


def key_matches(cert: Path, key: Path) -> bool:
    """The private key in `key` belongs to the certificate in `cert`."""
    if not key.exists():
        return False
    of_cert = _openssl("x509", "-in", str(cert), "-noout", "-pubkey")
    of_key = _openssl("pkey", "-in", str(key), "-pubout")
    return of_cert.returncode == 0 and of_key.returncode == 0 and of_cert.stdout == of_key.stdout


def browsers_trust(cert: Path, name: str, ca_bundle: Path, now: float) -> bool:
    """The chain in `cert` verifies for `name` against the CA bundle, at `now`."""
    if not ca_bundle.exists():
        return False
    result = _openssl(
        "verify",
        "-CAfile",
        str(ca_bundle),
        "-untrusted",
        str(cert),
        "-attime",
        str(int(max(now, time.time()))),  # (not before a certificate issued a moment ago starts)
        "-verify_hostname",
        name,
        str(cert),
    )
    return result.returncode == 0


def make_self_signed(directory: Path, names: Sequence[str], now: float | None = None) -> bool:
    """A self-signed certificate in `directory` (on the data volume) naming every one of `names`, at
    least REISSUE_WITHIN_DAYS from its end; True when made now (absent, a name missing, near its end)."""
    now = time.time() if now is None else now
    cert, key = directory / TLS_CERT, directory / TLS_KEY
    current = inspect(cert)
    if (
        current is not None
        and current.names_all(names)
        and current.days_left(now) > REISSUE_WITHIN_DAYS
        and key_matches(cert, key)
    ):
        return False
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    entries = []
    for name in names:
        try:
            entries.append(f"IP:{ipaddress.ip_address(name).compressed}")
        except ValueError:
            entries.append(f"DNS:{name}")
    new_cert, new_key = directory / f".new.{TLS_CERT}", directory / f".new.{TLS_KEY}"
    made = _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        str(SELF_SIGNED_DAYS),
        "-subj",
        f"/CN={names[0]}",
        "-addext",
        f"subjectAltName={','.join(entries)}",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-keyout",
        str(new_key),
        "-out",
        str(new_cert),
    )
    if made.returncode != 0:
        new_key.unlink(missing_ok=True)
        new_cert.unlink(missing_ok=True)
        raise CertificateError(f"openssl could not make a self-signed certificate: {made.stderr.strip()}")
    new_key.chmod(0o600)
    _replace_pair(new_cert, new_key, directory)
    return True


def _replace_pair(new_cert: Path, new_key: Path, directory: Path) -> None:
    os.replace(new_key, directory / TLS_KEY)
    os.replace(new_cert, directory / TLS_CERT)


def fetch_tailnet(cli, domain: str, directory: Path, now: float) -> str | None:
    """`tailscale cert` for `domain` into `directory` (on the volume); None when done, else why not.
    A certificate it hands back is kept only when whole: its key, the name, valid now."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_cert, new_key = directory / f".new.{TLS_CERT}", directory / f".new.{TLS_KEY}"
    try:
        result = cli.cert(domain, new_cert, new_key, min_validity=MIN_VALIDITY)
        if result.returncode != 0 and "min-validity" in (result.stderr or ""):  # a tailscale before the flag
            result = cli.cert(domain, new_cert, new_key)
        if result.returncode != 0:
            return (result.stderr or result.stdout or f"exit {result.returncode}").strip()
        fetched = inspect(new_cert)
        if fetched is None or not key_matches(new_cert, new_key):
            return "it wrote no certificate and key that belong together"
        if not fetched.names_all([domain]) or not fetched.valid_at(now):
            return f"its certificate is not valid now for {domain}"
        new_key.chmod(0o600)
        _replace_pair(new_cert, new_key, directory)
        return None
    finally:
        new_cert.unlink(missing_ok=True)
        new_key.unlink(missing_ok=True)


def kept_tailnet(directory: Path, wanted: Wanted, now: float) -> Certificate | None:
    """The tailnet certificate kept on the volume, when it still serves: valid now, with its key, for
    the node's name (any name when the node's is unknown: tailscaled not answering)."""
    found = inspect(directory / TLS_CERT)
    if found is None or not found.valid_at(now) or not key_matches(directory / TLS_CERT, directory / TLS_KEY):
        return None
    name = wanted.https_domain or wanted.dns_name
    return found if not name or found.names_all([name]) else None


def hsts_conf(trusted: bool) -> str:
    """nginx http-level: $edge_hsts (routes.conf sends it) and, when untrusted, no app's own header."""
    head = "# Written by the firstboot agent with the certificate (firstboot/certificate.py).\n"
    if trusted:
        return (
            head + "# A certificate browsers trust: HSTS where the app sends none, the app's own where it does.\n"
            f'map $upstream_http_strict_transport_security $edge_hsts {{ "" "max-age={HSTS_MAX_AGE}"; default ""; }}\n'
        )
    return (
        head + "# A certificate browsers do not trust: no HSTS, or a browser could never click through.\n"
        'map $upstream_http_strict_transport_security $edge_hsts { default ""; }\n'
        "proxy_hide_header Strict-Transport-Security;\n"
    )


def install(
    cli,
    wanted: Wanted,
    tls_dir: Path,
    volume_dir: Path,
    warn: Callable[[str], None],
    *,
    now: float | None = None,
    ca_bundle: Path = CA_BUNDLE,
) -> Served:
    """Put the certificate, key and hsts.conf for NGINX into tls_dir; say what it serves.

    `cli` is the tailscale CLI (None without a tailnet); `volume_dir` is the data volume's tls folder."""
    now = time.time() if now is None else now
    tailnet_dir = volume_dir / TAILNET_DIR
    before = inspect(tailnet_dir / TLS_CERT)
    failed = None
    if cli is not None and wanted.https_domain:
        failed = fetch_tailnet(cli, wanted.https_domain, tailnet_dir, now)
    kept = kept_tailnet(tailnet_dir, wanted, now)
    if kept is not None:
        kind, source, name = TAILNET, tailnet_dir, wanted.https_domain or wanted.dns_name or min(kept.names)
        if failed or not wanted.https_domain:
            why = f"tailscale cert failed: {failed}" if failed else "the tailnet offers no HTTPS name now"
            note = f"kept from the volume ({why})"
        else:
            note = "fetched now" if before is None or before.sha256 != kept.sha256 else ""
        if kept.days_left(now) < RENEWAL_FAILING_DAYS:
            warn(
                f"the tailnet certificate for {name} ends in {kept.days_left(now):.0f} days and was not renewed"
                + (f" ({failed})" if failed else "")
                + ": once it ends the edge serves a self-signed one"
            )
    else:
        kind, source, name = SELF_SIGNED, volume_dir, wanted.main_name
        if failed:
            warn(f"tailscale cert {wanted.https_domain} failed ({failed}); serving the self-signed certificate")
        note = "made now" if make_self_signed(volume_dir, wanted.names(), now) else ""
    trusted = kind == TAILNET and browsers_trust(source / TLS_CERT, name, ca_bundle, now)
    changed = _serve(source, tls_dir, trusted)
    served = inspect(tls_dir / TLS_CERT)
    if served is None:
        raise CertificateError(f"{tls_dir / TLS_CERT} cannot be read back")
    return Served(kind, name, served.not_after, served.sha256, trusted, changed, note)


def _serve(source: Path, tls_dir: Path, trusted: bool) -> bool:
    """Copy the pair into tls_dir and write hsts.conf; True when any of them changed."""
    tls_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    changed = write_if_changed(tls_dir / TLS_KEY, (source / TLS_KEY).read_text(), 0o600)
    changed |= write_if_changed(tls_dir / TLS_CERT, (source / TLS_CERT).read_text(), 0o644)
    changed |= write_if_changed(tls_dir / HSTS_CONF, hsts_conf(trusted), 0o644)
    return changed


EDGE_FILTERS = ("label=com.docker.compose.project=ai-platform-edge", "label=com.docker.compose.service=edge")


def reload_edge(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """Have the running edge NGINX read its files again (a graceful reload: open connections finish)."""
    filters = [argument for label in EDGE_FILTERS for argument in ("--filter", label)]
    try:
        listed = run(["docker", "ps", "-q", *filters], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        # No Docker to ask (a first boot before it runs, a machine without it) or one that hangs: the
        # certificate is in place either way, and an edge that starts later reads it then.
        return f"the edge was not asked to reload ({exc.__class__.__name__}): it reads the certificate when it starts"
    containers = listed.stdout.split() if listed.returncode == 0 else []
    if not containers:
        return "the edge is not running: it reads the certificate when it starts"
    for container in containers:
        checked = run(["docker", "exec", container, "nginx", "-t", "-q"], capture_output=True, text=True, timeout=60)
        if checked.returncode != 0:
            raise CertificateError(f"the edge's nginx refuses its files, not reloaded: {checked.stderr.strip()}")
        run(["docker", "exec", container, "nginx", "-s", "reload"], capture_output=True, text=True, timeout=60)
    return "the edge reloaded"
