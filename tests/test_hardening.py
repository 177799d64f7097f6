"""The image's hardening (image/provision/82-harden.sh) and the Lynis check of the image suite
(image/tests/lynis_check.py): the report parsing the bake's verdict rests on, the sshd drop-in
checked by this machine's own sshd, and the settings Docker and the build's SSH depend on."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from builder.source_tree import ROOT as REPO_ROOT

HARDEN = REPO_ROOT / "image" / "provision" / "82-harden.sh"


def lynis_check():
    spec = importlib.util.spec_from_file_location("lynis_check", REPO_ROOT / "image" / "tests" / "lynis_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def heredoc(target: str) -> str:
    """The text 82-harden.sh writes to `target` (cat >TARGET <<'EOF' ... EOF)."""
    script = HARDEN.read_text()
    match = re.search(rf"cat >{re.escape(target)} <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    assert match, f"82-harden.sh writes no {target}"
    return match.group(1)


REPORT = """\
# Lynis Report
hardening_index=83
warning[]=PKGS-7388|Ensure security repository is found in sources.list|-|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|Port (set 22 to )|-|
suggestion[]=SSH-7408|Consider hardening SSH configuration|AllowTcpForwarding (set YES to NO)|-|
suggestion[]=KRNL-6000|One or more sysctl values differ from the scan profile and could be tweaked||\
Change sysctl value or disable test (skip-test=KRNL-6000:<sysctl-key>)|
suggestion[]=NETW-3200|Determine if protocol 'dccp' is really needed on this system|-|-|
suggestion[]=FINT-4350|Install a file integrity tool to monitor changes to critical and sensitive files|-|-|
"""


def test_the_report_gives_the_index_warnings_and_suggestions():
    report = lynis_check().parse_report(REPORT)
    assert report["hardening_index"] == 83
    assert report["warnings"] == [("PKGS-7388", "Ensure security repository is found in sources.list", "-")]
    assert ("FINT-4350", "Install a file integrity tool to monitor changes to critical and sensitive files", "-") in (
        report["suggestions"]
    )


def test_a_report_without_an_index_says_so():
    assert lynis_check().parse_report("# interrupted\n")["hardening_index"] is None


def test_only_findings_the_hardening_claims_and_does_not_justify_are_unfixed():
    """SSH's port is justified in the README; KRNL-6000 (Docker's forwarding always differs, and Lynis
    names no key: these two lines are as the chain's image reported them) and a file integrity tool
    are not claimed; sshd still forwarding TCP and dccp still loadable are claims the image broke."""
    check = lynis_check()
    unfixed = check.unfixed(check.parse_report(REPORT))
    assert [(test, detail) for test, _, detail in unfixed] == [
        ("SSH-7408", "AllowTcpForwarding (set YES to NO)"),
        ("NETW-3200", "-"),
    ]
    assert "AllowTcpForwarding" in check.describe(check.parse_report(REPORT))


def test_the_focused_audit_runs_the_hardened_groups_only():
    check = lynis_check()
    assert check.audit_command().startswith("lynis audit system")
    focused = check.audit_command(check.HARDENED_GROUPS)
    assert "--tests-from-group 'ssh kernel networking accounting banners usb storage'" in focused


def test_docker_keeps_its_forwarding_and_module_loading():
    """Docker's bridges need IPv4 forwarding and dockerd loads netfilter/overlay modules: Lynis
    suggests turning both off; the hardening must not."""
    sysctl = dict(
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition("=") for line in heredoc("/etc/sysctl.d/60-ai-platform-hardening.conf").splitlines()
        )
        if not key.startswith("#") and value
    )
    assert sysctl["net.ipv4.ip_forward"] == "1"
    assert "net.ipv4.conf.all.forwarding" not in sysctl
    assert "kernel.modules_disabled" not in sysctl


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="no sshd on this machine")
def test_the_sshd_drop_in_is_valid_and_keeps_key_logins(tmp_path):
    """This machine's sshd parses the drop-in (a bad option would keep sshd from starting at first
    boot); public keys stay on, root and passwords off, no forwarding."""
    drop_in = tmp_path / "10-ai-platform-hardening.conf"
    drop_in.write_text(heredoc("/etc/ssh/sshd_config.d/10-ai-platform-hardening.conf") + "\n")
    host_key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    config = tmp_path / "sshd_config"
    config.write_text(f"Include {drop_in}\nHostKey {host_key}\nSubsystem sftp internal-sftp\n")
    result = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    effective = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert effective["pubkeyauthentication"] == "yes"
    assert effective["permitrootlogin"] == "no"
    assert effective["passwordauthentication"] == "no"
    assert effective["allowtcpforwarding"] == "no"
    assert int(effective["maxsessions"]) >= 2  # Packer and testinfra open one session at a time


def test_unused_protocols_cannot_be_loaded():
    modprobe = heredoc("/etc/modprobe.d/ai-platform-hardening.conf")
    for protocol in ("dccp", "sctp", "rds", "tipc"):
        assert f"install {protocol} /bin/true" in modprobe  # the one form Lynis 3.0 counts


def test_the_hardening_runs_after_the_last_apt_update_of_the_bake():
    """82-harden.sh adds the Debian security archive: a later `apt-get update` in the bake would
    fetch it, which the bake's mirror may not carry."""
    template = (REPO_ROOT / "packer.pkr.hcl").read_text()
    order = re.findall(r'"image/provision/(\d\d-[a-z-]+\.sh)"', template)
    assert order.index("82-harden.sh") > order.index("30-tailscale.sh")
    later = order[order.index("82-harden.sh") + 1 :]
    assert not [name for name in later if "apt-get update" in (HARDEN.parent / name).read_text()]


def test_the_image_installs_lynis_and_what_the_hardening_configures():
    packages = (REPO_ROOT / "image" / "provision" / "apt-packages.txt").read_text().split()
    for package in ("lynis", "unattended-upgrades", "auditd", "sysstat"):
        assert package in packages


def test_the_fifo_protection_is_not_set_back_by_systemds_own_file():
    """systemd's /usr/lib/sysctl.d/99-protect-links.conf applies after 60-ai-platform-hardening.conf
    (name order) and sets fs.protected_fifos to 1: the chain's booted image ran with 1 until the
    hardening replaced that file by one of the same name in /etc."""
    replaced = heredoc("/etc/sysctl.d/99-protect-links.conf")
    assert "fs.protected_fifos = 2" in replaced and "fs.protected_regular = 2" in replaced


@pytest.mark.parametrize(
    ("builder_type", "vendor", "mode"),
    [("amazon-ebs", "Amazon EC2", "full"), ("amazon-ebs", "QEMU", "off"), ("qemu", "QEMU", "off")],
)
def test_the_bake_runs_the_full_audit_only_on_a_real_ec2_build_instance(tmp_path, builder_type, vendor, mode):
    """CI's AWS bake test is amazon-ebs with qemu under TCG as the build instance: a full audit there
    would take over 20 minutes of CI (the first CI run of this change was about to)."""
    script = (REPO_ROOT / "image/provision/85-test-with-docker.sh").read_text()
    decision = script[script.index("lynis=off\n") : script.index("status=0\n")]
    (tmp_path / "sys_vendor").write_text(vendor + "\n")
    environment = {"PATH": "/usr/bin:/bin", "PACKER_BUILDER_TYPE": builder_type}
    environment["DMI_SYS_VENDOR_FILE"] = str(tmp_path / "sys_vendor")
    result = subprocess.run(
        ["sh", "-c", decision + 'echo "mode=$lynis"'], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.strip().endswith(f"mode={mode}")
