"""Code quality gates that run with the suite: ruff, shellcheck, and Python 3.10 for firstboot/."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def _run(*command: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def test_ruff_check():
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def shell_scripts() -> list[str]:
    tracked = _run("git", "ls-files", "-z").stdout.split("\0")
    scripts = []
    for name in filter(None, tracked):
        path = REPO / name
        if path.is_file() and (
            name.endswith(".sh") or path.read_bytes()[:64].split(b"\n")[0].endswith((b"bash", b"/sh"))
        ):
            scripts.append(name)
    return scripts


def test_there_are_shell_scripts_to_check():
    assert {"scripts/setup", "scripts/test", "scripts/quickstart", ".ci/run"} <= set(shell_scripts())


@pytest.mark.parametrize("script", shell_scripts())
def test_shellcheck(script):
    result = _run("shellcheck", "--severity=style", script)
    assert result.returncode == 0, result.stdout + result.stderr


def _vermin(path) -> subprocess.CompletedProcess:
    # --violations: report only what needs a newer Python than the target.
    vermin = str(Path(sys.executable).with_name("vermin"))  # the venv's console script: no `python -m vermin`
    return _run(vermin, "--no-tips", "--target=3.10-", "--violations", "--eval-annotations", str(path))


def test_firstboot_runs_on_python_3_10():
    """firstboot/ runs on Ubuntu 22.04's Python 3.10: no newer syntax and no newer standard library API."""
    result = _vermin(REPO / "firstboot")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "source",
    ["import tomllib\n", "import datetime\nprint(datetime.UTC)\n", "try:\n    pass\nexcept* ValueError:\n    pass\n"],
    ids=["tomllib", "datetime.UTC", "except-star"],
)
def test_the_python_3_10_check_catches_newer_code(tmp_path, source):
    (tmp_path / "agent.py").write_text(source)
    result = _vermin(tmp_path)
    assert result.returncode != 0
    assert "Target versions not met:   3.10-" in result.stdout


def _python_3_10() -> str | None:
    """A real Python 3.10 interpreter, where the machine has one (pyenv keeps one on these machines)."""
    candidates = [
        shutil.which("python3.10"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))),
    ]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_firstboot_imports_under_a_real_python_3_10():
    """Beyond vermin's static check: every firstboot module imports on a 3.10 interpreter."""
    python = _python_3_10()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine; vermin's check above still applies")
    modules = sorted(p.stem for p in (REPO / "firstboot").glob("*.py") if p.stem not in ("__init__", "__main__"))
    code = (
        "import importlib, sys; [importlib.import_module('firstboot.' + m) for m in sys.argv[1:]]; print(sys.version)"
    )
    result = subprocess.run([python, "-c", code, *modules], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3.10.")
