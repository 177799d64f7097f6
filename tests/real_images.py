"""Local Docker images of the apps' real software, where it installs on these machines, tagged as the
references the lock pins, so that the stacks run them in place of the stand-ins.

No registry is reachable here, so the upstream images cannot be pulled; their software can: LiteLLM
from PyPI, OpenClaw and n8n from npm (on a real Node 24 from npm's `node` package). Each image is
laid out as its upstream image is (user, HOME, working directory, entrypoint and command, the tools
its healthcheck calls), as read from the upstream Dockerfiles at the pinned tags (each recipe names
its source). The root file system is Debian 12 from mmdebstrap; the app is installed into it by a
customize hook (pip in a chroot, or a cached npm install copied in). The result is a tarball cached
under the test cache, keyed by its recipe, and `docker import`ed with the recipe's image settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("AI_PLATFORM_TEST_CACHE", str(Path.home() / ".cache" / "ai-platform-builder")))
MIRROR = "http://deb.debian.org/debian"
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
# The host's CA bundle, for pip in the chroot: this machine reaches PyPI through its own TLS setup.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# A command in the new root sees none of the host's environment (its CA and pip settings name host
# paths that do not exist there, and then pip trusts nothing).
IN_ROOT = 'chroot "$1" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root'


@dataclass(frozen=True)
class Recipe:
    name: str
    packages: tuple[str, ...]
    hooks: tuple[str, ...]  # mmdebstrap --customize-hook commands: "$1" is the new root
    changes: tuple[str, ...]  # Dockerfile instructions `docker import --change` applies
    inputs: dict[str, str] = field(default_factory=dict)  # what the hooks copy in, by name: in the key

    def key(self) -> str:
        text = json.dumps([self.name, self.packages, self.hooks, self.changes, self.inputs, EXCLUDED, MIRROR])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


LITELLM_VERSION = "1.83.10"  # the PyPI release behind the pinned image v1.83.10-stable

# Upstream's image (BerriAI/litellm Dockerfile): runs as root in /app, ENTRYPOINT
# docker/prod_entrypoint.sh, which execs `litellm "$@"`; CMD ["--port", "4000"]; python3 on the PATH
# (the compose healthcheck calls it). Here the proxy's Python packages live in a venv on the PATH.
LITELLM = Recipe(
    name=f"litellm-{LITELLM_VERSION}",
    packages=("python3", "python3-venv", "ca-certificates", "tzdata", "openssl", "bash"),
    hooks=(
        f'cp {HOST_CA} "$1/tmp/host-ca.crt"',
        f"{IN_ROOT} python3 -m venv /app/venv",
        f"{IN_ROOT} PIP_CERT=/tmp/host-ca.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 "
        f"/app/venv/bin/pip install --quiet 'litellm[proxy]=={LITELLM_VERSION}'",
        'rm "$1/tmp/host-ca.crt"',
    ),
    changes=(
        "WORKDIR /app",
        "ENV PATH=/app/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'ENTRYPOINT ["litellm"]',
        'CMD ["--port", "4000"]',
        "EXPOSE 4000/tcp",
    ),
)


def node_app_hooks(node: Path, modules: Path, package: str, home: str) -> tuple[str, ...]:
    """What both Node apps' images share: the node binary, user node (uid 1000, as node's images
    make it), and the npm install's `package` as `home`, with the dependencies npm hoisted beside it
    as its own node_modules."""
    return (
        f'install -m 0755 {node} "$1/usr/local/bin/node"',
        f"{IN_ROOT} groupadd --gid 1000 node",
        f"{IN_ROOT} useradd --uid 1000 --gid node --create-home --shell /bin/bash node",
        f'mkdir -p "$1{home}/node_modules" && cp -a {modules}/{package}/. "$1{home}/"',
        f'cd {modules} && for m in * .bin; do [ "$m" = {package} ] || cp -a "$m" "$1{home}/node_modules/"; done',
    )


def openclaw_recipe() -> Recipe:
    """OpenClaw's gateway on Node 24, laid out as its image (the root Dockerfile, as the package's own
    docs/install/docker*.md describe it: node:24-bookworm-slim, tini as PID 1, user node (uid 1000)
    in /app, HOME /home/node, CMD `node openclaw.mjs gateway`, a /usr/local/bin/openclaw link)."""
    from real_apps import NODE_VERSION, OPENCLAW_VERSION, node24_bin, npm_install

    node = (node24_bin() / "node").resolve()
    package = npm_install(f"openclaw-{OPENCLAW_VERSION}", f"openclaw@{OPENCLAW_VERSION}", path=[node24_bin()])
    modules = package / "node_modules"
    return Recipe(
        name=f"openclaw-{OPENCLAW_VERSION}",
        # The runtime packages of upstream's image.
        packages=(
            "ca-certificates",
            "curl",
            "git",
            "hostname",
            "libgomp1",
            "lsof",
            "openssh-client",
            "openssl",
            "procps",
            "python3",
            "tini",
        ),
        hooks=(
            *node_app_hooks(node, modules, "openclaw", "/app"),
            'ln -s /app/openclaw.mjs "$1/usr/local/bin/openclaw"',
            'install -d -m 0700 "$1/home/node/.openclaw" && install -d "$1/home/node/.openclaw/workspace"',
            f"{IN_ROOT} chown -R node:node /app /home/node",
        ),
        changes=(
            "USER node",
            "WORKDIR /app",
            "ENV HOME=/home/node NODE_ENV=production",
            'ENTRYPOINT ["tini", "-s", "--"]',
            'CMD ["node", "openclaw.mjs", "gateway"]',
        ),
        inputs={"node": NODE_VERSION, "openclaw": OPENCLAW_VERSION},
    )


def n8n_recipe() -> Recipe:
    """n8n on Node 24, laid out as its image (n8n-io/n8n docker/images/n8n/Dockerfile and
    n8n-base/Dockerfile): n8n in /usr/local/lib/node_modules/n8n with a /usr/local/bin/n8n link, user
    node (uid 1000), WORKDIR and HOME /home/node with /home/node/.n8n, NODE_ENV=production,
    SHELL=/bin/sh, tini as PID 1 running n8n (upstream's /docker-entrypoint.sh execs `n8n` with the
    container's arguments; its custom-certificate step has nothing to do here). Node 24: n8n 2.37.10's
    package.json asks for `node >= 24.0.0`.

    npm runs no install scripts here: @confluentinc/kafka-javascript's builds librdkafka from a
    download that is out of reach, and stops the whole install. The native modules n8n loads at start
    (isolated-vm for expressions, msgpackr, @parcel/watcher) ship prebuilt binaries for Node 24 on
    glibc, which need no script. So the Kafka nodes cannot run in this image, and neither can SQLite
    (upstream rebuilds sqlite3; the platform runs n8n on Postgres). Debian's graphicsmagick (the Edit
    Image node's) is left out."""
    from real_apps import N8N_VERSION, NODE_VERSION, node24_bin, npm_install

    node = (node24_bin() / "node").resolve()
    package = npm_install(
        f"n8n-{N8N_VERSION}", f"n8n@{N8N_VERSION}", path=[node24_bin()], timeout=1800, ignore_scripts=True
    )
    modules = package / "node_modules"
    home = "/usr/local/lib/node_modules/n8n"
    return Recipe(
        name=f"n8n-{N8N_VERSION}",
        # n8n-base's runtime packages, as Debian names them.
        packages=("ca-certificates", "git", "openssh-client", "openssl", "tini", "tzdata"),
        hooks=(
            *node_app_hooks(node, modules, "n8n", home),
            f'ln -s {home}/bin/n8n "$1/usr/local/bin/n8n"',
            'install -d "$1/home/node/.n8n"',
            f"{IN_ROOT} chown -R node:node /home/node",
        ),
        changes=(
            "USER node",
            "WORKDIR /home/node",
            "ENV HOME=/home/node NODE_ENV=production SHELL=/bin/sh",
            'ENTRYPOINT ["tini", "--", "n8n"]',
            "EXPOSE 5678/tcp",
        ),
        inputs={"node": NODE_VERSION, "n8n": N8N_VERSION, "npm": "--ignore-scripts"},
    )


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def rootfs_tarball(recipe: Recipe, log=print) -> Path:
    """The recipe's root file system as a tarball, made once (renamed into place when complete)."""
    from real_apps import cache_lock

    with cache_lock(f"image-{recipe.name}-{recipe.key()}"):
        return _rootfs_tarball(recipe, log)


def _rootfs_tarball(recipe: Recipe, log) -> Path:
    tarball = CACHE / "images" / f"{recipe.name}-{recipe.key()}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    log(f"real image {recipe.name}: building {tarball} (mmdebstrap and the app's own installer)")
    partial = tarball.with_name(tarball.stem + ".partial.tar")  # mmdebstrap picks the format by suffix
    command = ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={','.join(recipe.packages)}"]
    command += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDED]
    command += [f"--customize-hook={hook}" for hook in recipe.hooks]
    command += ["bookworm", str(partial), MIRROR]
    try:
        _run(command, timeout=1800)
    except subprocess.CalledProcessError as error:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"real image {recipe.name}: mmdebstrap failed:\n{error.stderr[-4000:]}") from None
    partial.rename(tarball)
    return tarball


