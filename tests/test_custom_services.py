"""A service of the owner's own (services.custom.NAME), from the config to a healthy container behind the edge.

Each link is checked by the program that reads it: `builder images lock` against a real registry
(Debian's docker-registry), `docker compose config`, `nginx -t`, `systemd-analyze verify`, the
agent's edge files, and a real start on Docker through the stack wrapper with its healthcheck,
answering through the real edge (Debian's nginx) on its own port and under a sub-path. Its image is
a local one (no registry here holds an app of the owner's): Debian with Python's http.server.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import requests
import urllib3
from stack_fixtures import ROOTFS, make_tree
from test_image_units import boot_root, dependencies, enabled_names, install, unit_files, verify  # noqa: F401
from test_images_lock import models, registry  # noqa: F401 (the fixtures)
from test_stack_files import edge_conf_dir, nginx_test, rendered

from builder import custom_services, images
from builder.config.schema import PlatformConfig
from firstboot.instance_config import StackSettings

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

# Two services on one local image: one on a TLS port of its own, one under a sub-path of the main port.
# As PID 1, python ignores SIGTERM: each stop would wait out Docker's 10 s. The shell stops at once.
SITE = ["sh", "-c", "trap 'exit 0' TERM; python3 -m http.server 8080 --directory /srv & wait"]
HEALTH = ["CMD-SHELL", "curl -fsS -o /dev/null http://127.0.0.1:8080/"]


def platform_config(**changes) -> PlatformConfig:
    custom = {
        "board": {
            "title": "Board",
            "image": "docker.io/example/site:1.0",
            "command": SITE,
            "port": 8080,
            "edge_port": 9443,
            "environment": {"SECRET_KEY": "${generated:SECRET_KEY}", "GATEWAY_KEY": "${litellm:key}", "MODE": "x"},
            "volumes": {"/mnt/data/board/site": "/srv"},
            "user": "1000:1000",
            "healthcheck": HEALTH,
            "needs": ["litellm"],
        },
        "notes": {
            "image": "docker.io/example/site:2.0",
            "command": SITE,
            "port": 8080,
            "path": "/notes/",
            "volumes": {"/mnt/data/notes/pages": "/srv/notes"},
            "healthcheck": HEALTH,
        },
    }
    custom.update(changes)
    return PlatformConfig.model_validate({"version": 1, "services": {"custom": custom}})


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    settings = StackSettings(edge_bind=("127.0.0.1",), public_host="127.0.0.1")
    return make_tree(tmp_path_factory.mktemp("custom"), settings=settings, config=platform_config())


def test_its_compose_project_runs_its_pinned_image_on_the_platforms_network_with_its_secrets(tree):
    env = tree.env_values()
    board = rendered(tree, "board")["services"]["board"]
    assert board["image"] == "docker.io/example/site:1.0"  # by tag here: the stand-in images carry no digest
    assert board["pull_policy"] == "never" and board["command"] == SITE
    assert (
        board["environment"]["SECRET_KEY"] == env["CUSTOM_BOARD_SECRET_KEY"]
        and len(env["CUSTOM_BOARD_SECRET_KEY"]) == 64
    )
    assert board["environment"]["GATEWAY_KEY"] == env["LITELLM_KEY_BOARD"] and env["LITELLM_KEY_BOARD"].startswith(
        "sk-"
    )
    assert board["healthcheck"]["test"] == HEALTH
    assert [(v["source"], v["target"]) for v in board["volumes"]] == [(str(tree.data / "board/site"), "/srv")]
    assert set(board["networks"]) == {"ai-platform"}
    # Its LiteLLM key is registered after every start of LiteLLM, like the seed apps' keys.
    litellm = rendered(tree, "litellm")["services"]["litellm"]["environment"]
    assert litellm["AI_PLATFORM_APP_KEY_BOARD"] == env["LITELLM_KEY_BOARD"]
    assert "AI_PLATFORM_APP_KEY_NOTES" not in litellm
    # Its folders are listed for the stack wrapper, owned by its user.
    assert (tree.root / "stacks/board/directories").read_text().splitlines()[1:] == ["board/site 1000:1000 0750"]


def test_the_edge_routes_it_and_nginx_accepts_the_config(tree, tmp_path):
    result = nginx_test(tree, edge_conf_dir(tree, tmp_path))
    assert result.returncode == 0, result.stderr
    servers = (tree.root / "stacks/edge/custom/servers.conf").read_text()
    assert "listen 9443 ssl;" in servers and "http://board:8080" in servers and "notes" not in servers
    locations = (tree.root / "stacks/edge/custom/locations.conf").read_text()
    assert "location /notes/ {" in locations and "http://notes:8080" in locations


def test_the_agent_publishes_its_port_and_lists_it_on_the_index(tree):
    ports = rendered(tree, "edge")["services"]["edge"]["ports"]
    assert {(p["host_ip"], p["published"], p["target"]) for p in ports} >= {("127.0.0.1", "9443", 9443)}
    index = (tree.etc / "edge/index.conf").read_text()
    assert "https://$host:9443/" in index and "Board" in index
    assert "https://$host:8443/notes/" in index and ">notes<" in index


def test_its_unit_needs_what_it_declares_and_systemd_accepts_it(boot_root, tmp_path):  # noqa: F811
    rootfs = tmp_path / "rootfs"
    shutil.copytree(ROOTFS, rootfs, symlinks=True)
    custom_services.write_into(rootfs, platform_config())
    install(boot_root, {unit.name: unit.read_text() for unit in unit_files()}, [])
    shutil.copytree(rootfs / "etc/systemd/system", boot_root / "etc/systemd/system", dirs_exist_ok=True)
    for stack in ("board", "notes"):  # the wrapper's condition: the stack's folder is in the image
        shutil.copytree(rootfs / "opt/ai-platform/stacks" / stack, boot_root / "opt/ai-platform/stacks" / stack)
    for name in [*enabled_names(), "ai-platform-stack@board.service", "ai-platform-stack@notes.service"]:
        subprocess.run(["systemctl", f"--root={boot_root}", "enable", name], check=True, capture_output=True)
    assert verify(boot_root) == ""
    board = dependencies(boot_root, "ai-platform-stack@board.service")
    assert (
        "After: ai-platform-stack@litellm.service" in board and "Requires: ai-platform-stack@litellm.service" in board
    )
    notes = dependencies(boot_root, "ai-platform-stack@notes.service")
    assert "After: ai-platform-stack@litellm.service" not in notes and "RequiresMountsFor: /mnt/data" in notes


def test_images_lock_adds_its_image_resolves_its_digest_and_drops_it_once_removed(registry, models, tmp_path, builder):  # noqa: F811
    digest = registry.push_image("example/site", "1.0", "site")
    lock = tmp_path / "images.lock.json"
    shutil.copy(images.LOCK_PATH, lock)
    seed = json.loads(lock.read_text())["images"]
    config = tmp_path / "platform.yaml"
    entry = platform_config().services.custom["board"].model_dump(mode="json", exclude_none=True)
    entry["needs"] = []
    entry["environment"] = {"SECRET_KEY": "${generated:SECRET_KEY}"}
    config.write_text(json.dumps({"version": 1, "services": {"custom": {"board": entry}}}))
    # Only the custom pin is unresolved here (the seed's stay as they are: the registry has none of them).
    for pin in seed:
        pin["digest"] = pin["digest"] or "sha256:" + "1" * 64
    lock.write_text(json.dumps({"version": 1, "images": seed}))

    result = builder(
        "--config", str(config), "images", "lock", "--allow-insecure-http", "--lock", str(lock),
        "--registry", f"docker.io={registry.url}",
        "--registry", f"registry.ollama.ai={models.url}",
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    pins = {pin.variable: pin for pin in images.load_lock(lock)}
    assert pins["CUSTOM_BOARD_IMAGE"].reference() == f"docker.io/example/site:1.0@{digest}"
    assert "services.custom.board" in pins["CUSTOM_BOARD_IMAGE"].source
    # The bake's images.env names it by that digest.
    payload_pins = custom_services.pins(
        PlatformConfig.model_validate(json.loads(config.read_text())), list(pins.values())
    )
    # With the record of where `images lock` read it, kept for the image's copy of the lock.
    assert payload_pins[0].resolved and payload_pins[0].resolved == pins["CUSTOM_BOARD_IMAGE"].resolved
    assert (
        images.render_images_env(payload_pins).splitlines()[1]
        == f"CUSTOM_BOARD_IMAGE=docker.io/example/site:1.0@{digest}"
    )

    # A new tag in the config: unresolved again (never the old digest), until `images lock` asks.
    entry["image"] = "docker.io/example/site:9.9"
    config.write_text(json.dumps({"version": 1, "services": {"custom": {"board": entry}}}))
    moved = custom_services.pins(PlatformConfig.model_validate(json.loads(config.read_text())), list(pins.values()))
    assert moved[0].digest is None
    with pytest.raises(images.LockError, match="no digest"):
        images.render_images_env(moved)

    # Removed from the config, it leaves the lock.
    config.write_text(json.dumps({"version": 1}))
    result = builder(
        "--config", str(config), "images", "lock", "--allow-insecure-http", "--lock", str(lock),
        "--registry", f"docker.io={registry.url}",
        "--registry", f"registry.ollama.ai={models.url}",
    )  # fmt: skip
    assert result.code == 0, result.out + result.err
    assert [pin.variable for pin in images.load_lock(lock)] == [pin["variable"] for pin in seed]


class Warnings:
    def __init__(self):
        self.lines = []

    def warn(self, line):
        self.lines.append(line)


def test_a_service_the_image_lacks_is_reported_and_left_out(tmp_path):
    """Added to the config after the bake: the agent says so, and the edge neither publishes nor lists it."""
    from firstboot.agent import baked_custom_services
    from firstboot.framework import StepFailed

    stacks = tmp_path / "stacks"
    stacks.mkdir()
    context = Warnings()
    # An image from before the owner's services: the seed's run, nothing is said.
    assert baked_custom_services(context, stacks, ["ollama", "litellm", "gdrive"]) == {} and context.lines == []
    notes = platform_config().services.custom["notes"]
    (stacks / "custom.json").write_text(json.dumps(custom_services.manifest({"notes": notes})))
    found = baked_custom_services(context, stacks, ["litellm", "notes", "board"])
    assert list(found) == ["notes"] and found["notes"].path == "/notes/"
    assert len(context.lines) == 1 and "board" in context.lines[0] and "bake again" in context.lines[0]
    # A stack the image holds as a folder of its own (not the owner's) is not missing.
    (stacks / "probe").mkdir()
    (stacks / "probe/compose.yaml").write_text("services: {}\n")
    context.lines.clear()
    assert baked_custom_services(context, stacks, ["probe"]) == {} and context.lines == []
    (stacks / "custom.json").write_text("{")
    with pytest.raises(StepFailed, match=r"custom\.json"):
        baked_custom_services(context, stacks, ["notes"])


def docker_running() -> bool:
    return (
        shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


def health(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Health.Status}}", container], capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """Both services and the edge started by the stack wrapper, as their units start them."""
    if not docker_running():
        pytest.skip("needs a running dockerd (scripts/setup starts one)")
    from standins.images import base_image, build_standins

    base = base_image()
    for tag in ("1.0", "2.0"):  # the owner's image: Debian with python3 and curl
        subprocess.run(["docker", "tag", base, f"docker.io/example/site:{tag}"], check=True)
    build_standins([pin for pin in images.load_lock() if pin.variable == "NGINX_IMAGE"])  # the edge: real nginx
    settings = StackSettings(edge_bind=("127.0.0.1",), public_host="127.0.0.1")
    tree = make_tree(tmp_path_factory.mktemp("running"), services=[], settings=settings, config=platform_config())
    started = []
    try:
        for name in ("board", "notes", "edge"):
            result = tree.stack("up", name, timeout=300)
            assert result.returncode == 0, f"{name}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            started.append(name)
        yield tree
    finally:
        for name in reversed(started):
            tree.stack("down", name)
        subprocess.run(["docker", "network", "rm", "ai-platform", "ai-platform-signal"], capture_output=True)


def container(project: str) -> str:
    return subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project=ai-platform-{project}"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_it_starts_healthy_and_answers_through_the_edge_on_its_port_and_its_path(running):
    board, notes = container("board"), container("notes")
    assert health(board) == "healthy" and health(notes) == "healthy"
    # Its folders were made by the wrapper, owned by its user; what it serves comes from the volume.
    site = running.data / "board/site"
    assert (site.stat().st_uid, site.stat().st_gid) == (1000, 1000)
    (site / "index.html").write_text("the board, from the data volume\n")
    (running.data / "notes/pages/index.html").write_text("the notes, under /notes/\n")

    own_port = requests.get("https://127.0.0.1:9443/", verify=False, timeout=10)
    assert own_port.status_code == 200 and own_port.text == "the board, from the data volume\n"
    assert own_port.headers["X-Content-Type-Options"] == "nosniff"  # the edge's headers, as for the seed's apps
    sub_path = requests.get("https://127.0.0.1:8443/notes/", verify=False, timeout=10)
    assert sub_path.status_code == 200 and sub_path.text == "the notes, under /notes/\n"
    bare = requests.get("https://127.0.0.1:8443/notes", verify=False, timeout=10, allow_redirects=False)
    assert bare.status_code == 301 and bare.headers["Location"].endswith("/notes/")
    index = requests.get("https://127.0.0.1:8443/", verify=False, timeout=10).text
    assert "https://127.0.0.1:9443/" in index and "https://127.0.0.1:8443/notes/" in index

    # Its generated secret is the one the agent keeps in the .env.
    printed = subprocess.run(["docker", "exec", board, "printenv", "SECRET_KEY"], capture_output=True, text=True)
    assert printed.stdout.strip() == running.env_values()["CUSTOM_BOARD_SECRET_KEY"]


def test_a_stopped_service_answers_starting_and_the_others_keep_working(running):
    assert running.stack("down", "board").returncode == 0
    try:
        # The edge's "starting" answer (routes.conf): 503 with Retry-After, not NGINX's bare 502/504.
        assert requests.get("https://127.0.0.1:9443/", verify=False, timeout=30).status_code == 503
        assert requests.get("https://127.0.0.1:8443/notes/", verify=False, timeout=10).status_code == 200
    finally:
        assert running.stack("up", "board", timeout=300).returncode == 0
    assert requests.get("https://127.0.0.1:9443/", verify=False, timeout=10).status_code == 200


def test_service_add_writes_a_valid_entry_and_keeps_the_files_comments(builder, tmp_path):
    from builder.config.loader import load_config

    config = tmp_path / "platform.yaml"
    shutil.copy(images.REPO_ROOT / "examples/platform.yaml", config)
    before = config.read_text()
    for args in (("open-webui",), ("searxng", "search")):
        result = builder("--config", str(config), "service", "add", *args)
        assert result.code == 0, result.err
    after = config.read_text()
    # Every line of the file is still there, comments and nulls included; only the entries are new.
    kept = [line for line in before.splitlines() if line.strip() != "custom: {}"]
    assert [line for line in after.splitlines() if line in kept] == kept
    loaded = load_config(config, environ={}).config
    assert sorted(loaded.services.custom) == ["open-webui", "search"]
    search = loaded.services.custom["search"]
    assert search.user == "977:977" and search.edge_port == 8448  # strings stay strings (YAML 1.1: 60:59 is a number)
    assert set(search.volumes) == {"/mnt/data/search/config", "/mnt/data/search/cache"}
    assert loaded.services.custom["open-webui"].uses_litellm_key()

    listed = builder("--config", str(config), "service", "list")
    assert "open-webui" in listed.out and "searxng" in listed.out and "edge port 8448" in listed.out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("searxng",), ["port 8448 is already taken by services.custom.search.edge_port"]),
        (("searxng", "search"), ["services.custom.search exists already"]),
        (("wordpress",), ["no template 'wordpress'", "open-webui, searxng"]),
        (("searxng", "n8n"), ["'n8n' is the seed's own"]),
    ],
)
def test_service_add_refuses_a_clash_and_changes_nothing(builder, tmp_path, args, words):
    config = tmp_path / "platform.yaml"
    config.write_text("version: 1  # mine\n")
    assert builder("--config", str(config), "service", "add", "searxng", "search").code == 0
    before = config.read_text()
    result = builder("--config", str(config), "service", "add", *args)
    assert result.code == 1 and "Traceback" not in result.err
    for word in words:
        assert word in result.err
    assert config.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["platform.yaml"]
