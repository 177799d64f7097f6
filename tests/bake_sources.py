"""Sources a bake fetches from, run on loopback: a container registry and an Ollama registry stand-in.

- The container registry is the real one, Debian's docker-registry. `push_image` puts a one-file
  image in it over the Registry HTTP API (for the lock's own tests); `stand_in_lock` pushes the
  runnable stand-ins of tests/standins (one shared base layer, pulled once by the guest), so the
  baked image's stacks really start. Their digests are real: a lock made from them is what the bake
  verifies.
- The Ollama registry (registry.ollama.ai) cannot be reached from here: `ModelRegistry` serves the
  same paths (/v2/NAME/manifests/TAG, /v2/NAME/blobs/DIGEST) for small made-up models, through
  `StaticHttp`, which any test can use to serve fixed bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from moto_server import free_port

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: one static binary, runs in an empty image
PLACEHOLDER = " (a one-file placeholder: it cannot run)"  # image/tests/test_litellm_offline.py reads it


class Registry:
    """Debian's docker-registry on 127.0.0.1, storing under `root`."""

    def __init__(self, root: Path):
        self.port = free_port()
        config = root / "registry.yml"
        config.write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'store'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\nlog:\n  level: error\n"
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def _blob(self, name: str, blob: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        upload = requests.post(f"{self.url}/v2/{name}/blobs/uploads/", timeout=10)
        location = upload.headers["Location"]
        location = location if location.startswith("http") else self.url + location
        separator = "&" if "?" in location else "?"
        requests.put(f"{location}{separator}digest={digest}", data=blob, timeout=30).raise_for_status()
        return digest

    def push_local(self, local: str, name: str, tag: str) -> str:
        """`docker push` of the local image `local` as NAME:TAG (Docker trusts plain HTTP on loopback);
        returns the manifest digest the registry serves."""
        target = f"127.0.0.1:{self.port}/{name}:{tag}"
        subprocess.run(["docker", "tag", local, target], check=True, capture_output=True)
        try:
            subprocess.run(["docker", "push", "--quiet", target], check=True, capture_output=True, timeout=900)
        finally:
            subprocess.run(["docker", "rmi", target], capture_output=True)
        response = requests.head(
            f"{self.url}/v2/{name}/manifests/{tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def push_image(self, name: str, tag: str, marker: str, runnable: bool = False) -> str:
        """A one-layer image holding /standin (its content: `marker`); returns the manifest digest.
        `runnable` adds a static busybox as /bin/sh and an `nginx` that only answers `-v`: enough for
        the bake's smoke run of one container, 2 MB instead of the stand-ins' shared base."""
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w") as archive:
            data = f"stand-in for {marker}\n".encode()
            info = tarfile.TarInfo("standin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            if runnable:
                archive.add(BUSYBOX, "bin/busybox")
                shell = tarfile.TarInfo("bin/sh")
                shell.type, shell.linkname = tarfile.SYMTYPE, "busybox"
                archive.addfile(shell)
                script = b"#!/bin/sh\necho 'nginx version: stand-in'\n"
                nginx = tarfile.TarInfo("usr/sbin/nginx")
                nginx.size, nginx.mode = len(script), 0o755
                archive.addfile(nginx, io.BytesIO(script))
        layer_bytes = layer.getvalue()
        diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/standin"], "Env": ["PATH=/usr/sbin:/bin"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode()
        config_digest = self._blob(name, config)
        layer_digest = self._blob(name, layer_bytes)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(layer_bytes),
                    }
                ],
            }
        ).encode()
        response = requests.put(
            f"{self.url}/v2/{name}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            timeout=30,
        )
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]


def stand_in_lock(registry: Registry, source_lock: Path, destination: Path, runnable: bool = True) -> Path:
    """The lock's images pushed to `registry`; a lock with their real digests, as it serves them.
    `runnable`: the stand-ins of tests/standins, which run the stacks; else one-file images (a bake
    that never starts the stacks), the edge's a tiny runnable one for the bake's smoke run."""
    from standins.images import build_standins

    from builder.images import load_lock

    document = json.loads(source_lock.read_text())
    if runnable:
        build_standins(load_lock(source_lock))
    for pin in document["images"]:
        path = pin["repository"].split("/", 1)[1]
        if runnable:
            pin["digest"] = registry.push_local(f"{pin['repository']}:{pin['tag']}", path, pin["tag"])
        else:
            smoke = pin["variable"] == "NGINX_IMAGE"
            pin["digest"] = registry.push_image(path, pin["tag"], pin["repository"], runnable=smoke)
        runs = runnable or pin["variable"] == "NGINX_IMAGE"
        # The image suite skips what needs an image to run (its LiteLLM check) on a placeholder.
        pin["source"] = f"stand-in pushed by the test to a loopback registry{'' if runs else PLACEHOLDER}"
    destination.write_text(json.dumps(document, indent=2))
    return destination


class StaticHttp:
    """An HTTP server on 127.0.0.1 answering GET for fixed paths with fixed bytes (404 otherwise);
    `requests` lists the paths asked for."""

    def __init__(self, routes: dict[str, bytes]):
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()


class ModelRegistry(StaticHttp):
    """Made-up Ollama models at the Ollama registry's paths: /v2/library/NAME/manifests/TAG and
    /v2/library/NAME/blobs/DIGEST."""

    def __init__(self, models: list[str]):
        routes = {}
        for model in models:
            name, tag = model.rsplit(":", 1)
            weights = hashlib.sha256(model.encode()).digest() * 512  # 16 KiB of "weights"
            config = json.dumps({"model_format": "gguf", "model": model}).encode()
            layers = []
            for media_type, blob in [("application/vnd.ollama.image.model", weights)]:
                digest = "sha256:" + hashlib.sha256(blob).hexdigest()
                routes[f"/v2/library/{name}/blobs/{digest}"] = blob
                layers.append({"mediaType": media_type, "digest": digest, "size": len(blob)})
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            routes[f"/v2/library/{name}/blobs/{config_digest}"] = config
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": layers,
            }
            routes[f"/v2/library/{name}/manifests/{tag}"] = json.dumps(manifest).encode()
        super().__init__(routes)
