"""No secret on a command line: the stacks' commands and healthchecks, and Redis run for real.

The Redis test runs the pinned reference's image (here the stand-in of tests/standins/: Debian's
real redis-server and redis-cli, run with the compose file's command, since no registry is
reachable) on a Docker network of the test's own, as the image's `redis` user (uid 999, gid 1000:
docker-library/redis 6.2/alpine's Dockerfile), with the service's command, environment, mounts and
healthcheck exactly as `docker compose config` renders them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from stack_fixtures import CONTRACT_PATH, STACKS, make_tree

from builder import images
from firstboot import env, redis_config

needs_docker = pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="needs a running dockerd (scripts/setup starts one)",
)
SECRET_SOURCES = ("generated", "owner", "provider")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("stacks"))


def secret_values(tree) -> dict[str, str]:
    """The .env's values of the contract's secrets (generated, the owner's, providers' keys)."""
    contract = env.load_contract(CONTRACT_PATH)
    names = {variable.name for variable in contract if variable.source.partition(":")[0] in SECRET_SOURCES}
    return {name: value for name, value in tree.env_values().items() if name in names and value}


def rendered(tree, name: str) -> dict:
    files = ["-f", str(tree.root / f"stacks/{name}/compose.yaml")]
    for override in (tree.root / f"stacks/{name}/compose.custom.yaml", tree.etc / f"compose/{name}.yaml"):
        if override.exists():
            files += ["-f", str(override)]
    out = subprocess.run(
        [
            *("docker", "compose", "--project-directory", str(tree.root / f"stacks/{name}")),
            *("--env-file", str(tree.root / "stacks/images.env"), "--env-file", str(tree.etc / "stack.env")),
            *files,
            *("config", "--format", "json"),
        ],
        env=tree.environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", STACKS)
def test_no_stack_puts_a_secret_on_a_command_line(tree, name):
    """Command, entrypoint and healthcheck become process arguments, which /proc shows every user."""
    secrets = secret_values(tree)
    assert "REDIS_PASSWORD" in secrets and "POSTGRES_PASSWORD" in secrets  # the check has something to find
    for service_name, service in rendered(tree, name)["services"].items():
        argv = json.dumps([service.get("command"), service.get("entrypoint"), service.get("healthcheck")])
        shown = sorted(variable for variable, value in secrets.items() if value in argv)
        assert not shown, f"{name}/{service_name} has {', '.join(shown)} on a command line"


def test_the_redis_config_is_the_image_users_alone_in_a_root_only_folder(tmp_path):
    assert redis_config.write(tmp_path, "0123abcd") is True
    path = tmp_path / redis_config.RELATIVE_PATH
    assert path.read_text().splitlines()[-1] == "requirepass 0123abcd"
    assert (path.stat().st_mode & 0o777, path.stat().st_uid) == (0o400, redis_config.REDIS_UID)
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert redis_config.write(tmp_path, "0123abcd") is False  # unchanged: not rewritten
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        redis_config.write(tmp_path, "two words")


def _docker(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True, check=check, timeout=120)


@needs_docker
def test_redis_takes_its_password_from_the_file_and_no_process_shows_it(tree, tmp_path):
    [pin] = [pin for pin in images.load_lock() if pin.variable == "REDIS_IMAGE"]
    image = pin.reference(with_digest=False)
    if _docker("image", "inspect", image, check=False).returncode != 0:
        from standins.images import build_standins

        build_standins([pin])
    service = rendered(tree, "data")["services"]["redis"]
    password = tree.env_values()["REDIS_PASSWORD"]
    data = tmp_path / "redis-data"
    data.mkdir()
    shutil.chown(data, redis_config.REDIS_UID, 1000)
    mounts = []
    for volume in service["volumes"]:
        source = str(data) if volume["target"] == "/data" else volume["source"]
        mounts += [
            "--mount",
            f"type=bind,source={source},target={volume['target']}" + (",readonly" * bool(volume.get("read_only"))),
        ]
    network = f"secrets-test-{uuid.uuid4().hex[:8]}"
    name = f"{network}-redis"
    _docker("network", "create", "--internal", network)
    try:
        # As the image's entrypoint leaves it: redis-server runs as the image's redis user.
        _docker(
            "run", "-d", "--name", name, "--network", network, "--network-alias", "redis",
            "--user", f"{redis_config.REDIS_UID}:1000",
            "-e", f"REDISCLI_AUTH={service['environment']['REDISCLI_AUTH']}",
            *mounts, image, *service["command"],
        )  # fmt: skip
        healthcheck = service["healthcheck"]["test"]
        assert healthcheck[0] == "CMD-SHELL"
        # The healthcheck as Docker runs it (the password comes from REDISCLI_AUTH); until Redis listens.
        for _ in range(100):
            done = _docker("exec", name, "sh", "-c", healthcheck[1], check=False)
            if done.returncode == 0:
                break
            subprocess.run(["sleep", "0.2"], check=True)
        assert done.returncode == 0, done.stderr
        # The arguments redis-server was started with (/proc showed them until Redis retitled itself
        # "redis-server *:6379"), then every process in the container and the host's view of Redis.
        started = json.loads(_docker("inspect", "-f", "{{json .Args}}", name).stdout)
        assert "/usr/local/etc/redis/redis.conf" in started and password not in json.dumps(started)
        cmdlines = _docker("exec", name, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
        assert "redis-server" in cmdlines and password not in cmdlines
        pid = _docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            host_view = handle.read().decode()
        assert "redis-server" in host_view and password not in host_view
        # The password is enforced: another container on the network is refused without it.
        client = ["run", "--rm", "--network", network, "--entrypoint", "redis-cli", image, "-h", "redis", "ping"]
        refused = _docker(*client, check=False)
        assert "NOAUTH" in refused.stdout + refused.stderr
        allowed = _docker(*client[:4], "-e", f"REDISCLI_AUTH={password}", *client[4:])
        assert allowed.stdout.strip() == "PONG"
    finally:
        _docker("rm", "-f", name, check=False)
        _docker("network", "rm", network, check=False)


def readable_by_others(path, top) -> bool:
    """Whether a user other than the owner (and not in its group) can read `path`: the file's mode
    lets them, and they can enter every folder from `top` (the machine's /) down to it."""
    if not path.stat().st_mode & 0o004:
        return False
    return all(folder.stat().st_mode & 0o001 for folder in path.parents if folder.is_relative_to(top))


def holders(top, secrets: dict[str, str], skip=()) -> dict[str, list[str]]:
    """Every file under `top` holding one of the secrets' values: path -> the secrets' names."""
    found = {}
    for path in sorted(top.rglob("*")):
        if not path.is_file() or path.is_symlink() or any(path.is_relative_to(s) for s in skip):
            continue
        data = path.read_bytes()
        names = sorted(name for name, value in secrets.items() if value.encode() in data)
        if names:
            found[str(path.relative_to(top))] = names
    return found


def test_no_file_the_agent_writes_with_a_secret_is_readable_by_other_users(tmp_path):
    """The agent's whole boot (tests/test_firstboot_agent.py's machine: a real disk image, stacks
    started by a systemd stand-in), then every file under the machine's / that holds a secret."""
    from firstboot_machine import Machine

    from firstboot.cli import main

    machine = Machine(tmp_path / "machine")
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-a")
    assert main(["run"], machine.settings()) == 0
    contract = env.load_contract(machine.paths.env_contract)
    names = {variable.name for variable in contract if variable.source.partition(":")[0] in SECRET_SOURCES}
    secrets = {name: value for name, value in env.read_env_file(machine.paths.env_file).items() if name in names}
    assert "REDIS_PASSWORD" in secrets
    secrets["a private key"] = "PRIVATE KEY-----"  # the edge's TLS key, Tailscale's node key
    # The disk image plays the EBS device and sys/ the kernel's fw_cfg files (the test's own files);
    # what is on the disk is mounted and scanned.
    found = holders(machine.root, secrets, skip=[machine.disk_dir, machine.root / "sys"])
    assert {"etc/ai-platform/stack.env", "etc/ai-platform/redis/redis.conf", "mnt/data/platform/secrets.env"} <= set(
        found
    )
    assert any("a private key" in names for names in found.values())
    exposed = [path for path in found if readable_by_others(machine.root / path, machine.root)]
    assert not exposed, f"readable by every user of the instance: {exposed}"


def test_a_local_launch_keeps_its_disks_0600_in_0700_folders_and_repairs_older_ones(tmp_path, monkeypatch):
    """`launch --target local` up to qemu's start, then a snapshot and a restore, with the real
    qemu-img. qemu-system-x86_64 is a stand-in that only sleeps: booting a VM (minutes under TCG) is
    out of the suite's budget, and what is checked here is the files builder writes before the boot."""
    from builder.config.schema import PlatformConfig
    from builder.local import data_snapshots
    from builder.local.instances import LocalImage, LocalInstance, register_image

    qemu = tmp_path / "bin/qemu-system-x86_64"
    qemu.parent.mkdir()
    qemu.write_text("#!/bin/sh\nexec sleep 600\n")
    qemu.chmod(0o755)
    monkeypatch.setenv("PATH", f"{qemu.parent}:{os.environ['PATH']}")
    state = tmp_path / "state"
    config = PlatformConfig.model_validate(
        {"version": 1, "local": {"state_dir": str(state), "accelerator": "tcg", "data_disk_size_gib": 1}}
    )
    base = tmp_path / "image"
    base.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base / "disk.qcow2"), "64M"], check=True)
    (base / "vmlinuz").write_text("kernel")
    (base / "initrd.img").write_text("initrd")
    register_image(config, LocalImage(base / "disk.qcow2", base / "vmlinuz", base / "initrd.img"))
    instance = LocalInstance(config, "alpha")
    # As an older builder left them: a data disk 0644 in 0755 folders.
    instance.data_disk.parent.mkdir(parents=True)
    instance.data_disk.write_bytes(b"")
    os.truncate(instance.data_disk, 1024**3)
    for path, mode in ((instance.data_disk, 0o644), (instance.data_disk.parent, 0o755), (state / "ai-platform", 0o755)):
        path.chmod(mode)
    launched = instance.launch(lambda line: None)
    try:
        root = instance.directory / "root.qcow2"
        modes = {path: path.stat().st_mode & 0o777 for path in (instance.data_disk, root)}
        assert modes == {instance.data_disk: 0o600, root: 0o600}
        for folder in (state / "ai-platform", instance.directory, instance.data_disk.parent):
            assert folder.stat().st_mode & 0o777 == 0o700, folder
    finally:
        os.kill(launched["pid"], signal.SIGTERM)
        os.waitpid(launched["pid"], 0)
    snapshot = data_snapshots.take(instance, "manual", lambda line: None)
    assert Path(snapshot.path).stat().st_mode & 0o777 == 0o600
    data_snapshots.restore(instance, snapshot, lambda line: None)
    assert instance.data_disk.stat().st_mode & 0o777 == 0o600
    # Nothing builder wrote under the state dir can be read by another user of the host, even where
    # the state dir itself is open to all (a user's choice of local.state_dir).
    state.chmod(0o755)
    exposed = [
        str(path.relative_to(state)) for path in state.rglob("*") if path.is_file() and readable_by_others(path, state)
    ]
    assert not exposed, exposed
