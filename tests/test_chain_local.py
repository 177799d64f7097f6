"""The whole chain as a user runs it: the image the session baked (tests/local_bake.py), launched with
`builder launch NAME --target local --wait` and its own user-data (no test seed), opened through the
edge, snapshotted while it runs, destroyed, restored from the snapshot and started again by
`builder upgrade` on the restored disk (two boots in all: the restore shares the upgrade's).

The only thing the test adds to the bake's config is what a user may add: an SSH key
(`ssh.authorized_keys`), so that it can look inside the instance (containers, the data volume) the
way an owner with a key would. Every stack runs its locked image, as baked: here the runnable
stand-ins of tests/standins (real PostgreSQL, Redis and NGINX; health-endpoint servers for the
apps), because the real images cannot be pulled on this machine.

Which apps it runs: the user's own choice (`services.NAME.enabled`), set here to the gateway and the
apps the checks go through (LiteLLM, OpenClaw, n8n, and the Signal API behind the owner's login),
with the data stack and the edge, which always run. The whole platform (every stack, ~25
containers) takes about 20 minutes per launch under TCG on two host cores, so two launches of it do
not fit CI's budget beside the bakes; `AI_PLATFORM_CHAIN_APPS=all` runs this test on every app (its
time is in the README).

A service of the owner's own goes the seed's add-a-service way: `builder service add searxng`, the
bake, `builder upgrade`. The first launch's config is the one from before the `service add`, so it
runs none; before the upgrade the test runs `service add` on the instance's config, as the owner
would. One bake feeds both images (tests/local_bake.py ran the same `service add` before it): a
second bake would hold the same bytes, 15 minutes later.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import urllib3
from conftest import REPO
from local_bake import ADDED_SERVICE, needs_local_bake
from measured import say

from builder.bake.payload import new_ssh_key
from builder.local.qemu import make_overlay

pytestmark = needs_local_bake
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
NAME = "chain"
ALL_APPS = ["ollama", "litellm", "anythingllm", "clawdbot", "dify", "n8n", "signal_api"]
APPS = ALL_APPS if os.environ.get("AI_PLATFORM_CHAIN_APPS") == "all" else ["litellm", "clawdbot", "n8n", "signal_api"]
STACKS = ["data", *APPS, "edge"]
WAIT_TIMEOUT = 2400 if APPS == ALL_APPS else 1200  # TCG: Docker and its containers on 2 emulated vCPUs
# Each route, the app behind it (as its stand-in names itself) and the service that serves it.
ROUTES = [
    (8443, "/litellm/v1/models", "litellm", "litellm"),
    (8443, "/clawdbot/", "clawdbot", "clawdbot"),
    (8444, "/workspaces", "anythingllm", "anythingllm"),
    (8445, "/apps", "dify-web", "dify"),
    (8445, "/console/api/setup", "dify-api", "dify"),
    (8446, "/rest/login", "n8n", "n8n"),
]
TITLES = {"litellm": "LiteLLM", "anythingllm": "AnythingLLM", "dify": "Dify", "n8n": "n8n", "clawdbot": "Clawdbot"}


def services_yaml() -> str:
    """The user's choice of apps, as they would write it in platform.yaml (gdrive stays off: no rclone config)."""
    return "services:\n" + "".join(f"  {app}:\n    enabled: false\n" for app in ALL_APPS if app not in APPS)