def imported(recipe: Recipe, log=print) -> str:
    """The recipe's image in the local Docker, imported once from its cached tarball; its tag."""
    tag = f"ai-platform-test-{recipe.name}:{recipe.key()}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
        tarball = rootfs_tarball(recipe, log)
        changes = [argument for change in recipe.changes for argument in ("--change", change)]
        with tarball.open("rb") as stream:
            subprocess.run(["docker", "import", *changes, "-", tag], stdin=stream, check=True, capture_output=True)
    return tag


def build(recipe: Recipe, reference: str, log=print) -> str:
    """Tag the recipe's image as `reference` (the lock's reference without its digest)."""
    tag = imported(recipe, log)
    _run(["docker", "tag", tag, reference])
    return tag


# The lock variables whose stand-ins give way to the real software, and why the others stay.
REAL = {"LITELLM_IMAGE": lambda: LITELLM, "OPENCLAW_IMAGE": openclaw_recipe, "N8N_IMAGE": n8n_recipe}
STANDIN_ONLY = {
    "OLLAMA_IMAGE": "a Go server with GPU runtimes; not on PyPI, npm or Debian",
    "WEAVIATE_IMAGE": "a Go server; not on PyPI, npm or Debian",
    "ANYTHINGLLM_IMAGE": "its server and collector are not published to npm",
    "DIFY_API_IMAGE": "not published to PyPI; its images bundle the source tree",
    "DIFY_WEB_IMAGE": "not published to npm",
    "DIFY_SANDBOX_IMAGE": "a Go binary with a seccomp sandbox; not published",
    "DIFY_PLUGIN_DAEMON_IMAGE": "a Go binary; not published",
    "SIGNAL_API_IMAGE": "signal-cli (Java) and its REST API (Go) are not on Debian, PyPI or npm",
    "SQUID_IMAGE": "Dify's SSRF proxy; Debian's squid would do, not yet built",
}
# What the real LiteLLM cannot do here: use its database. Its Prisma client needs query and schema
# engines from binaries.prisma.sh, which no reachable registry carries (PyPI's prisma downloads
# them at `prisma generate`). So the stack test runs it without DATABASE_URL; the stand-in's tests
# and the chain test cover the database and its password.
LITELLM_WITHOUT_DATABASE = "services:\n  litellm:\n    environment:\n      DATABASE_URL: null\n"


def use_real_apps(pins, log=print) -> dict[str, str]:
    """Tag the real images as their pinned references; returns variable -> built image."""
    built = {}
    for pin in pins:
        if pin.variable in REAL:
            built[pin.variable] = build(REAL[pin.variable](), pin.reference(with_digest=False), log)
    return built
