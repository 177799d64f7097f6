"""Build the stand-in images (see standin.py) and tag each as the reference the lock pins.

The base is Debian 12 minbase with the real PostgreSQL, Redis, NGINX, curl, wget, Python and
Node.js from Debian's archive (the tools the stacks' healthchecks call), made with mmdebstrap and
`docker import`d. Its tarball is cached, keyed by its package list; the per-image layer (the
stand-in program and the entrypoint) is a `docker commit` on top, seconds each.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from builder.images import Pin

HERE = Path(__file__).parent
CACHE = Path(os.environ.get("AI_PLATFORM_TEST_CACHE", str(Path.home() / ".cache" / "ai-platform-builder")))
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "postgresql-15", "redis-server", "nginx-light", "curl", "wget", "nodejs", "ca-certificates")
ROLES = {  # lock variable -> stand-in role
    "POSTGRES_IMAGE": "postgres",
    "REDIS_IMAGE": "redis",
    "NGINX_IMAGE": "nginx",
    "WEAVIATE_IMAGE": "weaviate",
    "OLLAMA_IMAGE": "ollama",
    "LITELLM_IMAGE": "litellm",
    "ANYTHINGLLM_IMAGE": "anythingllm",
    "OPENCLAW_IMAGE": "clawdbot",
    "N8N_IMAGE": "n8n",
    "SIGNAL_API_IMAGE": "signal-api",
    "DIFY_API_IMAGE": "dify-api",
    "DIFY_WEB_IMAGE": "dify-web",
    "DIFY_SANDBOX_IMAGE": "dify-sandbox",
    "DIFY_PLUGIN_DAEMON_IMAGE": "dify-plugin-daemon",
    "SQUID_IMAGE": "squid",
}
# The real ollama image's healthcheck runs its own client: `ollama list`.
OLLAMA_CLIENT = """#!/usr/bin/python3
import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:11434/api/tags", timeout=5)
sys.exit(0)
"""


def _docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, **kwargs)


def base_image(log=print) -> str:
    key = hashlib.sha256(("\n".join(PACKAGES) + MIRROR).encode()).hexdigest()[:12]
    tag = f"ai-platform-standin-base:{key}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    tarball = CACHE / "images" / f"standin-base-{key}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        log(f"stand-in base: building {tarball} with mmdebstrap")
        partial = tarball.with_name(tarball.stem + ".partial.tar")  # mmdebstrap picks the format by suffix
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--mode=root",
                f"--include={','.join(PACKAGES)}",
                "bookworm",
                str(partial),
                MIRROR,
            ],
            check=True,
            capture_output=True,
        )
        partial.rename(tarball)
    with tarball.open("rb") as stream:
        subprocess.run(["docker", "import", "-", tag], stdin=stream, check=True, capture_output=True)
    return tag


def build_standins(pins: list[Pin], log=print) -> dict[str, str]:
    """Tag a stand-in as every pinned reference; returns reference -> role."""
    base = base_image(log)
    built = {}
    with tempfile.TemporaryDirectory() as work:
        client = Path(work) / "ollama"
        client.write_text(OLLAMA_CLIENT)
        client.chmod(0o755)
        for pin in pins:
            role = ROLES[pin.variable]
            container = _docker("create", base, "/bin/true").stdout.strip()
            try:
                _docker("cp", str(HERE / "standin.py"), f"{container}:/usr/local/bin/standin")
                if role == "ollama":
                    _docker("cp", str(client), f"{container}:/usr/local/bin/ollama")
                _docker(
                    "commit",
                    "--change",
                    f'ENTRYPOINT ["/usr/bin/python3", "/usr/local/bin/standin", "{role}"]',
                    "--change",
                    'CMD [""]',
                    container,
                    pin.reference(with_digest=False),
                )
            finally:
                _docker("rm", container)
            built[pin.reference(with_digest=False)] = role
    return built
