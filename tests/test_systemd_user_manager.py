"""The systemd user manager the unit tests run (tests/systemd_user_manager.py) keeps to its own cgroups.

Started in the machine's root cgroup, it took every cgroup as its own: the processes of Docker's
containers left theirs and their folders went, so each `docker exec` into a running container of
the platform's tests failed with exit 126 while tests/test_docker_restarts.py ran beside them. A
process in cgroups of the test's own stands in for a container (no Docker needed to show it).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from systemd_user_manager import UserManager, available, cgroups_named, joining, make_cgroups, remove_cgroups

pytestmark = pytest.mark.skipif(available() is not None, reason=f"no systemd user manager here: {available()}")


def cgroups_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def test_a_process_in_other_cgroups_stays_in_them_while_the_manager_runs_and_after(tmp_path):
    sibling = cgroups_named(f"ai-platform-test-sibling-{uuid.uuid4().hex[:8]}")
    make_cgroups(sibling)
    container = subprocess.Popen(["sh", "-c", joining(sibling) + "exec sleep 300"])
    manager = UserManager(tmp_path)
    try:
        deadline = time.monotonic() + 30  # (a deadline for the wait, not a timed assertion)
        while Path(f"/proc/{container.pid}/comm").read_text().strip() != "sleep":
            assert container.poll() is None and time.monotonic() < deadline, "it did not join its cgroups"
            time.sleep(0.05)
        before = cgroups_of(container.pid)
        assert before.count(f"/{sibling[0].name}\n") == len(before.splitlines()), before
        manager.start()
        manager.systemctl("start", "idle.target")
        assert cgroups_of(container.pid) == before
        manager.stop()
        assert cgroups_of(container.pid) == before
        assert all(cgroup.is_dir() for cgroup in sibling)
        assert not any(cgroup.exists() for cgroup in manager.cgroups), "the manager's own are removed"
    finally:
        manager.stop()
        container.kill()
        container.wait()
        remove_cgroups(sibling)
