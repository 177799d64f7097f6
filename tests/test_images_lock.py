"""`builder images` and the lock, against a real registry: Debian's docker-registry on loopback.

An image is pushed over the Registry HTTP API (blobs, then an OCI manifest); `builder images lock`
must then write exactly the manifest's sha256 into the lock, through a --registry mirror setting.
The models the config bakes are recorded from an Ollama registry stand-in on loopback (the paths
of registry.ollama.ai, tests/bake_sources.py): each manifest's sha256 and its blobs' bytes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil

import pytest
import requests
from bake_sources import ModelRegistry, Registry, StaticHttp
from moto_server import free_port

from builder import capacity, images
from builder.config.schema import PlatformConfig

DEFAULT_MODELS = PlatformConfig(version=1).ollama.baked
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "1" * 64
RESOLVED = {"from": "https://registry-1.docker.io/v2/library/tiny/manifests/1.0", "at": "2026-01-02T03:04:05Z",
            "media_type": OCI_INDEX}  # fmt: skip


@pytest.fixture
def registry(tmp_path):
    if shutil.which("docker-registry") is None:
        pytest.skip("Debian's docker-registry is not installed (scripts/system-packages.txt has it)")
    running = Registry(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def models():
    """The Ollama registry's paths on loopback, serving the default config's models."""
    running = ModelRegistry(DEFAULT_MODELS)
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


def test_lock_writes_the_digest_the_registry_serves(registry, models, tmp_path, builder):
    digest = registry.push_image("library/tiny", "1.0", "tiny")
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    with pytest.raises(images.LockError, match="no digest"):
        images.render_images_env(images.load_lock(lock))
    result = builder(
        "images", "lock", "--allow-insecure-http", "--lock", str(lock), "--registry", f"docker.io={registry.url}",
        "--registry", f"registry.ollama.ai={models.url}",
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    assert images.load_lock(lock)[0].digest == digest
    env = images.render_images_env(images.load_lock(lock))
    assert f"TINY_IMAGE=docker.io/library/tiny:1.0@{digest}" in env
    # A moved tag is refused, and the lock keeps what it had.
    write_lock(lock, "sha256:" + "0" * 64)
    result = builder(
        "images",
        "lock",
        "--allow-insecure-http",
        "--lock",
        str(lock),
        "--registry",
        f"docker.io={registry.url}",
        "--refresh",
    )
    assert result.code == 1 and "the lock says" in (result.out + result.err)
    assert images.load_lock(lock)[0].digest == "sha256:" + "0" * 64


def push_index(registry, name: str, tag: str, platform_tag: str) -> str:
    """A multi-platform tag as Docker Hub serves one: an OCI index naming the image pushed under
    `platform_tag` (linux/amd64); returns the index's digest."""
    url = f"{registry.url}/v2/{name}/manifests/{platform_tag}"
    manifest = requests.get(url, headers={"Accept": OCI_MANIFEST}, timeout=10)
    manifest.raise_for_status()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest.headers["Docker-Content-Digest"],
                    "size": len(manifest.content),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    put = requests.put(
        f"{registry.url}/v2/{name}/manifests/{tag}", data=index, headers={"Content-Type": OCI_INDEX}, timeout=10
    )
    put.raise_for_status()
    return "sha256:" + hashlib.sha256(index).hexdigest()


