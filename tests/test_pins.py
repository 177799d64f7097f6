"""Every pin checkable: the lock's policy as the bake applies it, plain-http mirrors, Packer's plugins.

Unit-level and in-process (`builder` through its entry point, Packer's version answered by a
stand-in `find_packer`, as tests/test_bake_plan.py does): no bake runs. The configs the bake tests
use (tests/local_bake.py, tests/test_bake_aws.py) are planned here with `--dry-run`, since those
tests are too long to run for a change of the config's rules.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO
from local_bake import platform_yaml

from builder.bake import template
from builder.config.loader import ConfigError, load_config

CHECKED = ("registry", "models", "wheels", "tailscale_apt")


@pytest.fixture
def packer_166(monkeypatch):
    """The plan asks Packer its version; Debian's 1.6.6 answers (no plugin is fetched at plan time)."""
    monkeypatch.setattr(template, "find_packer", lambda binary="packer": template.PackerTool(binary, (1, 6, 6)))


@pytest.mark.parametrize("field", CHECKED)
def test_a_plain_http_mirror_is_refused_naming_its_field_unless_opted_into(tmp_path, field):
    url = "http://mirror.internal:5000" if field != "tailscale_apt" else "http://mirror.internal/tailscale"
    config = tmp_path / "platform.yaml"
    config.write_text(f"version: 1\nimage:\n  mirrors:\n    {field}: {url}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config, environ={})
    message = str(refused.value)
    assert f"image.mirrors.{field}" in message and "allow_insecure_http" in message, message
    config.write_text(f"version: 1\nimage:\n  mirrors:\n    {field}: {url}\n    allow_insecure_http: true\n")
    assert getattr(load_config(config, environ={}).config.image.mirrors, field) == url
    config.write_text(f"version: 1\nimage:\n  mirrors:\n    {field}: {url.replace('http:', 'https:')}\n")
    assert load_config(config, environ={}).config  # https needs nothing


def test_apt_and_rclone_mirrors_may_be_plain_http_their_bytes_are_checked_anyway(tmp_path):
    """apt checks each archive against the base's keyring, 45-rclone.sh the zip against its pinned sha256."""
    config = tmp_path / "platform.yaml"
    config.write_text(
        "version: 1\nimage:\n  mirrors:\n    apt: http://apt.internal/debian\n    rclone: http://r.internal\n"
    )
    mirrors = load_config(config, environ={}).config.image.mirrors
    assert (mirrors.apt, mirrors.rclone, mirrors.allow_insecure_http) == (
        "http://apt.internal/debian",
        "http://r.internal",
        False,
    )


def test_the_local_bake_tests_config_still_plans(builder, tmp_path, packer_166):
    """tests/local_bake.py's config (plain-http loopback registries, opted into) plans as it is."""
    (tmp_path / "platform.yaml").write_text(platform_yaml(tmp_path, 5000, 5001))
    planned = builder("--json", "bake", "--target", "local", "--dry-run")
    assert planned.code == 0, planned.err
    assert json.loads(planned.out)["dry_run"] is True
    without = platform_yaml(tmp_path, 5000, 5001).replace("    allow_insecure_http: true\n", "")
    (tmp_path / "platform.yaml").write_text(without)
    refused = builder("bake", "--target", "local", "--dry-run")
    assert refused.code == 1 and "image.mirrors.registry" in refused.err, refused.err


def test_the_aws_bake_tests_config_loads(tmp_path):
    """tests/test_bake_aws.py writes its config inline: its mirrors section, as it is there, loads
    (its plan needs the test's moto and build VM: the rules a dry run adds are the config's)."""
    source = (REPO / "tests/test_bake_aws.py").read_text()
    mirrors = re.search(r'  mirrors:\\n"\n(.*?)f"local:', source, re.S)
    assert mirrors, "test_bake_aws.py no longer writes its mirrors as this test reads them"
    lines = re.findall(r'^\s*f?"(    [^"]*)\\n"', mirrors.group(1), re.M)
    values = {"registry.port": "5000", "models.port": "5001", "wheels": str(tmp_path)}
    body = "".join(re.sub(r"\{([a-z.]+)\}", lambda m: values[m.group(1)], line) + "\n" for line in lines)
    config = tmp_path / "platform.yaml"
    config.write_text("version: 1\nimage:\n  mirrors:\n" + body)
    mirrors = load_config(config, environ={}).config.image.mirrors
    assert mirrors.registry == "http://10.0.2.2:5000" and mirrors.allow_insecure_http


def resolved_lock(path, digest="sha256:" + "1" * 64) -> None:
    """The shipped lock with every digest filled in (made up: the bake is refused before any pull)."""
    document = json.loads((REPO / "image/images.lock.json").read_text())
    for entry in document["images"]:
        entry["digest"] = entry["digest"] or digest
    path.write_text(json.dumps(document))


def test_a_bake_refuses_a_pin_without_a_digest_the_owners_services_included(builder, tmp_path, packer_166):
    """Every lock entry resolved, but the owner's service (services.custom) names its image by tag
    and the lock has not resolved it: the bake stops before doing anything, naming it."""
    lock = tmp_path / "images.lock.json"
    resolved_lock(lock)
    state = tmp_path / "state"
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nlocal: {{state_dir: {state}}}\nservices:\n  custom:\n    board:\n"
        "      image: docker.io/example/site:1.0\n      port: 8080\n      path: /board/\n"
        "      healthcheck: [CMD, 'true']\n"
    )
    refused = builder("bake", "--target", "local", "--lock", str(lock), "--packer", "/nonexistent")
    assert refused.code == 1, refused.err
    assert "1 image(s)" in refused.err and "docker.io/example/site:1.0" in refused.err
    assert "--allow-unresolved" in refused.err and "Nothing was done" in refused.err
    assert not (state / "ai-platform" / "images").exists() or not any((state / "ai-platform" / "images").iterdir())
    plan = json.loads(builder("--json", "bake", "--target", "local", "--lock", str(lock), "--dry-run").out)
    assert plan["unresolved_images"] == ["docker.io/example/site:1.0"]
    # Its digest in the config is a pin: then nothing is missing.
    config = (tmp_path / "platform.yaml").read_text()
    pinned = config.replace("site:1.0", "site:1.0@sha256:" + "2" * 64)
    (tmp_path / "platform.yaml").write_text(pinned)
    plan = json.loads(builder("--json", "bake", "--target", "local", "--lock", str(lock), "--dry-run").out)
    assert plan["unresolved_images"] == []


def test_packers_plugins_are_pinned_to_exact_versions():
    """A range (">= 1.2.2") let `packer init` take whatever was newest: each plugin names one version."""
    text = template.TEMPLATE.read_text()
    block = re.search(r"required_plugins \{(.*?)\n  \}", text, re.S)
    assert block, "packer.pkr.hcl has no required_plugins block"
    versions = dict(re.findall(r'source\s*=\s*"github.com/hashicorp/(\w+)"\s*\n\s*version\s*=\s*"([^"]*)"', block[1]))
    assert set(versions) == {"amazon", "qemu"}
    for plugin, version in versions.items():
        assert re.fullmatch(r"= \d+\.\d+\.\d+", version), f"{plugin}: {version!r} is not one exact version"
