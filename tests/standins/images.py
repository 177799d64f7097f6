"""Build the stand-in images (see standin.py) and tag each as the reference the lock pins.

The base is Debian 12 minbase with the real PostgreSQL, Redis, NGINX, curl, wget and Python from
Debian's archive (the tools the stacks' healthchecks call), made with mmdebstrap (no docs, man
pages or translations: a smaller layer is a faster pull in the TCG bake) and `docker import`d by
tests/real_images.py, as the real apps' images are. Its tarball is cached, keyed by its recipe;
the per-image layer (the stand-in program, the healthcheck clients and the entrypoint) is a
`docker commit` on top, seconds each.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from real_images import Recipe, imported

from builder.images import Pin

HERE = Path(__file__).parent
PACKAGES = ("python3", "postgresql-15", "redis-server", "nginx-light", "curl", "wget", "ca-certificates")
BASE = Recipe(name="standin-base", packages=PACKAGES, hooks=(), changes=())
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
    # The owner's own services, by the catalogue's templates (builder/service_templates.py).
    "CUSTOM_SEARXNG_IMAGE": "searxng",
}
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
    # n8n's CLI, as far as the stack's post-start uses it.
    "n8n": """#!/bin/sh
[ "$1" = import:credentials ] && [ "${2#--input=}" != "$2" ] ||
    { echo "n8n stand-in: only import:credentials --input=FILE" >&2; exit 2; }
exec /usr/bin/python3 /usr/local/bin/standin n8n-import "${2#--input=}"
""",
}


def _docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, **kwargs)


def base_image(log=print) -> str:
    return imported(BASE, log)


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
                for name in ("node",) + ((role,) if role in ("ollama", "n8n") else ()):
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