def test_lock_records_the_index_digest_and_where_and_when_it_read_it(registry, models, tmp_path, builder):
    """A multi-platform tag: the index's digest (what any platform pulls), not amd64's manifest; the
    entry says which URL answered, when, and what the digest is of. A refresh that confirms it keeps
    that record, so the lock (an input of the bake) changes only when a pin does."""
    platform_digest = registry.push_image("library/tiny", "1.0-amd64", "tiny")
    index_digest = push_index(registry, "library/tiny", "1.0", "1.0-amd64")
    assert index_digest != platform_digest
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    mirror = ["--allow-insecure-http", "--registry", f"docker.io={registry.url}"]
    mirror += ["--registry", f"registry.ollama.ai={models.url}"]
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assert builder("images", "lock", "--lock", str(lock), *mirror).code == 0
    [pin] = images.load_lock(lock)
    assert pin.digest == index_digest
    assert pin.resolved.url == f"{registry.url}/v2/library/tiny/manifests/1.0"
    assert pin.resolved.media_type == OCI_INDEX
    at = datetime.datetime.strptime(pin.resolved.at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert before <= at <= datetime.datetime.now(datetime.timezone.utc)
    assert json.loads(lock.read_text())["images"][0]["resolved"]["from"] == pin.resolved.url
    written = lock.read_bytes()
    assert builder("images", "lock", "--lock", str(lock), *mirror, "--refresh").code == 0
    assert lock.read_bytes() == written
    # A digest pinned by hand (no record) gets one when a refresh confirms it.
    document = json.loads(written)
    del document["images"][0]["resolved"]
    lock.write_text(json.dumps(document))
    assert builder("images", "lock", "--lock", str(lock), *mirror, "--refresh").code == 0
    assert images.load_lock(lock)[0].resolved.url == pin.resolved.url


def test_a_plain_http_registry_needs_the_opt_in_and_changes_nothing_without_it(registry, tmp_path, builder):
    registry.push_image("library/tiny", "1.0", "tiny")
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    before = lock.read_bytes()
    refused = builder("images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry.url}")
    assert refused.code == 1 and "plain http" in refused.err and "--allow-insecure-http" in refused.err, refused.err
    assert lock.read_bytes() == before
    # The config's opt-in does for --registry what the flag does.
    (tmp_path / "platform.yaml").write_text("version: 1\nimage: {mirrors: {allow_insecure_http: true}}\n")
    models = ModelRegistry(DEFAULT_MODELS)
    try:
        allowed = builder(
            "images", "lock", "--lock", str(lock), "--registry", f"docker.io={registry.url}",
            "--registry", f"registry.ollama.ai={models.url}",
        )  # fmt: skip
    finally:
        models.stop()
    assert allowed.code == 0, allowed.err
    assert images.load_lock(lock)[0].digest


def test_a_missing_tag_or_unreachable_registry_changes_nothing(registry, tmp_path, builder):
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    before = lock.read_bytes()
    result = builder(
        "images", "lock", "--allow-insecure-http", "--lock", str(lock), "--registry", f"docker.io={registry.url}"
    )
    assert result.code == 1 and "has no such tag" in (result.out + result.err)
    dead = f"http://127.0.0.1:{free_port()}"
    result = builder("images", "lock", "--allow-insecure-http", "--lock", str(lock), "--registry", f"docker.io={dead}")
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
        ({"resolved": RESOLVED}, "resolved: a record of where the digest came from, but digest is null"),
        ({"digest": DIGEST, "resolved": {**RESOLVED, "at": "yesterday"}}, "resolved.at: must be a UTC time"),
        ({"digest": DIGEST, "resolved": {**RESOLVED, "from": "a mirror"}}, "resolved.from: must be the manifest URL"),
        ({"digest": DIGEST, "resolved": {**RESOLVED, "media_type": "text/html"}}, "resolved.media_type: must be"),
        ({"digest": DIGEST, "resolved": {"from": RESOLVED["from"]}}, "resolved: must be an object with from"),
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


def served_manifest(model_registry, model):
    name, tag = model.rsplit(":", 1)
    raw = model_registry.routes[f"/v2/library/{name}/manifests/{tag}"]
    manifest = json.loads(raw)
    size = sum(blob["size"] for blob in [manifest["config"], *manifest["layers"]])
    return "sha256:" + hashlib.sha256(raw).hexdigest(), size


def test_lock_records_each_baked_models_manifest_digest_and_size(models, tmp_path, builder):
    """The config's models (the embedding model too) from the Ollama registry's paths; the disk check
    then counts their recorded bytes, and the bake plan says so."""
    lock = tmp_path / "images.lock.json"
    write_lock(lock, "sha256:" + "1" * 64)  # the images are resolved: only the models are asked for
    before = lock.read_bytes()
    planned = builder(
        "--dry-run",
        "images",
        "lock",
        "--allow-insecure-http",
        "--lock",
        str(lock),
        "--registry",
        f"registry.ollama.ai={models.url}",
    )
    assert planned.code == 0 and "4 model(s) recorded (dry run: not written)" in planned.out, planned.out
    assert lock.read_bytes() == before  # a dry run writes nothing
    result = builder(
        "--json",
        "images",
        "lock",
        "--allow-insecure-http",
        "--lock",
        str(lock),
        "--registry",
        f"registry.ollama.ai={models.url}",
    )
    assert result.code == 0, result.out + result.err
    recorded = images.load_models(lock)
    assert sorted(recorded) == sorted(DEFAULT_MODELS)
    for model in DEFAULT_MODELS:
        digest, size = served_manifest(models, model)
        assert (recorded[model].digest, recorded[model].bytes) == (digest, size)
    assert {row["model"] for row in json.loads(result.out)} == set(DEFAULT_MODELS)
    # Every reader of the lock reads it as before: its images, and the image's provisioning takes
    # lock["images"] alone (pull-images.py, write-bom.py, image/tests).
    assert [pin.variable for pin in images.load_lock(lock)] == ["TINY_IMAGE"]
    assert json.loads(lock.read_text())["images"][0]["variable"] == "TINY_IMAGE"
    # Recorded sizes are what the disk check counts: none is unknown or estimated any more.
    sizes = {model: pin.bytes for model, pin in recorded.items()}
    _, counted = capacity.image_disk_gb([], DEFAULT_MODELS, sizes)
    assert {size.how for size in counted} == {"recorded"}
    # Nothing new to ask: the registry is not asked again, and the file is unchanged.
    before, asked = lock.read_bytes(), len(models.requests)
    again = builder(
        "images", "lock", "--allow-insecure-http", "--lock", str(lock), "--registry", f"registry.ollama.ai={models.url}"
    )
    assert again.code == 0 and "nothing to resolve" in again.out
    assert lock.read_bytes() == before and len(models.requests) == asked


def test_a_moved_model_or_unreachable_model_registry_changes_nothing(registry, models, tmp_path, builder):
    lock = tmp_path / "images.lock.json"
    write_lock(lock, registry.push_image("library/tiny", "1.0", "tiny"))
    both = [
        "--allow-insecure-http",
        "--registry",
        f"docker.io={registry.url}",
        "--registry",
        f"registry.ollama.ai={models.url}",
    ]
    assert builder("images", "lock", "--lock", str(lock), *both).code == 0
    document = json.loads(lock.read_text())
    document["models"][0]["digest"] = "sha256:" + "0" * 64
    lock.write_text(json.dumps(document))
    before = lock.read_bytes()
    moved = builder("images", "lock", "--lock", str(lock), *both, "--refresh")
    assert moved.code == 1 and "the lock says" in moved.err, moved.err
    assert lock.read_bytes() == before
    del document["models"]
    lock.write_text(json.dumps(document))
    before = lock.read_bytes()
    dead = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "platform.yaml").write_text(
        f"version: 1\nimage: {{mirrors: {{models: '{dead}', allow_insecure_http: true}}}}\n"
    )
    unreachable = builder("images", "lock", "--lock", str(lock))  # image.mirrors.models is asked
    assert unreachable.code == 1 and "image.mirrors.models" in unreachable.err, unreachable.err
    assert "--registry registry.ollama.ai=URL" in unreachable.err
    assert lock.read_bytes() == before


