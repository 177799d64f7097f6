"""The apps' real software where it installs on these machines (from npm), cached between runs.

Each install goes into its own folder under the test cache, keyed by what it installs, and is made
complete or not at all (a folder is renamed into place only after its install succeeded). npm's own
cache makes a second machine's install quicker; nothing is fetched when the folder is there. Two
processes that need the same entry (CI's prewarm, tests/prewarm.py, and a test) take turns on a
lock: the second finds it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("AI_PLATFORM_TEST_CACHE", str(Path.home() / ".cache" / "ai-platform-builder")))
NODE_VERSION = "24.21.0"  # OpenClaw needs Node >= 24.16; npm's `node` package carries the real binary
OPENCLAW_VERSION = "2026.9.6"  # the newest npm release not newer than the image's pin (2026.9.8)
N8N_VERSION = "2.37.10"  # the image's pin, published to npm as it is


@contextlib.contextmanager
def cache_lock(name: str):
    """Held while one cache entry is made: another process waits, then finds it there."""
    path = CACHE / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def npm_install(
    name: str, spec: str, path: list[Path] | None = None, timeout: float = 900, ignore_scripts: bool = False
) -> Path:
    """`npm install SPEC` into CACHE/npm/NAME (made once); returns that folder. `ignore_scripts`: no
    package's install script runs (name the entry for it: the folder differs)."""
    with cache_lock(f"npm-{name}"):
        return _npm_install(name, spec, path, timeout, ignore_scripts)


def _npm_install(name: str, spec: str, path: list[Path] | None, timeout: float, ignore_scripts: bool) -> Path:
    target = CACHE / "npm" / name
    if (target / "node_modules").is_dir():
        return target
    if shutil.which("npm") is None:
        raise RuntimeError("npm is not installed (Debian's npm package)")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=target.parent))
    environ = dict(os.environ)
    if path:
        environ["PATH"] = os.pathsep.join([*map(str, path), environ.get("PATH", "")])
    command = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
    command += ["--ignore-scripts"] if ignore_scripts else []
    try:
        installed = subprocess.run(
            [*command, spec], cwd=work, env=environ, capture_output=True, text=True, timeout=timeout
        )
        if installed.returncode != 0:
            raise RuntimeError(f"npm install {spec} failed (exit {installed.returncode}):\n{installed.stderr[-3000:]}")
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def node24_bin() -> Path:
    return npm_install(f"node-{NODE_VERSION}", f"node@{NODE_VERSION}") / "node_modules/.bin"


def openclaw() -> tuple[Path, dict[str, str]]:
    """The `openclaw` CLI and an environment whose PATH starts with Node 24 (its launcher needs it)."""
    node_bin = node24_bin()
    folder = npm_install(f"openclaw-{OPENCLAW_VERSION}", f"openclaw@{OPENCLAW_VERSION}", path=[node_bin])
    environ = {**os.environ, "PATH": f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    return folder / "node_modules/.bin/openclaw", environ
