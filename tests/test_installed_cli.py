"""builder installed the way users install a CLI: its wheel, built from this tree, in a fresh venv
with no test extras, run from a directory outside the repo that holds only the user's
platform.yaml. The wheel carries its own copy of the files a bake reads (builder/source_tree.py).

The wheel's dependencies come from pip's index, as for a user; the agent wheelhouse a bake would
build is not part of a dry run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from builder.source_tree import copy_tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `builder` entry point of a fresh venv holding only the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("installed")
    source = copy_tree(root / "source")  # a build writes into its tree: never into the checkout
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (root / "dist").glob("ai_platform_builder-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=300)
    pip = [str(root / "venv/bin/python"), "-m", "pip", "install", "--quiet", str(wheel)]
    added = subprocess.run(pip, capture_output=True, text=True, timeout=900)
    assert added.returncode == 0, added.stderr[-3000:]
    return root / "venv/bin/builder"


def run(builder: Path, directory: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BUILDER_", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(builder), *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        env={**environ, **(env or {})},
    )


@pytest.fixture
def user_directory(tmp_path) -> Path:
    directory = tmp_path / "my-platform"
    directory.mkdir()
    (directory / "platform.yaml").write_text(
        f"version: 1\nlocal:\n  state_dir: {tmp_path / 'state'}\n"
        "image:\n  base_ami_owner: '099720109477'\n  base_ami_name_filter: 'ubuntu/images/*'\n"
    )
    return directory


def test_the_venv_has_no_test_tools_and_the_wheel_its_own_tree(installed):
    venv = installed.parent.parent
    packages = subprocess.run([str(venv / "bin/python"), "-m", "pip", "list", "--format=json"], capture_output=True)
    names = {p["name"].lower() for p in json.loads(packages.stdout)}
    assert "ai-platform-builder" in names and not names & {"pytest", "pytest-testinfra", "moto"}
    [tree] = venv.glob("lib/python*/site-packages/builder/_tree")
    entries = ("packer.pkr.hcl", "image/images.lock.json", "cloudinit/cloud-config.yaml.j2", "firstboot")
    for entry in (*entries, "examples/platform.yaml"):
        assert (tree / entry).exists(), entry
    assert not (tree / "builder/_tree").exists()  # no copy of the copy


def test_config_validate_and_userdata_from_the_users_directory(installed, user_directory):
    validated = run(installed, user_directory, "config", "validate")
    assert validated.returncode == 0, validated.stderr
    assert "platform.yaml" in validated.stdout + validated.stderr
    userdata = run(installed, user_directory, "userdata", "alpha", "--target", "local", "--decoded")
    assert userdata.returncode == 0, userdata.stderr
    assert "#cloud-config" in userdata.stdout and "alpha" in userdata.stdout


def test_a_local_dry_run_plans_the_same_image_as_the_checkout(installed, user_directory):
    """Same inputs, same input hash: the wheel's copy of the tree is the checkout's, byte for byte."""
    planned = run(installed, user_directory, "--json", "--dry-run", "bake", "--target", "local")
    assert planned.returncode == 0, planned.stderr
    from_checkout = subprocess.run(
        [str(REPO / ".venv/bin/builder"), "--json", "--dry-run", "bake", "--target", "local"],
        cwd=user_directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert from_checkout.returncode == 0, from_checkout.stderr
    assert json.loads(planned.stdout)["input_hash"] == json.loads(from_checkout.stdout)["input_hash"]


def test_an_aws_dry_run_finds_the_base_ami_through_moto(installed, user_directory, moto):
    ec2 = moto.client("ec2")
    base = ec2.describe_images(Owners=["099720109477"])["Images"]
    env = {"AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    planned = run(installed, user_directory, "--json", "--dry-run", "bake", "--target", "aws", env=env)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["base"] in {image["ImageId"] for image in base}


def test_the_installed_lock_is_never_written_in_place(installed, user_directory):
    refused = run(installed, user_directory, "images", "lock")
    assert refused.returncode == 1 and "--lock FILE" in refused.stderr, refused.stderr


def test_config_init_writes_the_example_the_wheel_carries(installed, tmp_path):
    """No checkout beside the user: the missing-config hint names `builder config init`, which
    writes the commented example from the wheel, and never over an existing file."""
    empty = tmp_path / "new-platform"
    empty.mkdir()
    missing = run(installed, empty, "config", "validate")
    assert missing.returncode == 1 and "`builder config init`" in missing.stderr, missing.stderr
    assert "examples/platform.yaml" not in missing.stderr
    written = run(installed, empty, "config", "init")
    assert written.returncode == 0, written.stderr
    assert (empty / "platform.yaml").read_text() == (REPO / "examples/platform.yaml").read_text()
    assert run(installed, empty, "config", "validate").returncode == 0
    again = run(installed, empty, "config", "init")
    assert again.returncode == 1 and "platform.yaml exists" in again.stderr and "--force" in again.stderr


def test_the_installed_hints_give_the_lock_form_that_works(installed, user_directory):
    added = run(installed, user_directory, "service", "add", "searxng")
    assert added.returncode == 0, added.stderr
    assert "`builder images lock --lock FILE`" in added.stdout
    helped = " ".join(run(installed, user_directory, "images", "lock", "--help").stdout.split())
    assert "the lock builder carries" in helped and "image/images.lock.json" not in helped


def test_the_wheel_puts_no_firstboot_on_the_users_path_and_the_image_launches_the_agent_without_it(installed, tmp_path):
    """The agent runs on the instance only: the user's venv gets `builder` alone. The image's venv
    gets the launcher its units start from image/provision/40-agent.sh (`python -m firstboot`),
    run here against this venv, which holds the same wheel."""
    venv = installed.parent.parent
    assert (venv / "bin/builder").exists() and not (venv / "bin/firstboot").exists()
    script = (REPO / "image/provision/40-agent.sh").read_text()
    [writes] = [line for line in script.splitlines() if line.startswith("printf ") and "bin/firstboot" in line]
    agent = "/opt/ai-platform/agent"
    units = REPO / "image/rootfs/etc/systemd/system"
    for unit in ("ai-platform-firstboot.service", "ai-platform-health.service"):
        assert f"ExecStart={agent}/bin/firstboot " in (units / unit).read_text(), unit  # the launcher written
    subprocess.run(["sh", "-c", writes.replace(agent, str(venv))], check=True, timeout=30)
    (venv / "bin/firstboot").chmod(0o755)
    helped = subprocess.run([str(venv / "bin/firstboot"), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert "usage: firstboot" in helped.stdout
