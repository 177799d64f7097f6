"""The image suite: run by the bake's last provisioner inside the image (testinfra, local backend),
and again against a booted instance of it. A failure fails the bake.
"""

from __future__ import annotations

import hashlib
import json

import lynis_check
import pytest
from images_env import image_of

LOCK = "/opt/ai-platform/images.lock.json"
MODELS = "/opt/ai-platform/models"
UNITS = [
    "ai-platform-firstboot.service",
    "ai-platform.target",
    "ai-platform-stack@.service",
    "ai-platform-gdrive.service",
    "ai-platform-backup.service",
    "ai-platform-backup.timer",
    "ai-platform-health.service",
    "ai-platform-health.timer",
    "ai-platform-certificate.service",
    "ai-platform-certificate.timer",
    "ai-platform-readahead.service",
]


def lock(host) -> list[dict]:
    return json.loads(host.file(LOCK).content_string)["images"]


def test_docker_and_compose_are_installed(host):
    # docker.io from the distribution; on the GPU image its base's docker-ce (image/provision/10-apt.sh)
    assert host.package("docker.io").is_installed or host.package("docker-ce").is_installed
    assert host.service("docker").is_enabled
    assert host.run("docker compose version").rc == 0


def test_rclone_for_the_drive_mount_is_the_pinned_release(host):
    """/usr/local/bin/rclone, as the mount unit runs it: the release of rclone.env, or the
    distribution's package linked there when the bake was told so (image.mirrors.rclone)."""
    rclone = host.file("/usr/local/bin/rclone")
    assert rclone.exists and host.run("/usr/local/bin/rclone version").rc == 0
    if rclone.is_symlink:
        assert rclone.linked_to == "/usr/bin/rclone"
        return
    pinned = host.file("/opt/ai-platform/rclone.env").content_string
    version = next(line.split("=", 1)[1] for line in pinned.splitlines() if line.startswith("RCLONE_VERSION="))
    assert host.run("/usr/local/bin/rclone version").stdout.splitlines()[0] == f"rclone {version}"


def docker_name(repository: str) -> str:
    """Docker's short form: docker.io/library/postgres is postgres, docker.io/x/y is x/y."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if repository.startswith(prefix):
            return repository[len(prefix) :]
    return repository


@pytest.mark.image_only
def test_every_locked_image_is_present_with_its_digest(host):
    """Read from Docker's own store: the daemon is stopped in a finished image (no runtime state)."""
    with host.sudo():
        store = json.loads(host.file("/var/lib/docker/image/overlay2/repositories.json").content_string)
    references = {ref: image for repo in store["Repositories"].values() for ref, image in repo.items()}
    for pin in lock(host):
        tagged = f"{docker_name(pin['repository'])}:{pin['tag']}"
        assert tagged in references, f"{tagged} is not in the image"
        if pin["digest"]:
            by_digest = [image for ref, image in references.items() if ref.endswith("@" + pin["digest"])]
            assert references[tagged] in by_digest, f"{tagged} is not the image with {pin['digest']}"


def test_the_stacks_name_images_by_the_tags_the_bake_verified(host):
    env = host.file("/opt/ai-platform/stacks/images.env").content_string
    for pin in lock(host):
        assert f"{pin['variable']}={pin['repository']}:{pin['tag']}\n" in env


def test_models_are_in_ollamas_layout_with_verified_blobs(host):
    wanted = [line.strip() for line in host.file("/opt/ai-platform/models.txt").content_string.splitlines() if line]
    for model in wanted:
        name, tag = model.rsplit(":", 1)
        name = name if "/" in name else f"library/{name}"
        manifest = host.file(f"{MODELS}/manifests/registry.ollama.ai/{name}/{tag}")
        assert manifest.exists, model
        document = json.loads(manifest.content_string)
        for layer in [document["config"], *document["layers"]]:
            blob = host.file(f"{MODELS}/blobs/{layer['digest'].replace(':', '-')}")
            assert blob.exists, f"{model}: {layer['digest']} missing"
            assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer["digest"]


