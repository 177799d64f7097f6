"""The stacks' isolation settings, shown on this host's real Docker with real containers.

Each container is the stand-in base image (Debian 12 with Python, curl and util-linux), started
with what the compose files render for the service it plays: its networks, its user, its
capabilities, its mounts. Everything lives on networks and volumes of the test's own (unique names,
subnets Docker picks), never the platform's `ai-platform`, which other tests use at the same time;
all of it is removed at the end, even when a test fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from stack_fixtures import make_tree
from standins.images import base_image
from test_stack_files import networks_of_every_service, rendered

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="needs a running dockerd (scripts/setup starts one)",
)
SUFFIX = uuid.uuid4().hex[:8]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("stacks"))


@pytest.fixture(scope="module")
def image():
    return base_image(log=lambda line: None)


@pytest.fixture
def cleanup():
    """Removes what a test made (containers first, then networks and volumes), whatever happened."""
    made: list[tuple[str, str]] = []
    yield made
    for kind, name in sorted(made, key=lambda item: item[0] != "container"):
        docker(kind, "rm", "-f" if kind != "network" else "--", name, check=False)


# The services that show who reaches the Signal API: its two users and apps that must not.
PLAYED = [
    ("signal_api", "signal-api"),
    ("clawdbot", "clawdbot"),
    ("edge", "edge"),
    ("anythingllm", "anythingllm"),
    ("n8n", "n8n"),
    ("litellm", "litellm"),
]


def test_only_openclaw_and_the_edge_reach_signals_api_on_real_docker(tree, image, cleanup):
    joined = networks_of_every_service(tree)
    test_name = {network: f"isolation-{SUFFIX}-{network}" for key in PLAYED for network in joined[key]}
    for name in test_name.values():
        docker("network", "create", "--driver", "bridge", name)
        cleanup.append(("network", name))
    containers = {}
    for stack, service in PLAYED:
        networks = sorted(joined[(stack, service)])
        name = f"isolation-{SUFFIX}-{service}"
        first, *more = networks
        command = ["python3", "-m", "http.server", "8080"]  # each answers, so reaching one shows
        docker("run", "-d", "--name", name, "--network", test_name[first], "--network-alias", service, image, *command)
        cleanup.append(("container", name))
        for network in more:
            docker("network", "connect", "--alias", service, test_name[network], name)
        containers[service] = name
    signal = json.loads(docker("inspect", containers["signal-api"]).stdout)[0]["NetworkSettings"]["Networks"]
    [address] = [spec["IPAddress"] for spec in signal.values()]

    def reaches(service: str, url: str, retries: int = 0) -> bool:
        probe = docker(
            "exec",
            containers[service],
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--connect-timeout",
            "3",
            "--max-time",
            "10",
            *(["--retry", str(retries), "--retry-connrefused", "--retry-delay", "1"] if retries else []),
            url,
            check=False,
        )
        return probe.returncode == 0

    # The http.servers may need a moment to listen: the first probe of each retries while refused.
    assert reaches("anythingllm", "http://clawdbot:8080/", retries=30)
    assert reaches("n8n", "http://edge:8080/", retries=30)
    for user in ("clawdbot", "edge"):
        assert reaches(user, "http://signal-api:8080/", retries=30), user
    # The same probes from the apps (which reached clawdbot and the edge above: the probe works).
    for app in ("anythingllm", "n8n", "litellm"):
        assert not reaches(app, "http://signal-api:8080/"), f"{app} resolves and reaches signal-api"
        assert not reaches(app, f"http://{address}:8080/"), f"{app} reaches signal-api at {address}"


def test_ollama_writes_only_to_the_data_volume_and_never_a_baked_model(tree, image, cleanup):
    baked = tree.models / "blobs/sha256-baked"
    baked.parent.mkdir(parents=True, exist_ok=True)
    baked.write_text("baked weights\n")
    manifest = tree.models / "manifests/registry.ollama.ai/library/baked/latest"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("{}\n")
    for folder in ("ollama/pulled", "ollama/overlay-work"):  # as the wrapper makes them (`directories`)
        (tree.data / folder).mkdir(parents=True, exist_ok=True)
    spec = rendered(tree, "ollama")["volumes"]["models"]
    volume = f"isolation-{SUFFIX}-models"
    options = [f"--opt={key}={value}" for key, value in spec["driver_opts"].items()]
    docker("volume", "create", "--driver", spec["driver"], *options, volume)
    cleanup.append(("volume", volume))
    [mount] = rendered(tree, "ollama")["services"]["ollama"]["volumes"]
    container = f"isolation-{SUFFIX}-ollama"
    cleanup.append(("container", container))
    script = (
        "set -e; cd /models; echo pulled > blobs/sha256-pulled; echo changed >> blobs/sha256-baked; "
        "rm manifests/registry.ollama.ai/library/baked/latest; ls -R /models"
    )
    run = docker(
        "run", "--name", container, "-v", f"{volume}:{mount['target']}", image, "sh", "-c", script, check=False
    )
    assert run.returncode == 0, run.stderr
    # The image's folder is as baked; every write is in the data volume's upper layer.
    assert baked.read_text() == "baked weights\n" and manifest.read_text() == "{}\n"
    assert not (tree.models / "blobs/sha256-pulled").exists()
    upper = tree.data / "ollama/pulled"
    assert (upper / "blobs/sha256-pulled").read_text() == "pulled\n"
    assert (upper / "blobs/sha256-baked").read_text() == "baked weights\nchanged\n"
    whiteout = upper / "manifests/registry.ollama.ai/library/baked/latest"
    assert whiteout.is_char_device(), "a deleted baked model is a whiteout in the upper layer"
    # A new container on the same volume sees the same merged view (the pull kept, the deletion too).
    again = docker(
        "run",
        "--rm",
        "-v",
        f"{volume}:/models",
        image,
        "sh",
        "-c",
        "cat /models/blobs/sha256-pulled; test ! -e /models/manifests/registry.ollama.ai/library/baked/latest",
    )
    assert again.stdout == "pulled\n"


def test_anythingllms_settings_let_chromium_make_its_sandbox_and_hold_no_capability(tree, image):
    """Chromium's Linux sandbox puts its renderers in new user, PID and network namespaces. `unshare`
    makes the same ones, under the service's rendered user, capabilities and security options."""
    service = rendered(tree, "anythingllm")["services"]["anythingllm"]
    settings = ["--user", service["user"], "--network", "none"]
    settings += [f"--cap-add={cap}" for cap in service["cap_add"]]
    settings += [f"--security-opt={option}" for option in service["security_opt"]]
    sandbox = (
        "unshare --user --pid --net --fork --map-root-user true && grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    )
    run = docker("run", "--rm", *settings, image, "sh", "-c", sandbox, check=False)
    assert run.returncode == 0, run.stderr
    status = dict(line.split(":\t") for line in run.stdout.splitlines())
    assert status == {"CapEff": "0000000000000000", "NoNewPrivs": "1"}
    # Control: without SYS_ADMIN, Docker's default seccomp profile refuses the namespaces (the reason
    # upstream's .env.example offers --no-sandbox).
    without = docker(
        "run", "--rm", "--user", service["user"], "--network", "none", image, "sh", "-c", sandbox, check=False
    )
    assert without.returncode != 0 and "Operation not permitted" in without.stderr
