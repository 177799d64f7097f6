"""Docker restarts inside a launched instance (issue #26), for the VM chain to call (tests/test_chain_local.py).

Each check takes the chain's `ssh` (a command run as root in the instance, its stdout back) and the
stacks the instance runs, plays one event, and returns how many seconds the platform took to be whole
again. What "whole" means, each time: every stack unit active, every container of every stack running
and healthy, and the very same containers as before (same id, same start time: none was stopped,
recreated or restarted), and every stack unit still in the activation it had before (never stopped).

    from vm_docker_checks import restart_docker_keeps_every_stack, kill_dockerd_keeps_every_stack
    def test_docker_restarts_leave_the_stacks_running(chain):
        print(restart_docker_keeps_every_stack(chain.ssh, STACKS))
        print(kill_dockerd_keeps_every_stack(chain.ssh, STACKS))
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence

Ssh = Callable[[str], str]


# One SSH round for every stack: each command costs seconds in an emulated guest (13 s each was seen
# while CI's other worker ran), and a look at seven stacks took three per stack.
SNAPSHOT_SCRIPT = """
for stack in {stacks}; do
    echo "== $stack"
    systemctl show --property=ActiveState,ActiveEnterTimestampMonotonic "ai-platform-stack@$stack.service"
    ids=$(docker ps -aq --no-trunc --filter "label=com.docker.compose.project=ai-platform-$stack")
    if [ -n "$ids" ]; then
        echo "-- inspect"
        docker inspect $ids | tr -d '\\n'
        echo
    fi
done
"""


def snapshot(ssh: Ssh, stacks: Sequence[str]) -> dict[str, dict]:
    """Per stack: its unit's state and activation time, and each container's id, start time and status."""
    script = SNAPSHOT_SCRIPT.format(stacks=" ".join(stacks))
    encoded = base64.b64encode(script.encode()).decode()
    said = ssh(f"echo {encoded} | base64 -d | sh")
    found = {}
    for block in said.split("== ")[1:]:
        stack, _, rest = block.partition("\n")
        shown, _, inspected = rest.partition("-- inspect\n")
        properties = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
        containers = {}
        for container in json.loads(inspected) if inspected.strip() else []:
            state = container["State"]
            health = (state.get("Health") or {}).get("Status")
            containers[container["Name"].lstrip("/")] = {
                "id": container["Id"],
                "started": state["StartedAt"],
                "running": state["Running"],
                "health": health,
            }
        found[stack.strip()] = {
            "unit": properties.get("ActiveState"),
            "activated": properties.get("ActiveEnterTimestampMonotonic"),
            "containers": containers,
        }
    missing = set(stacks) - set(found)
    assert not missing, f"no word of {sorted(missing)} from the instance: {said[-2000:]}"
    return found


def problems(found: dict[str, dict]) -> list[str]:
    """What is not whole: a stack unit not active, a container not running or not healthy."""
    problems = []
    for stack, seen in found.items():
        if seen["unit"] != "active":
            problems.append(f"ai-platform-stack@{stack}.service is {seen['unit']}")
        if not seen["containers"]:
            problems.append(f"{stack} has no containers")
        for name, container in seen["containers"].items():
            if not container["running"]:
                problems.append(f"{name} is not running")
            elif container["health"] not in (None, "healthy"):
                problems.append(f"{name} is {container['health']}")
    return problems


def wait_until_whole_and_unchanged(ssh: Ssh, stacks: Sequence[str], before: dict, began: float, wait: float) -> float:
    deadline = began + wait
    while True:
        now = snapshot(ssh, stacks)
        missing = problems(now)
        if not missing:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"not whole {wait:g} s after the event: {'; '.join(missing)}")
        time.sleep(2)
    took = time.monotonic() - began
    for stack in stacks:
        assert now[stack]["activated"] == before[stack]["activated"], f"ai-platform-stack@{stack}.service was stopped"
        assert now[stack]["containers"] == before[stack]["containers"], (
            f"{stack}'s containers changed: {before[stack]['containers']} -> {now[stack]['containers']}"
        )
    return took


def restart_docker_keeps_every_stack(ssh: Ssh, stacks: Sequence[str], wait: float = 600) -> float:
    """`systemctl restart docker`, as an update of docker.io does it; seconds until every stack is whole."""
    assert ssh("docker info --format '{{.LiveRestoreEnabled}}'").strip() == "true", "live-restore is off"
    before = snapshot(ssh, stacks)
    assert not problems(before), f"not whole before the restart: {problems(before)}"
    began = time.monotonic()
    ssh("systemctl restart docker.service")
    return wait_until_whole_and_unchanged(ssh, stacks, before, began, wait)


def kill_dockerd_keeps_every_stack(ssh: Ssh, stacks: Sequence[str], wait: float = 600) -> float:
    """dockerd killed (SIGKILL, as the OOM killer does): systemd starts it again, the stacks never stop."""
    before = snapshot(ssh, stacks)
    assert not problems(before), f"not whole before the kill: {problems(before)}"
    first = ssh("systemctl show --property=MainPID --value docker.service").strip()
    began = time.monotonic()
    ssh("systemctl kill --kill-whom=main --signal=SIGKILL docker.service")
    while ssh("systemctl show --property=MainPID --value docker.service").strip() in ("0", first):
        if time.monotonic() > began + wait:
            raise AssertionError(f"dockerd not started again within {wait:g} s")
        time.sleep(1)
    return wait_until_whole_and_unchanged(ssh, stacks, before, began, wait)
