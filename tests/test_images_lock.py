"""`builder images` and the lock, against a real registry: Debian's docker-registry on loopback.

An image is pushed over the Registry HTTP API (blobs, then an OCI manifest); `builder images lock`
must then write exactly the manifest's sha256 into the lock, through a --registry mirror setting.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time

import pytest
import requests

from builder import images


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed (scripts/system-packages.txt has it)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'store'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{url}/v2/", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)


def push(url: str, name: str, tag: str) -> str:
    """Push a one-layer OCI image; returns the manifest's digest as the registry names it."""
    descriptors = []
    for media_type, blob in [
        ("application/vnd.oci.image.config.v1+json", b'{"architecture":"amd64","os":"linux"}'),
        ("application/vnd.oci.image.layer.v1.tar", b"\0" * 1024),
    ]:
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        upload = requests.post(f"{url}/v2/{name}/blobs/uploads/", timeout=10)
        location = upload.headers["Location"]
        location = location if location.startswith("http") else url + location
        separator = "&" if "?" in location else "?"
        requests.put(f"{location}{separator}digest={digest}", data=blob, timeout=10).raise_for_status()
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    response = requests.put(
        f"{url}/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    response.raise_for_status()
    assert response.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    return response.headers["Docker-Content-Digest"]


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
    digest = push(registry, "library/tiny", "1.0")
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    with pytest.raises(images.LockError, match="no digest"):
        images.render_images_env(images.load_lock(lock))
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry}")
    assert result.code == 0, result.out + result.err
    assert images.load_lock(lock)[0].digest == digest
    env = images.render_images_env(images.load_lock(lock))
    assert f"TINY_IMAGE=docker.io/library/tiny:1.0@{digest}" in env
    # A moved tag is refused, and the lock keeps what it had.
    write_lock(lock, "sha256:" + "0" * 64)
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry}", "--refresh")
    assert result.code == 1 and "the lock says" in (result.out + result.err)
    assert images.load_lock(lock)[0].digest == "sha256:" + "0" * 64


def test_a_missing_tag_or_unreachable_registry_changes_nothing(registry, tmp_path, builder):
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    before = lock.read_bytes()
    result = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry}")
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