def test_a_model_missing_from_the_registry_is_named(tmp_path):
    empty = StaticHttp({})
    try:
        with pytest.raises(images.LockError, match=r"qwen2\.5:14b: the registry at .* has no such model"):
            images.resolve_model("qwen2.5:14b", empty.url)
    finally:
        empty.stop()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "qwen2.5"}, "model: must be NAME:TAG"),
        ({"digest": "sha256:abc"}, "digest: must be sha256"),
        ({"bytes": 0}, "bytes: must be a positive integer"),
        ({"bytes": "4.7 GB"}, "bytes: must be a positive integer"),
        ({"source": " "}, "source: say where"),
        ({"size": 1}, "unknown field 'size'"),
    ],
)
def test_a_bad_model_entry_is_named(tmp_path, change, message):
    lock = tmp_path / "images.lock.json"
    write_lock(lock)
    document = json.loads(lock.read_text())
    entry = {"model": "qwen2.5:14b", "digest": "sha256:" + "2" * 64, "bytes": 9_000_000_000, "source": "a test"}
    document["models"] = [{**entry, **change}]
    lock.write_text(json.dumps(document))
    with pytest.raises(images.LockError, match=r"models\[0\]: " + message):
        images.load_models(lock)
    assert images.load_lock(lock)  # the images of the lock are read all the same


def test_the_shipped_lock_records_no_model_it_was_not_served():
    """Sizes come only from a registry's manifests: none recorded here has been invented."""
    for pin in images.load_models().values():
        assert "/manifests/" in pin.source
