"""The edge's certificate (firstboot/certificate.py): renewed well before its end, kept when a boot
cannot fetch one, HSTS only while browsers trust it, a self-signed one naming every name and address.

openssl runs for real, and so does nginx with the edge's rendered config (in a network and mount
namespace of its own: `unshare -n -m`). `tailscale` is the stand-in of fake_tailscale.py: tailscaled
and its control server cannot run here; its `cert` plays tailscaled's cache and Let's Encrypt with
a CA of the test's, which stands in for the CA bundle browsers trust.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from firstboot_machine import Machine
from stack_fixtures import make_tree
from test_stack_files import edge_conf_dir

from firstboot import certificate, certificate_report
from firstboot.cli import main

DOMAIN = "ai-platform-alpha.tail1234.ts.net"
DAY = 86400


def openssl(*arguments: str) -> str:
    return subprocess.run(["openssl", *arguments], check=True, capture_output=True, text=True).stdout


def make_ca(directory, name="Test Root"):
    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
        "-subj", f"/CN={name}", "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"),
    )  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    """The stand-in for Let's Encrypt's root: a browser here trusts exactly this CA."""
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tailnet(fake_tailscale, authority, tmp_path, monkeypatch):
    """A node that is joined, with HTTPS names on in its tailnet."""
    ca = tmp_path / "ca"
    shutil.copytree(authority, ca)
    monkeypatch.setenv("FAKE_TAILSCALE_CA_DIR", str(ca))
    monkeypatch.setenv("FAKE_TAILSCALE_DNS_NAME", DOMAIN + ".")
    state = {"BackendState": "Running", "CertDomains": [DOMAIN], "calls": [], "failed_ups": 0}
    (tmp_path / "tailscale-state.json").write_text(json.dumps(state))
    return fake_tailscale


def fake_state(tmp_path) -> dict:
    return json.loads((tmp_path / "tailscale-state.json").read_text())


def wanted(cli) -> certificate.Wanted:
    return certificate.wanted_from(cli.status() if cli else None, "ai-platform-alpha")


def install(cli, tmp_path, authority, root="instance-a", **keywords):
    warnings = []
    served = certificate.install(
        cli,
        keywords.pop("names", None) or wanted(cli),
        tmp_path / root / "tls",
        tmp_path / "volume" / "tls",
        warnings.append,
        ca_bundle=authority / "ca.crt",
        **keywords,
    )
    return served, warnings


def test_the_tailnet_certificate_is_served_kept_on_the_volume_and_gets_hsts(tailnet, tmp_path, authority):
    served, warnings = install(tailnet, tmp_path, authority)
    assert (served.kind, served.name, served.trusted, served.changed, warnings) == (
        "tailnet",
        DOMAIN,
        True,
        True,
        [],
    )
    assert 89 < (served.not_after - time.time()) / DAY <= 90
    tls = tmp_path / "instance-a" / "tls"
    assert certificate.inspect(tls / "tls.crt").names == {DOMAIN}
    assert oct((tls / "tls.key").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "volume/tls/tailnet/tls.crt").read_bytes() == (tls / "tls.crt").read_bytes()
    assert '"" "max-age=31536000"' in (tls / "hsts.conf").read_text()
    # The line builder reads back names it, its end, its fingerprint and HSTS.
    line = certificate_report.of_served(served).line()
    assert certificate_report.parse_line(line) == certificate_report.CertificateReport(
        "tailnet", DOMAIN, int(served.not_after), served.sha256, True
    )


def test_it_is_renewed_a_month_before_its_end_not_before(tailnet, tmp_path, authority, monkeypatch):
    monkeypatch.setenv("FAKE_TAILSCALE_CERT_DAYS", "45")
    first, _ = install(tailnet, tmp_path, authority)
    again, _ = install(tailnet, tmp_path, authority)  # 45 days left: tailscaled keeps the one it holds
    assert (again.sha256, again.changed, fake_state(tmp_path)["issued"]) == (first.sha256, False, 1)
    state = fake_state(tmp_path)
    state["held"][DOMAIN] = time.time() + 29 * DAY  # what tailscaled holds now ends in 29 days
    (tmp_path / "tailscale-state.json").write_text(json.dumps(state))
    monkeypatch.setenv("FAKE_TAILSCALE_CERT_DAYS", "90")
    renewed, warnings = install(tailnet, tmp_path, authority)
    assert renewed.changed and renewed.sha256 != first.sha256 and warnings == []
    assert 89 < (renewed.not_after - time.time()) / DAY <= 90
    assert all("--min-validity=720h" in call for call in fake_state(tmp_path)["calls"] if call[0] == "cert")


def test_the_daily_run_reloads_the_edge_only_when_the_certificate_changed(tailnet, tmp_path, authority, capsys):
    machine = Machine(tmp_path / "machine", data_dir=tmp_path / "volume-mount")
    machine.instance_config(
        tailscale={"auth_key_parameter": "/ai-platform/tailscale/auth-key", "hostname": "ai-platform-alpha", "tags": []}
    )
    machine.paths.state_dir.mkdir(parents=True)
    settings = machine.settings(tailscale=tailnet, paths=_with_bundle(machine.paths, authority))
    assert main(["certificate"], settings) == 0
    first = capsys.readouterr()
    assert machine.edge_reloads == 1
    assert f"ai-platform certificate: tailnet {DOMAIN} until" in first.out and "hsts:on" in first.out
    assert main(["certificate"], settings) == 0  # the same certificate: no reload, no new line
    second = capsys.readouterr()
    assert machine.edge_reloads == 1 and "ai-platform certificate:" not in second.out
    assert "edge not reloaded" in second.err
    state = fake_state(tmp_path)
    state["held"][DOMAIN] = time.time() + 10 * DAY
    (tmp_path / "tailscale-state.json").write_text(json.dumps(state))
    assert main(["certificate"], settings) == 0  # tailscaled renews: the edge reads the new one
    assert machine.edge_reloads == 2 and "ai-platform certificate:" in capsys.readouterr().out


def _with_bundle(paths, authority):
    from dataclasses import replace

    return replace(paths, ca_bundle=authority / "ca.crt")


def test_a_boot_that_cannot_fetch_one_keeps_the_valid_one_from_the_volume(tailnet, tmp_path, authority, monkeypatch):
    served, _ = install(tailnet, tmp_path, authority)
    monkeypatch.setenv("FAKE_TAILSCALE_CERT_FAIL", "acme: 429 too many certificates already issued")
    # A replacement instance (a new root disk, the same volume) whose `tailscale cert` fails.
    kept, warnings = install(tailnet, tmp_path, authority, root="instance-b")
    assert (kept.kind, kept.sha256, kept.trusted, warnings) == ("tailnet", served.sha256, True, [])
    assert "kept from the volume (tailscale cert failed: acme: 429" in kept.note
    # tailscaled not answering at all: the node's names are unknown, the kept certificate still serves.
    quiet, _ = install(tailnet, tmp_path, authority, root="instance-c", names=certificate.Wanted("ai-platform-alpha"))
    assert (quiet.kind, quiet.sha256, quiet.name) == ("tailnet", served.sha256, DOMAIN)


def test_near_its_end_unrenewed_it_warns_and_once_ended_the_edge_drops_hsts(tailnet, tmp_path, authority, monkeypatch):
    served, _ = install(tailnet, tmp_path, authority)
    monkeypatch.setenv("FAKE_TAILSCALE_CERT_FAIL", "acme: unreachable")
    _, warnings = install(tailnet, tmp_path, authority, now=served.not_after - 10 * DAY)
    assert len(warnings) == 1 and f"the tailnet certificate for {DOMAIN} ends in 10 days and was not" in warnings[0]
    ended, warnings = install(tailnet, tmp_path, authority, now=served.not_after + DAY)
    assert (ended.kind, ended.trusted, ended.name) == ("self-signed", False, DOMAIN)
    assert warnings == [f"tailscale cert {DOMAIN} failed (acme: unreachable); serving the self-signed certificate"]
    hsts = (tmp_path / "instance-a/tls/hsts.conf").read_text()
    assert "max-age" not in hsts and "proxy_hide_header Strict-Transport-Security;" in hsts


def test_a_certificate_browsers_do_not_trust_gets_no_hsts(tailnet, tmp_path, authority):
    stranger = make_ca(tmp_path / "stranger", "Another Root")
    served, _ = install(tailnet, tmp_path, stranger)
    assert (served.kind, served.trusted) == ("tailnet", False)
    assert "max-age" not in (tmp_path / "instance-a/tls/hsts.conf").read_text()


def test_a_certificate_for_another_name_is_not_served(tailnet, tmp_path, authority):
    """A rename: the kept certificate is for the old name; the new one cannot be fetched yet."""
    served, _ = install(tailnet, tmp_path, authority)
    renamed = certificate.Wanted("beta", "beta.tail1234.ts.net", "beta.tail1234.ts.net")
    other, _ = install(None, tmp_path, authority, names=renamed)
    assert (other.kind, other.name) == ("self-signed", "beta.tail1234.ts.net") and other.sha256 != served.sha256


def test_a_tailscale_without_min_validity_is_asked_without_it(tailnet, tmp_path, authority):
    older = tmp_path / "bin" / "tailscale-1.70"
    older.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case $a in --min-validity=*) echo "flag provided but not defined: -min-validity" >&2;'
        " exit 2;; esac; done\n"
        f'exec {tailnet.binary} "$@"\n'
    )
    older.chmod(0o755)
    served, warnings = install(type(tailnet)(binary=str(older)), tmp_path, authority)
    assert (served.kind, warnings) == ("tailnet", [])


NAMES = certificate.Wanted(
    "ai-platform-alpha", DOMAIN, "", ("100.101.102.103", "fd7a:115c:a1e0::1"), public_host="192.168.122.1"
)


def test_the_self_signed_one_names_every_name_and_address_the_urls_use(tmp_path):
    volume = tmp_path / "volume"
    assert certificate.make_self_signed(volume, NAMES.names())
    made = certificate.inspect(volume / "tls.crt")
    assert made.names == {
        DOMAIN,
        "ai-platform-alpha",
        "100.101.102.103",
        "fd7a:115c:a1e0::1",
        "192.168.122.1",
        "localhost",
        "127.0.0.1",
    }
    text = openssl("x509", "-in", str(volume / "tls.crt"), "-noout", "-subject")
    assert f"CN = {DOMAIN}" in text  # the main name: MagicDNS's
    assert 824 < made.days_left(time.time()) <= 825


def test_the_self_signed_one_is_made_again_when_a_name_changes_or_it_nears_its_end(tmp_path):
    volume = tmp_path / "volume"
    certificate.make_self_signed(volume, NAMES.names())
    first = certificate.inspect(volume / "tls.crt")
    assert not certificate.make_self_signed(volume, NAMES.names())  # kept: same names, far from its end
    assert not certificate.make_self_signed(volume, ["ai-platform-alpha", "localhost"])  # a subset: kept
    assert certificate.inspect(volume / "tls.crt").sha256 == first.sha256
    moved = certificate.Wanted("ai-platform-alpha", DOMAIN, "", ("100.101.102.104",))
    assert certificate.make_self_signed(volume, moved.names())  # a new tailnet address
    assert "100.101.102.104" in certificate.inspect(volume / "tls.crt").names
    second = certificate.inspect(volume / "tls.crt")
    assert not certificate.make_self_signed(volume, moved.names(), now=second.not_after - 31 * DAY)
    assert certificate.make_self_signed(volume, moved.names(), now=second.not_after - 29 * DAY)
    assert certificate.key_matches(volume / "tls.crt", volume / "tls.key")


def test_without_a_tailnet_the_self_signed_one_is_kept_across_instances(tmp_path, authority):
    names = certificate.Wanted("ai-platform-alpha", public_host="127.0.0.1")
    first, _ = install(None, tmp_path, authority, names=names)
    second, _ = install(None, tmp_path, authority, root="instance-b", names=names)
    assert first.note == "made now" and second.note == ""
    assert (first.kind, first.trusted, second.sha256) == ("self-signed", False, first.sha256)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("stacks"))


def test_the_real_edge_sends_hsts_only_with_the_trusted_one_and_serves_a_renewal_after_a_reload(
    tree, tailnet, tmp_path, authority
):
    """nginx with the edge's rendered config: first the self-signed certificate (no HSTS), then the
    agent installs the tailnet one and NGINX reloads: the new certificate and HSTS, no restart."""
    (tmp_path / "edge").mkdir()
    conf = edge_conf_dir(tree, tmp_path / "edge")
    shutil.rmtree(conf / "tls")
    install(None, tmp_path, authority, root="self", names=certificate.Wanted("ai-platform-alpha"))
    assert install(tailnet, tmp_path, authority, root="tailnet")[0].trusted
    shutil.copytree(tmp_path / "self/tls", conf / "tls")
    # The one line changed: the pid file, which here would be the machine's own /tmp/nginx.pid.
    nginx_conf = (conf / "nginx.conf").read_text()
    (conf / "nginx.conf").write_text(nginx_conf.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;"))
    out = tmp_path / "out"
    out.mkdir()
    look = (
        "curl -sk -D - -o /dev/null https://127.0.0.1:8443/ | tr -d '\\r' | grep -i '^strict-transport' || true; "
        "echo | openssl s_client -connect 127.0.0.1:8443 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    )
    script = f"""set -e
