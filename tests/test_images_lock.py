"""`builder images` and the lock, against a real registry: Debian's docker-registry on loopback.

An image is pushed over the Registry HTTP API (blobs, then an OCI manifest); `builder images lock`
must then write exactly the manifest's sha256 into the lock, through a --registry mirror setting.
"""

from __future__ import annotations

import json
import shutil

import pytest
from bake_sources import Registry
from moto_server import free_port

from builder import images


@pytest.fixture
def registry(tmp_path):
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed (scripts/system-packages.txt has it)")
    running = Registry(tmp_path)
    yield running
    running.stop()


def write_lock(path, digest=None):
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "images": [
                    {
                        "variable": "TINY_IMAGE",
                        "repository": "docker.io/library/tiny",
                        "tag": "1.0",
                        "digest": digest,
                        "source": "pushed by this test",
                    }
                ],
            }
        )
    )


def test_lock_writes_the_digest_the_registry_serves(registry, tmp_path, builder):
    digest = registry.push_image("library/tiny", "1.0", "tiny")
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    with pytest.raises(images.LockError, match="no digest"):
        images.render_images_env(images.load_lock(lock))
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry.url}")
    assert result.code == 0, result.out + result.err
    assert images.load_lock(lock)[0].digest == digest
    env = images.render_images_env(images.load_lock(lock))
    assert f"TINY_IMAGE=docker.io/library/tiny:1.0@{digest}" in env
    # A moved tag is refused, and the lock keeps what it had.
    write_lock(lock, "sha256:" + "0" * 64)
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry.url}", "--refresh")
    assert result.code == 1 and "the lock says" in (result.out + result.err)
    assert images.load_lock(lock)[0].digest == "sha256:" + "0" * 64


def test_a_missing_tag_or_unreachable_registry_changes_nothing(registry, tmp_path, builder):
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    before = lock.read_bytes()
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry.url}")
    assert result.code == 1 and "has no such tag" in (result.out + result.err)
    dead = f"http://127.0.0.1:{free_port()}"
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={dead}")
    assert result.code == 1
    assert "cannot be reached" in (result.out + result.err) and "--registry docker.io=URL" in (result.out + result.err)
    assert lock.read_bytes() == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tag": "latest"}, "'latest' is not a pin"),
        ({"digest": "sha256:abc"}, "digest: must be sha256"),
        ({"source": ""}, "source: say where"),
        ({"repository": "postgres"}, "repository: must be REGISTRY/PATH"),
    ],
)
def test_a_bad_lock_entry_is_named(tmp_path, change, message):
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    document = json.loads(lock.read_text())
    document["images"][0].update(change)
    lock.write_text(json.dumps(document))
    with pytest.raises(images.LockError, match=message.replace("(", r"\(")):
        images.load_lock(lock)


def test_the_shipped_lock_is_valid_and_never_invents_a_digest():
    pins = images.load_lock()
    assert all(pin.source for pin in pins)
    assert images.unresolved(pins), "every digest resolved: then drop this check and bake without --allow-unresolved"