def test_the_agent_is_installed_and_its_unit_enabled(host):
    assert host.run("/opt/ai-platform/agent/bin/firstboot --help").rc == 0
    assert host.run("/opt/ai-platform/agent/bin/python -c 'import boto3'").rc == 0
    assert host.service("ai-platform-firstboot").is_enabled
    assert host.file("/opt/ai-platform/env-contract.json").exists


@pytest.mark.parametrize("unit", UNITS)
def test_stack_units_are_present(host, unit):
    assert host.file(f"/etc/systemd/system/{unit}").exists


def test_stack_units_verify(host):
    units = " ".join(f"/etc/systemd/system/{u}" for u in UNITS if "@." not in u)
    result = host.run(f"systemd-analyze verify {units} /etc/systemd/system/ai-platform-stack@.service")
    # The template unit alone is reported by instance; anything else is a finding.
    findings = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert not findings, findings


def test_backup_and_health_timers_are_enabled(host):
    assert host.service("ai-platform-backup.timer").is_enabled
    assert host.service("ai-platform-health.timer").is_enabled
    assert host.service("ai-platform-certificate.timer").is_enabled


def test_the_bakes_apt_shortcuts_are_undone(host):
    """10-apt.sh stops packages from starting services and pauses initramfs and man-db updates;
    left behind, a user's `apt install` on the instance would silently start nothing."""
    assert not host.file("/usr/sbin/policy-rc.d").exists
    initramfs = host.file("/etc/initramfs-tools/update-initramfs.conf")
    if initramfs.exists:
        assert "update_initramfs=yes" in initramfs.content_string
    if host.package("man-db").is_installed:
        with host.sudo():
            assert "man-db/auto-update: true" in host.check_output("debconf-show man-db")


@pytest.mark.image_only
def test_machine_id_is_empty(host):
    assert host.file("/etc/machine-id").size == 0


@pytest.mark.image_only
def test_no_build_host_name(host):
    assert host.file("/etc/hostname").content_string.strip() == "localhost"


@pytest.mark.image_only
def test_no_ssh_host_keys(host):
    assert host.run("ls /etc/ssh/ssh_host_* 2>/dev/null").stdout == ""


@pytest.mark.image_only
def test_cloud_init_is_clean(host):
    assert not host.file("/var/lib/cloud/instance").exists
    assert not host.file("/var/lib/cloud/instances").exists or host.run("ls -A /var/lib/cloud/instances").stdout == ""


@pytest.mark.image_only
def test_no_tailscale_state(host):
    state = host.file("/var/lib/tailscale")
    assert not state.exists or host.run("ls -A /var/lib/tailscale").stdout == ""


@pytest.mark.image_only
def test_no_docker_runtime_leftovers(host):
    with host.sudo():
        assert host.run("ls -A /var/lib/docker/containers").stdout == ""


@pytest.mark.image_only
def test_no_build_user_can_log_in(host):
    keys = host.run("ls /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys 2>/dev/null").stdout
    assert keys == ""


@pytest.mark.image_only
def test_logs_are_truncated(host):
    # The journal's active files are rotated and vacuumed, not removed (journald holds them).
    sizes = host.run("find /var/log -path /var/log/journal -prune -o -type f -size +64k -print").stdout.split()
    assert sizes == [], sizes


@pytest.mark.booted_only
def test_docker_runs_and_has_every_locked_image_by_digest(host):
    """Asked of the running daemon: sysprep's cleanup left its store intact."""
    assert host.service("docker").is_running
    pins = {f"{docker_name(pin['repository'])}:{pin['tag']}": pin for pin in lock(host)}
    # One command for every image: each command costs seconds on an emulated guest over SSH.
    listed = host.run("docker image ls --no-trunc --format '{{json .}}'")
    assert listed.rc == 0, listed.stderr
    held = {f"{image['Repository']}:{image['Tag']}" for image in map(json.loads, listed.stdout.splitlines())}
    assert not set(pins) - held, f"images missing: {sorted(set(pins) - held)}"
    result = host.run("docker image inspect --format '{{json .RepoTags}} {{json .RepoDigests}}' " + " ".join(pins))
    assert result.rc == 0, result.stderr
    digests: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        tags, repo_digests = line.split(" ", 1)
        for tag in json.loads(tags):
            digests[tag] = json.loads(repo_digests)
    for tagged, pin in pins.items():
        if pin["digest"]:
            assert any(d.endswith("@" + pin["digest"]) for d in digests.get(tagged, [])), tagged


