"""A real systemd service manager for unit semantics: this machine's systemd, run as a user manager.

The tests' machine does not boot with systemd (PID 1 is something else), so no system manager can be
asked. `systemd --user` is the same manager code (jobs, Requires=/Wants=/PartOf= propagation,
Restart=, ExecReload=, start limits); it only refuses to run unless the machine looks booted with
systemd (/run/systemd/system exists), so it runs in a private mount namespace whose /run is an empty
tmpfs with that directory: the host's /run is not touched. Its socket lives under the test's temporary
directory, which both namespaces share, so `systemctl --user` from the test reaches it.

It also starts in a cgroup of its own, in every hierarchy. A user manager takes the cgroup it starts
in as the root of what it manages; started in the machine's root cgroup, it took the whole machine:
on a cgroup v1 host it moved the processes of Docker's containers out of their cgroups and removed
those, after which every `docker exec` into them failed with exit 126 ("error adding pid to cgroups:
... no such file or directory"). So the Docker platform's tests failed whenever a test that runs this
manager ran beside them (tests/test_systemd_user_manager.py shows it keeps to its own now).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

SYSTEMD = Path("/lib/systemd/systemd")


def available() -> str | None:
    """None when a user manager can run here; otherwise why not."""
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is not installed"
    if os.geteuid() != 0:
        return "a private mount namespace needs root"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    return None


class UserManager:
    def __init__(self, root: Path):
        self.root = root
        self.units = root / "config" / "systemd" / "user"
        self.runtime = root / "runtime"
        self.process: subprocess.Popen | None = None
        self.cgroups = cgroups_named(f"ai-platform-test-manager-{uuid.uuid4().hex[:8]}")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime)}

    def start(self, timeout: float = 30) -> None:
        self.units.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.units / "idle.target").write_text("[Unit]\nDescription=nothing at start\n")
        env = {**self.env, "XDG_CONFIG_HOME": str(self.root / "config"), "HOME": str(self.root)}
        make_cgroups(self.cgroups)
        boot = 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec "$0" --user --unit=idle.target'
        script = joining(self.cgroups) + boot
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(SYSTEMD)],
            env=env,
            stdout=(self.root / "manager.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        # (`is-system-running` answers "offline" here: it looks at this namespace's /run, not the manager.)
        while self.systemctl("show", "--property=SystemState", "--value", check=False).stdout.strip() not in (
            "running",
            "degraded",
        ):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the user manager did not come up: {(self.root / 'manager.log').read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.systemctl("exit", check=False)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        remove_cgroups(self.cgroups)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["systemctl", "--user", *args], env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def show(self, unit: str, name: str) -> str:
        return self.systemctl("show", f"--property={name}", "--value", unit).stdout.strip()

    def settle(self, timeout: float = 60) -> None:
        """Wait until no job is queued or running (a deadline for the wait, not a timed assertion)."""
        deadline = time.monotonic() + timeout
        while "No jobs running." not in self.systemctl("list-jobs").stdout:
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs still queued after {timeout:g} s: {self.systemctl('list-jobs').stdout}")
            time.sleep(0.1)


def cgroups_named(name: str) -> list[Path]:
    """A cgroup of that name in each hierarchy this machine mounts (v1's one per controller, v2's one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] in ("cgroup", "cgroup2"):
            found.append(Path(fields[4]) / name)
    return found


def make_cgroups(cgroups: list[Path]) -> None:
    for cgroup in cgroups:
        cgroup.mkdir(exist_ok=True)  # (exist_ok: one hierarchy may be mounted twice)
        for needed in ("cpuset.cpus", "cpuset.mems"):  # v1's cpuset takes no process until both are set
            if (cgroup / needed).exists() and not (cgroup / needed).read_text().strip():
                (cgroup / needed).write_text((cgroup.parent / needed).read_text())


def joining(cgroups: list[Path]) -> str:
    """Shell commands that move the shell running them (which then execs its program) into each."""
    return "".join(f'echo $$ > "{cgroup}/cgroup.procs" && ' for cgroup in cgroups)


def remove_cgroups(cgroups: list[Path]) -> None:
    """Each one and what was made under it, deepest first, once no process is left in them."""
    for cgroup in cgroups:
        if not cgroup.is_dir():
            continue
        below = sorted((folder for folder in cgroup.rglob("*") if folder.is_dir()), key=lambda f: -len(f.parts))
        for folder in [*below, cgroup]:
            # OSError: a process still in it (or gone already): an empty folder left harms nobody.
            with contextlib.suppress(OSError):
                folder.rmdir()
