"""Build the stand-in images (see standin.py) and tag each as the reference the lock pins.

The base is Debian 12 minbase with the real PostgreSQL, Redis, NGINX, curl, wget and Python from
Debian's archive (the tools the stacks' healthchecks call), made with mmdebstrap (no docs, man
pages or translations: a smaller layer is a faster pull in the TCG bake) and `docker import`d.
Its tarball is cached, keyed by its package list; the per-image layer (the stand-in program, the
healthcheck clients and the entrypoint) is a `docker commit` on top, seconds each.
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
PACKAGES = ("python3", "postgresql-15", "redis-server", "nginx-light", "curl", "wget", "ca-certificates")
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
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
# The healthchecks' own clients, as small shell programs. Under TCG (the chain test's VM) real
# Node.js takes over 10 s to start and Python 1-2 s; the healthchecks of three Node apps every
# 15 s would keep both emulated CPUs busy on their own, so nothing else would start.
CLIENTS = {
    # The real ollama image's healthcheck runs its own client: `ollama list` asks the server's API.
    "ollama": """#!/bin/sh
[ "$1" = list ] || { echo "ollama stand-in: only 'list'" >&2; exit 2; }
exec curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:11434/api/tags
""",
    # The Node apps' healthchecks: node -e "fetch('URL').then(r => process.exit(r.ok ? 0 : 1), ...)".
    # Any other script is refused loudly, so a changed healthcheck shows up instead of passing.
    "node": """#!/bin/sh
[ "$1" = -e ] || { echo "node stand-in: only -e SCRIPT" >&2; exit 2; }
url=$(printf '%s' "$2" | sed -n "s/^fetch('\\([^']*\\)').then(r => process.exit(r.ok ? 0 : 1).*/\\1/p")
[ -n "$url" ] || { echo "node stand-in: not a fetch healthcheck: $2" >&2; exit 2; }
exec curl -fsSL -o /dev/null --max-time 25 "$url"
""",
}


def _docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, **kwargs)


def base_image(log=print) -> str:
    key = hashlib.sha256(("\n".join(PACKAGES + EXCLUDED) + MIRROR).encode()).hexdigest()[:12]
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
                *(f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED),
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
        for name, program in CLIENTS.items():
            (Path(work) / name).write_text(program)
            (Path(work) / name).chmod(0o755)
        for pin in pins:
            role = ROLES[pin.variable]
            container = _docker("create", base, "/bin/true").stdout.strip()
            try:
                _docker("cp", str(HERE / "standin.py"), f"{container}:/usr/local/bin/standin")
                for name in ("node",) + (("ollama",) if role == "ollama" else ()):
                    _docker("cp", str(Path(work) / name), f"{container}:/usr/local/bin/{name}")
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