ip link set lo up
mount --bind {conf} /etc/nginx
nginx -c /etc/nginx/nginx.conf -g 'daemon off; error_log stderr;' >{out}/nginx.log 2>&1 &
trap 'kill $!' EXIT
for i in $(seq 100); do [ -s {tmp_path}/nginx.pid ] && break; sleep 0.1; done
({look}) > {out}/before
cp {tmp_path}/tailnet/tls/* /etc/nginx/tls/
old_workers=$(ps --ppid "$(cat {tmp_path}/nginx.pid)" -o pid=)
nginx -c /etc/nginx/nginx.conf -s reload
# The reload is asynchronous: wait (10 s at most) until the workers of before are gone.
for i in $(seq 100); do
    gone=yes
    for pid in $old_workers; do kill -0 "$pid" 2>/dev/null && gone=no; done
    [ $gone = yes ] && break
    sleep 0.1
done
({look}) > {out}/after
"""
    result = subprocess.run(["unshare", "-n", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + (out / "nginx.log").read_text()
    before, after = (out / "before").read_text(), (out / "after").read_text()
    fingerprint = lambda text: text.strip().splitlines()[-1].split("=")[1].replace(":", "").lower()  # noqa: E731
    assert "strict-transport-security" not in before.lower()
    assert fingerprint(before) == certificate.inspect(tmp_path / "self/tls/tls.crt").sha256
    assert "strict-transport-security: max-age=31536000" in after.lower()
    assert fingerprint(after) == certificate.inspect(tmp_path / "tailnet/tls/tls.crt").sha256


def test_the_edge_reload_checks_the_files_first_and_skips_a_stopped_edge():
    """The docker calls reload_edge makes (a recording stand-in for docker: the edge container is the
    real nginx's job above; Docker's side is `docker exec`)."""
    calls = []

    def docker(listed: str, check_rc: int = 0):
        def run(arguments, **_):
            calls.append(arguments[1:])
            rc = check_rc if arguments[-1] == "-q" and "exec" in arguments else 0
            return subprocess.CompletedProcess(arguments, rc, listed if arguments[1] == "ps" else "", "bad key")

        return run

    assert "not running" in certificate.reload_edge(docker(""))

    def no_docker(arguments, **_):
        raise FileNotFoundError(2, "No such file or directory", "docker")

    # A boot's tailscale step on a machine without the docker CLI (the VM test's image) failed here.
    assert "it reads the certificate when it starts" in certificate.reload_edge(no_docker)
    assert calls[-1][:2] == ["ps", "-q"] and "label=com.docker.compose.project=ai-platform-edge" in calls[-1]
    calls.clear()
    assert certificate.reload_edge(docker("c0ffee\n")) == "the edge reloaded"
    assert calls[1:] == [["exec", "c0ffee", "nginx", "-t", "-q"], ["exec", "c0ffee", "nginx", "-s", "reload"]]
    calls.clear()
    with pytest.raises(certificate.CertificateError, match="refuses its files, not reloaded: bad key"):
        certificate.reload_edge(docker("c0ffee\n", check_rc=1))
    assert ["exec", "c0ffee", "nginx", "-s", "reload"] not in calls