class Chain:
    def __init__(self, root: Path, builder: str, config: Path, key: Path):
        self.root, self.builder, self.config, self.key = root, builder, config, key
        self.launched: dict = {}
        self.stacks = list(STACKS)  # what runs now; the upgrade adds the owner's service

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [self.builder, "--config", str(self.config), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def launch(self) -> dict:
        started = time.monotonic()
        result = self.run(
            "--json",
            "launch",
            NAME,
            "--target",
            "local",
            "--wait",
            "--wait-timeout",
            str(WAIT_TIMEOUT),
            timeout=WAIT_TIMEOUT + 120,
        )
        seconds = time.monotonic() - started
        assert result.returncode == 0, f"{result.stderr[-4000:]}\nconsole: {self.console_tail()}"
        self.launched = {**json.loads(result.stdout), "seconds": seconds, "progress": result.stderr}
        return self.launched

    def upgrade(self, image: Path) -> dict:
        """`builder upgrade` onto `image`; what launch() records is read again from the instance."""
        started = time.monotonic()
        result = self.run(
            "--json", "upgrade", NAME, "--target", "local", "--image", str(image),
            "--wait-timeout", str(WAIT_TIMEOUT), timeout=WAIT_TIMEOUT * 2 + 600,
        )  # fmt: skip
        seconds = time.monotonic() - started
        assert result.returncode == 0, f"{result.stderr[-4000:]}\nconsole: {self.console_tail()}"
        state = json.loads((self.config.parent / "state/ai-platform/instances" / NAME / "state.json").read_text())
        self.launched = {
            **self.launched,
            "instance_id": state["instance_id"],
            "urls": {guest: f"https://127.0.0.1:{host}/" for guest, host in state["ports"].items()},
            "ssh": f"ssh -p {state['ssh_port']} {state['ssh_user']}@127.0.0.1",
        }
        return {**json.loads(result.stdout), "seconds": seconds, "progress": result.stderr}

    def destroy(self) -> subprocess.CompletedProcess:
        return self.run("--json", "destroy", NAME, "--target", "local", timeout=900)

    def console_tail(self) -> str:
        console = Path(self.config.parent / "state/ai-platform/instances" / NAME / "console.log")
        return console.read_text(errors="replace")[-4000:] if console.exists() else "(no console)"

    def ssh(self, command: str, timeout: float = 120) -> str:
        port = self.launched["ssh"].split()[2]
        ssh = ["ssh", "-q", "-i", str(self.key), "-p", port, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        ssh += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "debian@127.0.0.1"]
        result = subprocess.run(
            [*ssh, f"sudo sh -c {json.dumps(command)}"], capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
        return result.stdout

    def url(self, edge_port: int, path: str = "/") -> str:
        return self.launched["urls"][str(edge_port)].rstrip("/") + path

    def served_certificate(self, edge_port: int) -> bytes:
        host, port = self.url(edge_port).split("//")[1].rstrip("/").split(":")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((host, int(port)), timeout=10) as raw, context.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, verify=False, allow_redirects=False, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def chain(local_bake, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    key = root / "id_ed25519"
    public = new_ssh_key(key, "ai-platform-chain-test")
    config = local_bake["root"] / "chain.yaml"
    extra = f"ssh:\n  authorized_keys: [{json.dumps(public)}]\n" + services_yaml()
    config.write_text(local_bake["config_before_service"] + extra)
    chain = Chain(root, local_bake["command"][0], config, key)
    try:
        chain.launch()
        say(f"first launch: done after {chain.launched['seconds']:.0f} s")
        for step in chain.launched.get("agent_steps", []):
            print(f"  [{step['at_seconds']:6.1f} s] {step['line']}")
        yield chain
    finally:
        chain.destroy()  # never leave a VM running, whatever failed


def test_the_first_boot_reports_done_with_every_stack_healthy(chain):
    assert chain.launched["agent_state"] == "done", chain.launched
    status = json.loads(chain.ssh("cat /var/lib/ai-platform/status.json"))
    assert status["state"] == "done" and status["first_error"] is None
    print("agent steps (s):", {step["name"]: step["seconds"] for step in status["steps"]})
    units = chain.ssh("systemctl is-active " + " ".join(f"ai-platform-stack@{s}.service" for s in STACKS))
    assert units.split() == ["active"] * len(STACKS)
    # The image holds the owner's service (baked after `service add`); this config does not name it yet.
    assert chain.ssh(f"systemctl is-active ai-platform-stack@{ADDED_SERVICE}.service || true").strip() == "inactive"
    containers = [json.loads(line) for line in chain.ssh("docker ps -a --format '{{json .}}'").splitlines()]
    projects = {c["Labels"].split("com.docker.compose.project=ai-platform-")[1].split(",")[0] for c in containers}
    assert projects == set(STACKS), "every enabled stack has containers, a disabled app none"
    unhealthy = [c["Names"] + ": " + c["Status"] for c in containers if "(healthy)" not in c["Status"]]
    # Workers without a healthcheck only need to be up.
    assert all(line.split(": ")[1].startswith("Up") for line in unhealthy), unhealthy


PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]


def test_the_image_suite_passes_on_the_launched_instance(chain):
    """The image's own testinfra suite, `--booted`, over SSH (paramiko) against the instance the
    user's launch made: first boot turned the sysprepped image into a machine (machine-id, host keys)
    whose Docker runs containers from every baked image, with no trace of the build. Only the tests
    of that moment (`booted_only`): the others ran in the bake on these same bytes, and each command
    over SSH costs seconds in the emulated guest (the whole suite took 254 s)."""
    port = chain.launched["ssh"].split()[2]
    testinfra = [f"--hosts=paramiko://debian@127.0.0.1:{port}", f"--ssh-identity-file={chain.key}", "--sudo"]
    suite = subprocess.run(
        [*PYTEST, "--booted", "-m", "booted_only", *testinfra, "image/tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert suite.returncode == 0, suite.stdout[-6000:]
    print(suite.stdout.strip().splitlines()[-1])


def test_a_second_launch_of_a_running_instance_is_refused(chain):
    again = chain.run("launch", NAME, "--target", "local")
    assert again.returncode == 1 and "already running" in again.stderr


def test_builder_status_shows_the_running_instance(chain):
    result = chain.run("--json", "status", "--target", "local")
    assert result.returncode == 0, result.stderr
    [view] = json.loads(result.stdout)
    assert (view["name"], view["state"], view["agent_state"]) == (NAME, "running", "done")
    assert view["instance_id"] == chain.launched["instance_id"]


def test_the_edge_serves_the_instances_certificate_on_every_forwarded_port(chain):
    made = chain.ssh("openssl x509 -in /etc/ai-platform/tls/tls.crt -outform DER | base64 -w0")
    for port in map(int, chain.launched["urls"]):
        assert chain.served_certificate(port) == base64.b64decode(made), port


@pytest.mark.parametrize("edge_port, path, standin", [route[:3] for route in ROUTES if route[3] in APPS])
def test_each_route_reaches_its_app_over_tls(chain, edge_port, path, standin):
    response = get(chain.url(edge_port, path))
    assert response.status_code == 200, response.text[:500]
    assert response.json()["standin"] == standin


def test_the_index_lists_the_enabled_apps_only(chain):
    page = get(chain.url(8443)).text
    for app, title in TITLES.items():
        assert (f">{title}<" in page) == (app in APPS), title
    # A disabled app gets no port of its own either.
    assert set(chain.launched["urls"]) == {"8443", *(str(p) for p, _, _, app in ROUTES if app in APPS)}


def new_image_like(baked: Path, store: Path) -> Path:
    """Another image in the store for `builder upgrade` to move to: a qcow2 over the baked disk with
    its own record (one bake feeds this test; a second bake would be the same bytes, 15 minutes later)."""
    record = json.loads((baked / "image.json").read_text())
    target = store / f"{baked.name[:12]}-upgrade-test"
    target.mkdir()
    disk = make_overlay(Path(record["disk"]), target / "root.qcow2")
    (target / "image.json").write_text(json.dumps({**record, "disk": str(disk), "input_hash": target.name}))
    return target


def litellm_master_key_hash(chain: Chain) -> str:
    """The sha256 of the master key LiteLLM's container runs with (the key itself never leaves the VM)."""
    labels = "--filter label=com.docker.compose.project=ai-platform-litellm"
    container = chain.ssh(f"docker ps -q {labels} --filter label=com.docker.compose.service=litellm").strip()
    return chain.ssh(f"docker exec {container} printenv LITELLM_MASTER_KEY | sha256sum").split()[0]


def test_a_restore_brings_back_the_snapshot_and_the_upgrade_keeps_data_and_secrets(chain, local_bake):
    """A snapshot of the running instance (live, through qemu's QMP monitor), then more data written;
    destroyed; restored from the snapshot while stopped (the disk it replaces is kept); started again
    by `builder upgrade` from another image on the restored disk: the restore's boot is the one the
    upgrade makes anyway. What was written before the snapshot is back (a workflow in Postgres, a
    file on the volume), what was written after is gone, and the secrets, LiteLLM's master key and
    the edge's certificate are the same."""
    kept, lost = f"workflow-{uuid.uuid4()}", f"workflow-{uuid.uuid4()}"
    posted = requests.post(chain.url(8446, "/rest/workflows"), data=kept, verify=False, timeout=30)
    assert posted.status_code == 200, posted.text
    assert kept in get(chain.url(8446, "/standin/posts")).json()["posts"]
    # `sync`: a live snapshot holds what a power cut would leave; a file still in the guest's cache is not on the disk.
    chain.ssh(f"mkdir -p /mnt/data/media && echo {kept} > /mnt/data/media/kept.txt && sync")
    secrets_before = chain.ssh("sha256sum /mnt/data/platform/secrets.env").split()[0]
    master_key_before = litellm_master_key_hash(chain)
    certificate_before = chain.served_certificate(8443)
    first_id = chain.launched["instance_id"]

    started = time.monotonic()
    taken = chain.run("--json", "backups", NAME, "--target", "local", "--take", timeout=900)
    assert taken.returncode == 0, taken.stderr
    snapshot = json.loads(taken.stdout)
    say(f"live snapshot {snapshot['id']}: {time.monotonic() - started:.0f} s, {snapshot['size_bytes'] >> 20} MiB")
    assert (snapshot["reason"], snapshot["consistency"]) == ("manual", "crash-consistent")
    posted = requests.post(chain.url(8446, "/rest/workflows"), data=lost, verify=False, timeout=30)
    assert posted.status_code == 200, posted.text
    chain.ssh(f"echo {lost} > /mnt/data/media/after.txt && sync")

    destroyed = chain.destroy()
    assert destroyed.returncode == 0, destroyed.stderr
    assert json.loads(destroyed.stdout)["shutdown"] == "clean", destroyed.stderr
    say(f"destroy: {destroyed.stderr.strip()}")

    disk = chain.config.parent / "state/ai-platform/data" / f"{NAME}.img"
    before = disk.stat()
    restore = [chain.builder, "--config", str(chain.config), "restore", NAME, "--target", "local"]
    refused = subprocess.run([*restore, "--latest"], input="", capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "nothing was stopped or changed" in refused.stderr, refused.stderr
    assert (disk.stat().st_ino, disk.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    started = time.monotonic()
    restored = chain.run(
        "--json", "restore", NAME, "--target", "local", "--snapshot", snapshot["id"], "--yes", timeout=900
    )
    assert restored.returncode == 0, restored.stderr
    say(f"restore onto the stopped instance: {time.monotonic() - started:.0f} s")
    result = json.loads(restored.stdout)
    assert result["started"] is False  # it was stopped: the upgrade's boot starts it
    replaced = Path(result["replaced_disk"])
    # The replaced disk keeps every byte, what was written after the snapshot too (read off its ext4).
    shown = subprocess.run(["debugfs", "-R", "cat /media/after.txt", str(replaced)], capture_output=True, text=True)
    assert shown.stdout.strip() == lost, shown.stderr

    # The owner adds a service from the catalogue; the new image holds it (see the module's docstring).
    added = chain.run("service", "add", ADDED_SERVICE)
    assert added.returncode == 0, added.stderr
    chain.stacks.insert(-1, ADDED_SERVICE)
    baked = Path(local_bake["result"]["image"]).parent
    image = new_image_like(baked, baked.parent)
    planned = chain.run("--json", "--dry-run", "upgrade", NAME, "--target", "local", "--image", str(image))
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["image"] == {"from": str(baked), "to": str(image)}
    upgraded = chain.upgrade(image)
    say(f"upgrade onto {image.name}: {upgraded['state']} after {upgraded['seconds']:.0f} s")
    assert (upgraded["state"], upgraded["image"]) == ("upgraded", str(image)), upgraded
    assert chain.launched["instance_id"] != first_id
    root = chain.config.parent / "state/ai-platform/instances" / NAME / "root.qcow2"
    shown = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(root)], capture_output=True, text=True)
    info = json.loads(shown.stdout)
    assert info["backing-filename"] == str(image / "root.qcow2")  # its root disk is the new image's
    posts = get(chain.url(8446, "/standin/posts")).json()["posts"]
    assert kept in posts and lost not in posts, posts
    assert chain.ssh("cat /mnt/data/media/kept.txt").strip() == kept
    assert chain.ssh("test -e /mnt/data/media/after.txt && echo there || echo gone").strip() == "gone"
    assert chain.ssh("sha256sum /mnt/data/platform/secrets.env").split()[0] == secrets_before
    assert litellm_master_key_hash(chain) == master_key_before
    assert chain.served_certificate(8443) == certificate_before
    assert replaced.is_file()  # kept, never deleted
    listed = json.loads(chain.run("--json", "backups", NAME, "--target", "local").stdout)
    assert [disk["disk"] for disk in listed["replaced_disks"]] == [str(replaced)]


def test_the_service_added_from_a_template_runs_behind_the_edge_after_the_upgrade(chain):
    """`service add searxng` → bake → `upgrade`: its container is healthy, its folders are on the data
    volume and owned by its user, its generated secret reached it (the real SearXNG, and its
    stand-in, refuse to start without one), and the edge serves it on its own port, over TLS, with
    the instance's certificate, listed on the index. Nothing was done on the instance by hand."""
    labels = f"--filter label=com.docker.compose.project=ai-platform-{ADDED_SERVICE}"
    assert "(healthy)" in chain.ssh(f"docker ps {labels} --format '{{{{.Status}}}}'")
    assert chain.ssh(f"stat -c %u:%g /mnt/data/{ADDED_SERVICE}/config").strip() == "977:977"
    assert chain.ssh(f"test -s /mnt/data/{ADDED_SERVICE}/config/settings.yml && echo kept").strip() == "kept"
    # Its generated secret joined the volume's secrets and is what the container got (compared by hash).
    kept = chain.ssh("sed -n 's/^CUSTOM_SEARXNG_SECRET=//p' /mnt/data/platform/secrets.env | sha256sum").split()[0]
    container = chain.ssh(f"docker ps -q {labels}").strip()  # ($(...) would run in the login shell, not sudo's)
    given = chain.ssh(f"docker exec {container} printenv SEARXNG_SECRET | sha256sum").split()[0]
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of nothing
    assert kept == given and kept != empty
    response = get(chain.url(8448, "/healthz"))
    assert response.status_code == 200 and response.json()["standin"] == ADDED_SERVICE, response.text[:300]
    assert chain.served_certificate(8448) == chain.served_certificate(8443)
    assert ">SearXNG<" in get(chain.url(8443)).text


def test_the_owner_gets_in_with_the_credentials_builder_shows(chain):
    """`builder credentials` reads what builder made; the instance got the same through fw_cfg."""
    shown = chain.run("--json", "credentials", NAME, "--target", "local")
    assert shown.returncode == 0, shown.stderr
    rows = {row["credential"]: row for row in json.loads(shown.stdout)["credentials"]}
    owner_route = rows["EDGE_OWNER_PASSWORD"]["url"] + "?device_name=test"
    assert get(owner_route).status_code == 401
    assert get(owner_route, auth=("owner", "wrong")).status_code == 401
    answered = get(owner_route, auth=("owner", rows["EDGE_OWNER_PASSWORD"]["value"]))
    assert answered.status_code == 200 and answered.json()["standin"] == "signal-api"
    token = rows["OPENCLAW_GATEWAY_TOKEN"]["value"]
    assert chain.ssh(f"grep -c '^OPENCLAW_GATEWAY_TOKEN={token}$' /etc/ai-platform/stack.env").strip() == "1"


def test_docker_restarts_and_a_resize_of_the_data_disk_leave_every_stack_running(chain):
    """Issue #26, on the booted platform: the data disk grown by `builder resize` while it runs (the
    health check grows the mounted ext4 within a minute, checked last so that the Docker checks fill
    the wait); `systemctl restart docker`, as an update does it, and dockerd killed: every stack stays
    up with the same containers (tests/vm_docker_checks.py)."""
    from vm_docker_checks import kill_dockerd_keeps_every_stack, restart_docker_keeps_every_stack

    from firstboot.cli import DATA_PREFIX

    def data_bytes() -> int:
        return int(chain.ssh("df -B1 --output=size /mnt/data | tail -1").strip())

    chain.ssh("echo before-the-resize > /mnt/data/resize-check")
    before = data_bytes()
    resized = chain.run("--json", "resize", NAME, "--target", "local", "--size", str(-(-before // 1024**3) + 1))
    assert resized.returncode == 0, resized.stderr
    assert json.loads(resized.stdout)["running"] is True
    started = time.monotonic()

    restarted = restart_docker_keeps_every_stack(chain.ssh, chain.stacks)
    say(f"systemctl restart docker: every stack whole after {restarted:.0f} s")
    killed = kill_dockerd_keeps_every_stack(chain.ssh, chain.stacks)
    say(f"dockerd killed: every stack whole after {killed:.0f} s")

    while data_bytes() < before + 512 * 1024**2:
        assert time.monotonic() - started < 300, f"the filesystem did not grow: {chain.console_tail()}"
        time.sleep(5)
    # Looked at only after the Docker checks: the health check's console line says when it grew.
    say(f"data filesystem seen grown {time.monotonic() - started:.0f} s after the resize (after the Docker checks)")
    said = chain.ssh("journalctl --no-pager -o cat -u ai-platform-health.service")
    assert f"{DATA_PREFIX} data filesystem grown from" in said, said[-3000:]
    assert chain.ssh("cat /mnt/data/resize-check").strip() == "before-the-resize"


def wait_for_health(chain: Chain, wanted: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        [view] = json.loads(chain.run("--json", "status", "--target", "local").stdout)
        seen = view["health"]
        if wanted in seen:
            return seen
        time.sleep(10)
    raise AssertionError(f"status never showed {wanted!r} within {timeout:g} s; last: {seen!r}")


def test_status_shows_each_stacks_health_now(chain):
    """The instance's health timer reports a change within a minute or so: a stopped app shows."""
    count = len(chain.stacks)
    wait_for_health(chain, f"{count}/{count} healthy")
    labels = "--filter label=com.docker.compose.project=ai-platform-n8n --filter label=com.docker.compose.service=n8n"
    container = chain.ssh(f"docker ps -q {labels}").strip()
    chain.ssh(f"docker stop {container}")
    try:
        seen = wait_for_health(chain, "n8n unhealthy")
        assert f"{count - 1}/{count} healthy" in seen
        assert "off: gdrive" in seen  # off, not counted as healthy (it has no rclone config)
    finally:
        chain.ssh(f"docker start {container}")


def test_destroy_deletes_the_data_only_when_the_name_is_typed_back(chain):
    """Last in this file: it ends the instance and its data."""
    disk = Path(chain.config.parent / "state/ai-platform/data" / f"{NAME}.img")
    refused = subprocess.run(
        [chain.builder, "--config", str(chain.config), "destroy", NAME, "--target", "local", "--delete-data"],
        input="not-the-name\n",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert refused.returncode == 1 and disk.exists()
    deleted = subprocess.run(
        [chain.builder, "--config", str(chain.config), "destroy", NAME, "--target", "local", "--delete-data"],
        input=f"{NAME}\n",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert deleted.returncode == 0, deleted.stderr
    assert not disk.exists()
    shown = chain.run("credentials", NAME, "--target", "local")
    assert shown.returncode == 1  # the owner's logins went with the data