@pytest.mark.booted_only
@pytest.mark.parametrize(
    "variable, program, flag", [("NGINX_IMAGE", "nginx", "-v"), ("REDIS_IMAGE", "redis-server", "--version")]
)
def test_the_daemon_starts_containers_from_the_baked_images(host, variable, program, flag):
    """Holding images is not running them: a daemon that cannot start a container (AppArmor on in the
    kernel but no apparmor_parser, a broken runtime) fails here with its own error."""
    image = image_of(host, variable)
    with host.sudo():
        result = host.run(f"docker run --rm --network none --entrypoint {program} {image} {flag}")
    assert result.rc == 0, f"{image}: {result.stderr}"


@pytest.mark.booted_only
def test_first_boot_made_a_machine_id_and_ssh_host_keys(host):
    assert len(host.file("/etc/machine-id").content_string.strip()) == 32
    assert host.file("/etc/ssh/ssh_host_ed25519_key.pub").exists


@pytest.mark.booted_only
def test_the_bake_user_and_its_key_are_gone(host):
    assert not host.user("packer").exists
    with host.sudo():
        found = host.run("grep -rl ai-platform-bake /root/.ssh /home/*/.ssh 2>/dev/null")
    assert found.stdout == "", f"the bake's key is still authorized: {found.stdout}"


@pytest.mark.booted_only
def test_the_hardening_sysctl_values_hold_after_boot(host):
    """What 82-harden.sh sets in sysctl.d is what the booted kernel runs with (systemd-sysctl applied
    it, and nothing, Docker included, changed it back); keys this kernel lacks are skipped, as
    systemd-sysctl skips them. Lynis's KRNL-6000 cannot say this: it names no key."""
    wanted = {}
    for line in host.file("/etc/sysctl.d/60-ai-platform-hardening.conf").content_string.splitlines():
        key, separator, value = line.partition("=")
        if separator and not line.lstrip().startswith("#"):
            wanted[key.strip()] = value.strip()
    assert "net.ipv4.ip_forward" in wanted and "fs.suid_dumpable" in wanted
    # Every key in one command (each costs seconds on an emulated guest over SSH): KEY<TAB>VALUE,
    # nothing for a key this kernel lacks.
    paths = " ".join("/proc/sys/" + key.replace(".", "/") for key in wanted)
    read = host.run(f"for p in {paths}; do [ -e $p ] && printf '%s\\t%s\\n' $p \"$(cat $p)\"; done; true")
    assert read.rc == 0, read.stderr
    running = {}
    for line in read.stdout.splitlines():
        path, _, value = line.partition("\t")
        running[path.removeprefix("/proc/sys/").replace("/", ".")] = value.split()
    assert "fs.suid_dumpable" in running, read.stdout  # the loop read what it should
    differ = {
        key: (value, " ".join(running[key]))
        for key, value in wanted.items()
        if key in running and running[key] != value.split()
    }
    assert not differ, f"sysctl keys the boot left different (wanted, running): {differ}"


@pytest.mark.lynis("full")
def test_lynis_scores_the_host_at_least_80_and_finds_nothing_the_hardening_fixes(host):
    """The full audit (the AWS bake runs it at native speed, before sysprep, as an instance runs)."""
    report = lynis_check.audit(host)
    print(lynis_check.describe(report))
    assert report["hardening_index"] is not None, "Lynis wrote no hardening_index"
    assert report["hardening_index"] >= lynis_check.THRESHOLD, lynis_check.describe(report)
    assert not lynis_check.unfixed(report), lynis_check.describe(report)


@pytest.mark.lynis("focused")
def test_lynis_finds_nothing_the_hardening_fixes_in_the_groups_it_touches(host):
    """Only the groups the hardening changes: what fits CI's budget on a booted TCG instance."""
    report = lynis_check.audit(host, lynis_check.HARDENED_GROUPS)
    assert not lynis_check.unfixed(report), lynis_check.describe(report)
