"""The AWS bake, offline: Packer 1.6.6's amazon-ebs with every EC2 call going to moto, while the real
provisioning runs on a local VM over SSH.

- EC2 is a moto server (the AWS API cannot be reached from here), started with one AMI in the
  shape of Canonical's Ubuntu 22.04 images (owner 099720109477, name pattern of the config's
  filter): a stand-in id, not a real AMI.
- The build instance moto "runs" has no machine behind it. Packer's SSH goes to a qemu VM booted
  from the Debian 12 base (the local stand-in for Ubuntu 22.04) with the user `ubuntu` and a key
  pair imported into moto first (`--packer-var aws_ssh_*`). That base already holds the packages
  10-apt.sh installs (made on the host by mmdebstrap, cached; the local bake's own base, so both
  bakes share one): 10-apt.sh finds them current instead of spending minutes unpacking them under
  TCG. Its disk ignores flushes (a thrown-away machine).
- `builder bake --target aws` runs inside `unshare -n` (tests/netns.py): it reaches moto and the
  VM's SSH port and nothing else, so no call can reach AWS. pip cannot reach PyPI there either:
  the agent's wheels come from a directory filled beforehand (`image.mirrors.wheels`).
- The provisioning is not the image's: the local bake (tests/test_bake_local.py) runs the whole of
  it on the same base under TCG, where it took ten of this test's twelve minutes and CI's critical
  path shared the machine with it. Here Packer's `build` gets the template with its provisioning
  scripts replaced (tests/standins/provision/packer.py): the good bake writes the bill of materials
  from what Packer hands every script (source AMI, build id, input hash), the failed one runs the
  real 10-apt.sh against a dead mirror; sysprep and the image suite need the provisioning and are
  left out. What stays real is what only this test shows: Packer's amazon-ebs source against the
  EC2 API, the payload's upload over SSH, the BOM's download, builder's tags, copies, cache and clean
  up, and a failed bake leaving nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bake_sources import ModelRegistry, Registry, stand_in_lock
from conftest import REPO
from measured import say
from moto_server import MotoServer, free_port
from netns import HostBridge

from builder.bake import openclaw_plugins
from builder.bake.local_base import DIRECT_KERNEL_APPEND, cache_dir
from builder.bake.payload import apt_packages, new_ssh_key, sudo_user_data, wheel_pins
from builder.config.schema import PlatformConfig
from builder.local.debian_base import build_debian_base
from builder.local.qemu import make_overlay, make_seed

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("packer", "qemu-system-x86_64", "docker-registry", "unshare")),
    reason="needs packer, qemu, docker-registry and unshare (scripts/system-packages.txt)",
)
MODELS = ["tinyllama:1b"]
BAKED_MODELS = [*MODELS, PlatformConfig(version=1).ollama.embedding_model]  # with the default embedding model
REGION = "us-east-1"
COPY_REGION = "us-west-2"
UBUNTU = {
    "ami_id": "ami-0a1b2c3d4e5f60718",
    "name": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240401",
    "description": "stand-in for Canonical's Ubuntu 22.04 AMI (moto)",
    "owner_id": "099720109477",
    "public": True,
    "virtualization_type": "hvm",
    "architecture": "x86_64",
    "state": "available",
    "platform": None,
    "image_type": "machine",
    "hypervisor": "xen",
    "root_device_name": "/dev/sda1",
    "root_device_type": "ebs",
    "sriov": "simple",
    "creation_date": "2024-04-01T00:00:00.000Z",
}
KEY_PAIR = "ai-platform-test-build"


def wheel_directory(directory: Path) -> Path:
    """What the bake's pip needs without an index: setuptools (the agent's build backend) and the
    pinned boto3, pytest and testinfra with their dependencies, fetched on the host beforehand."""
    pins = wheel_pins()
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(directory), "setuptools>=64", "wheel"]
    subprocess.run([*command, *pins], check=True, capture_output=True, timeout=600)
    return directory


class BuildInstanceVm:
    """The machine behind moto's build instance: the Debian 12 base under qemu (TCG), SSH forwarded."""

    def __init__(self, root: Path, public_key: str):
        base = build_debian_base(cache_dir(), extra_packages=apt_packages(), log=lambda line: None)
        disk = make_overlay(base.disk, root / "build-instance.qcow2")
        subprocess.run(["qemu-img", "resize", "-q", str(disk), "40G"], check=True)
        user_data = sudo_user_data("ubuntu", public_key)
        seed = make_seed(root / "build-instance-seed.iso", "i-build", "ai-platform-build", user_data)
        self.ssh_port = free_port()
        self.console = root / "build-instance-console.log"
        # Not restricted: the provisioning reaches Debian's archive, and 10.0.2.2 is the host's loopback.
        self.process = subprocess.Popen(
            [
                "qemu-system-x86_64", "-nographic", "-nodefaults", "-accel", "tcg", "-m", "2048", "-smp", "2",
                "-kernel", str(base.kernel), "-initrd", str(base.initrd),
                "-append", DIRECT_KERNEL_APPEND,
                "-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe",
                "-drive", f"file={seed},if=virtio,format=raw,readonly=on",
                "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
                "-device", "virtio-net-pci,netdev=net0",
                # The host's entropy, as builder/local/qemu.py gives every launched VM.
                "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
                "-serial", f"file:{self.console}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def wait_for_ssh(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.ssh_port), timeout=5) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            time.sleep(2)
        raise AssertionError(f"the build VM's SSH did not answer in {timeout:g} s:\n{self.console.read_text()[-3000:]}")

    def ssh(self, key: Path, command: str) -> None:
        """`command` as the build user (the tests' own steps between bakes, not Packer's)."""
        options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        target = ["-i", str(key), "-p", str(self.ssh_port), "ubuntu@127.0.0.1"]
        result = subprocess.run(["ssh", *options, *target, command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"

    def close(self) -> None:
        self.process.kill()
        self.process.wait(30)


@pytest.fixture(scope="module")
def aws_bake(tmp_path_factory):
    root = tmp_path_factory.mktemp("bake-aws")
    amis = root / "amis.json"
    amis.write_text(json.dumps([UBUNTU]))
    moto = MotoServer(root, env={"MOTO_AMIS_PATH": str(amis)})
    registry = Registry(root)
    models = ModelRegistry(BAKED_MODELS)
    vm = None
    try:
        # This bake never starts the stacks (the chain test does, on the local bake): small images.
        lock = stand_in_lock(registry, REPO / "image/images.lock.json", root / "images.lock.json", runnable=False)
        wheels = wheel_directory(root / "wheels")
        key = root / "id_ed25519"
        public_key = new_ssh_key(key, "ai-platform-test")
        ec2 = moto.client("ec2", REGION)
        ec2.import_key_pair(KeyName=KEY_PAIR, PublicKeyMaterial=public_key.encode())
        vm = BuildInstanceVm(root, public_key)
        config = root / "platform.yaml"
        config.write_text(
            f"version: 1\naws:\n  region: {REGION}\nollama:\n  models: {json.dumps(MODELS)}\n"
            f"image:\n  copy_to_regions: [{COPY_REGION}]\n  mirrors:\n"
            f"    registry: http://10.0.2.2:{registry.port}\n"
            f"    models: http://10.0.2.2:{models.port}\n"
            # The test's own registries, plain http on the host's loopback: said so.
            "    allow_insecure_http: true\n"
            f"    wheels: {wheels}\n"
            "    tailscale_apt: none\n"
            # downloads.rclone.org is out of reach of the namespace: the distribution's rclone.
            "    rclone: distribution\n"
            f"local:\n  state_dir: {root / 'state'}\n"
        )
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(Path.home()),
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CHECKPOINT_DISABLE": "1",
        }
        command = [str(REPO / ".venv/bin/builder"), "--config", str(config), "--json", "bake", "--target", "aws"]
        command += ["--lock", str(lock), "--packer", str(packer_with_test_provisioning(root))]
        # The namespace reaches moto and the VM only: OpenClaw's plugins come from the build host's
        # cache, fetched (and checked) here first, as a previous bake would have left them.
        for pin in openclaw_plugins.pins():
            openclaw_plugins.fetch(pin)
        vm.wait_for_ssh()
        failed = failed_bake_first(
            config, command, {**env, PROVISIONING: "image/provision/10-apt.sh"}, moto, vm, key, root
        )
        env[PROVISIONING] = "tests/standins/provision/bom-from-environment.sh"
        started = time.monotonic()
        result = bake_in_namespace(command, env, moto, vm, key, root)
        say(f"aws bake (moto + local VM): {time.monotonic() - started:.0f} s")
        assert result.returncode == 0, result.stderr[-6000:]
        yield {
            "root": root,
            "moto": moto,
            "ec2": ec2,
            "config": config,
            "lock": lock,
            "key": key,
            "command": command,
            "env": env,
            "result": json.loads(result.stdout),
            "failed": failed,
        }
    finally:
        if vm is not None:
            vm.close()
        registry.stop()
        models.stop()
        moto.stop()


PROVISIONING = "AI_PLATFORM_TEST_PROVISIONING"  # what tests/standins/provision/packer.py runs


def packer_with_test_provisioning(root: Path) -> Path:
    """The `packer` builder runs: the real one, its provisioning replaced for `build` (the module says why)."""
    real = shutil.which("packer")
    assert real is not None
    launcher = root / "packer"
    standin = REPO / "tests/standins/provision/packer.py"
    launcher.write_text(f'#!/bin/sh\nAI_PLATFORM_REAL_PACKER={real} exec {sys.executable} {standin} "$@"\n')
    launcher.chmod(0o755)
    return launcher


def failed_bake_first(config: Path, command: list[str], env, moto, vm, key, root: Path) -> dict:
    """A bake with a dead apt mirror, on the build VM the good bake then uses (one boot, not two).

    It fails at 10-apt.sh's first fetch, after that script pointed the VM's apt sources at the dead
    mirror: those sources (all the failed bake changed that a second bake does not set again) are
    put back over SSH before the good bake, as a fresh build instance has them."""
    ec2 = moto.client("ec2", REGION)
    dead = f"http://10.0.2.2:{free_port()}/debian"
    failing = root / "failing.yaml"
    failing.write_text(config.read_text().replace("  mirrors:\n", f"  mirrors:\n    apt: {dead}\n"))
    failing_command = [*command, "--force"]
    failing_command[failing_command.index("--config") + 1] = str(failing)
    vm.ssh(key, "sudo cp -a /etc/apt /var/tmp/apt-before-failed-bake")
    result = bake_in_namespace(failing_command, env, moto, vm, key, root)
    vm.ssh(key, "sudo sh -c 'rm -rf /etc/apt && mv /var/tmp/apt-before-failed-bake /etc/apt'")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:ai-platform:role", "Values": ["image-build"]}])
    groups = [group["GroupName"] for group in ec2.describe_security_groups()["SecurityGroups"]]
    return {
        "dead": dead,
        "result": result,
        "images": ec2.describe_images(Owners=["self"])["Images"],
        "build_states": {i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]},
        "packer_groups": [name for name in groups if name.startswith("packer")],
    }


def bake_in_namespace(command, env, moto, vm, key, directory) -> subprocess.CompletedProcess:
    """`builder bake` in a network namespace that reaches moto and the VM's SSH port only."""
    connection = [
        "--packer-var=aws_ssh_host=127.0.0.1",
        f"--packer-var=aws_ssh_port={vm.ssh_port}",
        "--packer-var=aws_ssh_username=ubuntu",
        f"--packer-var=aws_ssh_keypair_name={KEY_PAIR}",
        f"--packer-var=aws_ssh_private_key_file={key}",
    ]
    bridge = HostBridge([moto.port, vm.ssh_port], directory)
    try:
        return subprocess.run(
            bridge.command([*command, *connection]), cwd=REPO, env=env, capture_output=True, text=True, timeout=3600
        )
    finally:
        bridge.close()


def tags_of(resource: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def test_the_ami_carries_the_platform_build_and_input_tags(aws_bake):
    result = aws_bake["result"]
    assert result["cached"] is False
    image = aws_bake["ec2"].describe_images(ImageIds=[result["image"]])["Images"][0]
    tags = tags_of(image)
    assert tags["ai-platform:platform"] == "ai-platform"
    assert tags["ai-platform:build-id"] == result["build_id"]
    assert tags["ai-platform:input-hash"] == result["input_hash"]
    assert tags["ai-platform:source-ami"] == UBUNTU["ami_id"]
    bom = Path(result["bom"])
    assert tags["ai-platform:bom-digest"] == "sha256:" + hashlib.sha256(bom.read_bytes()).hexdigest()


def test_the_ami_is_copied_to_the_configured_region(aws_bake):
    copies = aws_bake["result"]["copies"]
    assert set(copies) == {REGION, COPY_REGION}
    west = aws_bake["moto"].client("ec2", COPY_REGION)
    assert west.describe_images(ImageIds=[copies[COPY_REGION]])["Images"]


def test_the_amis_snapshots_carry_the_build_tags(aws_bake):
    ec2 = aws_bake["ec2"]
    image = ec2.describe_images(ImageIds=[aws_bake["result"]["image"]])["Images"][0]
    snapshot_ids = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    assert snapshot_ids
    for snapshot in ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]:
        assert tags_of(snapshot)["ai-platform:build-id"] == aws_bake["result"]["build_id"]


def test_the_bom_comes_back_from_the_build_instance_naming_the_source_ami(aws_bake):
    """The source AMI, build id and input hash went from builder through Packer's amazon-ebs source to
    the provisioning, and the BOM it wrote came back (its images and models: the local bake's test)."""
    bom = json.loads(Path(aws_bake["result"]["bom"]).read_text())
    assert bom["source_image"] == UBUNTU["ami_id"]
    assert bom["input_hash"] == aws_bake["result"]["input_hash"]
    assert bom["build_id"] == aws_bake["result"]["build_id"]


def test_the_bake_leaves_nothing_billable_behind(aws_bake):
    """Packer's build instance is terminated and its temporary group deleted: the janitor finds nothing."""
    ec2 = aws_bake["ec2"]
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:ai-platform:role", "Values": ["image-build"]}])
    states = {i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]}
    assert states <= {"terminated"}, states
    builder = [aws_bake["command"][0], "--config", str(aws_bake["config"]), "--json"]
    janitor = subprocess.run(
        [*builder, "janitor", "--older-than=0m", "--dry-run"],
        cwd=REPO,
        env={**aws_bake["env"], "AWS_REGION": REGION},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert janitor.returncode == 0, janitor.stderr
    found = json.loads(janitor.stdout)
    assert found["instances"] == found["security_groups"] == found["snapshots"] == [], found


def test_the_same_inputs_return_the_ami_without_building(aws_bake):
    # Outside the namespace and with no Packer at all: only the AMI lookup may answer.
    result = subprocess.run(
        [*aws_bake["command"], "--packer", "/nonexistent/packer"],
        cwd=REPO,
        env=aws_bake["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["cached"] is True and again["image"] == aws_bake["result"]["image"]


def test_a_failed_aws_bake_leaves_nothing_behind(aws_bake):
    """A dead apt mirror fails the bake at its first fetch (made before the good bake, on the same
    build VM): the error names the URL and the setting; Packer terminates its instance and deletes
    its group; no AMI is made."""
    failed = aws_bake["failed"]
    assert failed["result"].returncode == 1, failed["result"].stdout[-2000:]
    assert "image.mirrors.apt" in failed["result"].stderr and failed["dead"] in failed["result"].stderr
    assert failed["images"] == []
    assert failed["build_states"] == {"terminated"}, failed["build_states"]
    assert failed["packer_groups"] == []
