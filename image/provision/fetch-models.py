"""Put Ollama models on disk in Ollama's layout, fetched from its OCI-style registry (run in the image).

models/manifests/registry.ollama.ai/library/NAME/TAG   the manifest, byte for byte
models/blobs/sha256-<hex>                              every layer and the config, sha256 verified

MODELS_MIRROR (image.mirrors.models) replaces https://registry.ollama.ai and serves the same paths.
"""

import hashlib
import json
import os
import sys
import tempfile
import urllib.request

REGISTRY = "https://registry.ollama.ai"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def fetch(url, accept=None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        return urllib.request.urlopen(request, timeout=60)
    except OSError as exc:
        setting = "image.mirrors.models"
        sys.exit(f"cannot fetch {url}: {exc} (set {setting} to a mirror of {REGISTRY})")


def store_blob(base, name, digest, blobs):
    target = os.path.join(blobs, digest.replace(":", "-"))
    if os.path.exists(target) and _sha256(target) == digest:
        return
    with (
        fetch(f"{base}/v2/{name}/blobs/{digest}") as response,
        tempfile.NamedTemporaryFile(dir=blobs, delete=False) as out,
    ):
        hasher = hashlib.sha256()
        for chunk in iter(lambda: response.read(1 << 20), b""):
            hasher.update(chunk)
            out.write(chunk)
    if "sha256:" + hasher.hexdigest() != digest:
        os.unlink(out.name)
        sys.exit(f"{name} blob {digest}: the registry sent content with digest sha256:{hasher.hexdigest()}")
    os.chmod(out.name, 0o644)
    os.rename(out.name, target)


def _sha256(path):
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def main(models_file, root):
    base = os.environ.get("MODELS_MIRROR", "").rstrip("/") or REGISTRY
    blobs = os.path.join(root, "blobs")
    os.makedirs(blobs, exist_ok=True)
    with open(models_file) as handle:
        wanted = handle.read().splitlines()
    for line in wanted:
        model = line.strip()
        if not model:
            continue
        name, tag = model.rsplit(":", 1)
        name = name if "/" in name else f"library/{name}"
        print(f"fetching model {name}:{tag}", flush=True)
        with fetch(f"{base}/v2/{name}/manifests/{tag}", MANIFEST_TYPE) as response:
            raw = response.read()
        manifest = json.loads(raw)
        for layer in [manifest["config"], *manifest["layers"]]:
            store_blob(base, name, layer["digest"], blobs)
        target = os.path.join(root, "manifests", "registry.ollama.ai", name, tag)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(raw)


if __name__ == "__main__":
    main(*sys.argv[1:])
