"""builder's side of the edge's certificate: `builder status` shows its kind and end, the URLs it
prints carry the name the certificate carries, and `signal link` verifies TLS against it.

The agent's certificate line is played by the test writing it where the agent does (the instance's
tag through moto, the local console file). The certificates are real (openssl, through the agent's
own firstboot/certificate.py) and so is the TLS server `signal link` talks to (Python's ssl on
loopback, answering as the Signal stand-in of test_signal_link.py).
"""

from __future__ import annotations

import json
import ssl
import threading
import time

import pytest
from test_instances_aws import launched  # noqa: F401  (the fixture)
from test_launch_local import local_config
from test_signal_link import ACCOUNT, PASSWORD, SignalStandIn

from builder import signal_link
from builder.aws import names
from builder.errors import BuilderError
from firstboot import certificate
from firstboot.certificate_report import CertificateReport

DOMAIN = "ai-platform-alpha.tail1234.ts.net"
SHA = "ab" * 32


def line(kind="tailnet", name=DOMAIN, days=60.0, trusted=True, sha256=SHA) -> str:
    return CertificateReport(kind, name, time.time() + days * 86400, sha256, trusted).line()


def test_status_shows_the_certificates_kind_and_end_and_the_urls_use_its_name(aws, launched, builder):  # noqa: F811
    ec2 = aws.client("ec2")
    assert json.loads(builder("--json", "status").out)[0]["certificate"] is None  # no word yet
    before = json.loads(builder("--json", "credentials", "alpha").out)["credentials"]
    assert any(row["url"].startswith("https://ai-platform-alpha:8443/") for row in before if row["url"])
    ec2.create_tags(Resources=[launched["instance_id"]], Tags=[{"Key": names.CERTIFICATE_TAG, "Value": line()}])
    text = builder("status", "alpha").out
    assert f"certificate: tailnet for {DOMAIN}, expires " in text and " UTC (in 60 d)" in text
    [view] = json.loads(builder("--json", "status").out)
    assert (view["certificate"]["kind"], view["certificate"]["hsts"], view["certificate"]["warning"]) == (
        "tailnet",
        True,
        None,
    )
    rows = json.loads(builder("--json", "credentials", "alpha").out)["credentials"]
    urls = [row["url"] for row in rows if row["url"]]
    assert urls and all(url.startswith(f"https://{DOMAIN}:") for url in urls)
    # Renewals that kept failing: said before the end.
    ec2.create_tags(Resources=[launched["instance_id"]], Tags=[{"Key": names.CERTIFICATE_TAG, "Value": line(days=9)}])
    assert "; WARNING: ends in 9 days and was not renewed" in builder("status", "alpha").out


def test_local_status_shows_the_self_signed_certificate_from_the_console(builder, tmp_path):
    from builder.config.schema import PlatformConfig
    from builder.local.instances import LocalInstance

    local_config(tmp_path)
    config = PlatformConfig.model_validate({"version": 1, "local": {"state_dir": str(tmp_path / "empty")}})
    instance = LocalInstance(config, "alpha")
    instance.directory.mkdir(parents=True)
    (instance.directory / "state.json").write_text(
        json.dumps({"instance_id": "local-0123", "pid": 2**22 + 1, "launched_at": 0})  # a pid no process has
    )
    old, new = line("self-signed", "ai-platform-alpha", 20, False), line("self-signed", "ai-platform-alpha", 800, False)
    instance.console.write_text(f"{old}\r\nai-platform health: 9/9 healthy\r\n{new}\r\n")
    text = builder("status", "--target", "local").out
    assert "certificate: self-signed for ai-platform-alpha, expires " in text and "(in 800 d), browsers ask" in text


@pytest.fixture
def tls_standin(tmp_path):
    """The Signal stand-in behind TLS with the agent's self-signed certificate (names 127.0.0.1)."""
    volume = tmp_path / "edge"
    certificate.make_self_signed(volume, certificate.Wanted("ai-platform-alpha", public_host="127.0.0.1").names())
    server = SignalStandIn()
    server.shutdown()  # restarted below behind TLS
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(volume / "tls.crt", volume / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.linked = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"https://127.0.0.1:{server.server_address[1]}", certificate.inspect(volume / "tls.crt").sha256
    server.shutdown()


def test_signal_link_verifies_the_edge_against_the_certificate_the_instance_reported(tls_standin, tmp_path):
    _server, base, sha256 = tls_standin
    pinned = signal_link.pinned_certificate(base, sha256, tmp_path)
    api = signal_link.SignalApi(base, PASSWORD, verify=pinned)
    assert ACCOUNT in api.accounts()
    # Control: without the reported certificate, the self-signed one is refused.
    with pytest.raises(BuilderError, match="cannot be reached"):
        signal_link.SignalApi(base, PASSWORD, verify=True).accounts()


def test_signal_link_sends_no_password_to_another_certificate(tls_standin, tmp_path):
    server, base, _ = tls_standin
    with pytest.raises(BuilderError, match="not the one the instance reported") as refused:
        signal_link.pinned_certificate(base, SHA, tmp_path)
    assert "the owner's password is not sent" in str(refused.value)
    assert server.link_sessions == 0 and not (tmp_path / "edge-certificate.pem").exists()
