"""The stack files the image ships, checked by the real tools: docker compose, nginx, and the lock.

`docker compose config` needs no daemon; `nginx -t` resolves names while testing, so it runs in
its own network namespace (unshare -n) with the test's files bound over /etc/nginx.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from stack_fixtures import CONTRACT_PATH, STACKS, STACKS_DIR, compose_variables, make_tree

from builder import images
from firstboot import env

SEED_ADDRESSES = {  # ../shared/seed/architecture.md, "Service IP Assignments"
    ("edge", "edge"): "172.20.0.2",
    ("ollama", "ollama"): "172.20.0.10",
    ("litellm", "litellm"): "172.20.0.11",
    ("anythingllm", "anythingllm"): "172.20.0.20",
    ("clawdbot", "clawdbot"): "172.20.0.21",
    ("dify", "dify-nginx"): "172.20.0.30",
    ("n8n", "n8n"): "172.20.0.40",
    # The seed's signal-api (172.20.0.50) is on a network of its own: test_only_openclaw_and_the_edge_reach_signals_api.
}
WRAPPER_VARIABLES = {"AI_PLATFORM_DATA", "AI_PLATFORM_ETC", "AI_PLATFORM_MODELS"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("stacks"))


def rendered(tree, name: str) -> dict:
    result = tree.stack("config", name)
    assert result.returncode == 0, result.stderr
    files = ["-f", str(tree.root / f"stacks/{name}/compose.yaml")]
    for override in (tree.root / f"stacks/{name}/compose.custom.yaml", tree.etc / f"compose/{name}.yaml"):
        if override.exists():
            files += ["-f", str(override)]
    out = subprocess.run(
        [
            "docker",
            "compose",
            "--project-directory",
            str(tree.root / f"stacks/{name}"),
            "--env-file",
            str(tree.root / "stacks/images.env"),
            "--env-file",
            str(tree.etc / "stack.env"),
            *files,
            "config",
            "--format",
            "json",
        ],
        env=tree.environ(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_image_ships_a_stack_per_service_of_the_seed():
    assert STACKS == ["anythingllm", "clawdbot", "data", "dify", "edge", "litellm", "n8n", "ollama", "signal_api"]


@pytest.mark.parametrize("name", STACKS)
def test_every_stack_is_valid_compose_with_the_test_env(tree, name):
    config = rendered(tree, name)
    assert config["services"]


@pytest.mark.parametrize("name", STACKS)
def test_images_come_only_from_the_lock_and_are_never_pulled(tree, name):
    pins = {pin.variable: pin for pin in images.load_lock()}
    text = (STACKS_DIR / name / "compose.yaml").read_text()
    for service, spec in yaml.safe_load(text)["services"].items():
        assert spec["image"].startswith("${") and spec["image"][2:].split(":")[0].split("}")[0] in pins, service
        assert spec.get("pull_policy") == "never", f"{name}/{service} may pull at boot"
    for service, spec in rendered(tree, name)["services"].items():
        assert ":latest" not in spec["image"] and ":" in spec["image"], f"{name}/{service}: {spec['image']}"


def test_every_locked_image_is_used_and_each_is_listed_once():
    used = set().union(*(compose_variables((STACKS_DIR / n / "compose.yaml").read_text()) for n in STACKS))
    pins = images.load_lock()
    assert {pin.variable for pin in pins} <= used
    assert len({pin.reference(False) for pin in pins}) == len(pins)


def test_every_variable_the_stacks_read_is_in_the_env_contract_or_the_lock():
    contract = {v["name"]: v for v in json.loads(CONTRACT_PATH.read_text())["variables"]}
    locked = {pin.variable for pin in images.load_lock()}
    for name in STACKS:
        used = compose_variables((STACKS_DIR / name / "compose.yaml").read_text())
        unknown = used - set(contract) - locked - WRAPPER_VARIABLES
        assert not unknown, f"{name} reads {sorted(unknown)}, which nothing provides"
        for variable in used & set(contract):
            # The contract says which stacks read each variable: keep it true.
            assert name in contract[variable]["stacks"], f"{variable} is read by {name}; add it to its stacks"
    all_used = set().union(*(compose_variables((STACKS_DIR / n / "compose.yaml").read_text()) for n in STACKS))
    # Read by the agent, not by compose: EDGE_OWNER_PASSWORD (the edge's owner map), and
    # N8N_OWNER_PASSWORD (n8n gets its bcrypt hash, N8N_OWNER_PASSWORD_HASH).
    assert set(contract) - all_used == {"EDGE_OWNER_PASSWORD", "N8N_OWNER_PASSWORD"}


def test_n8ns_owner_hash_reaches_it_whole_through_compose(tree):
    """A bcrypt hash is full of "$": unquoted in the .env, Compose would expand "$2b" as a variable.
    n8n stops on anything that is not ^\\$2[aby]\\$\\d{2}\\$[./A-Za-z0-9]{53}$ (its owner loader)."""
    import re

    values = tree.env_values()
    files = ["-f", str(tree.root / "stacks/n8n/compose.yaml")]
    env_files = ["--env-file", str(tree.root / "stacks/images.env"), "--env-file", str(tree.etc / "stack.env")]
    shown = subprocess.run(
        ["docker", "compose", *files, *env_files, "config", "--format", "json"],
        env=tree.environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    given = document["services"]["n8n"]["environment"]["N8N_INSTANCE_OWNER_PASSWORD_HASH"].replace("$$", "$")
    assert given == values["N8N_OWNER_PASSWORD_HASH"] == env.bcrypt_hash(values["N8N_OWNER_PASSWORD"])
    assert re.fullmatch(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}", given)
    assert document["services"]["n8n"]["environment"]["N8N_INSTANCE_OWNER_MANAGED_BY_ENV"] == "true"


def test_immutable_secrets_are_the_ones_that_protect_stored_data():
    contract = json.loads(CONTRACT_PATH.read_text())["variables"]
    immutable = {v["name"] for v in contract if v.get("immutable")}
    assert {"N8N_ENCRYPTION_KEY", "LITELLM_SALT_KEY", "DIFY_SECRET_KEY", "ANYTHINGLLM_SIG_KEY"} <= immutable
    assert {"ANYTHINGLLM_SIG_SALT", "POSTGRES_PASSWORD"} <= immutable


def test_a_missing_variable_stops_the_stack_naming_it(tree, tmp_path):
    values = tree.env_values()
    del values["N8N_ENCRYPTION_KEY"]
    (tree.etc / "stack.env").write_text(env.render_env_file(values, "test"))
    try:
        result = tree.stack("config", "n8n")
    finally:
        values["N8N_ENCRYPTION_KEY"] = "restored"
        (tree.etc / "stack.env").write_text(env.render_env_file(values, "test"))
    assert result.returncode != 0
    assert "N8N_ENCRYPTION_KEY" in result.stderr and "missing in .env" in result.stderr


def test_only_the_edge_publishes_host_ports(tree):
    for name in STACKS:
        for service, spec in rendered(tree, name)["services"].items():
            if (name, service) == ("edge", "edge"):
                assert {(p["host_ip"], p["published"]) for p in spec["ports"]} == {
                    ("127.0.0.1", "8443"),
                    ("127.0.0.1", "8444"),
                    ("127.0.0.1", "8445"),
                    ("127.0.0.1", "8446"),
                }
            else:
                assert not spec.get("ports"), f"{name}/{service} publishes {spec['ports']}"


def test_front_doors_have_the_seed_addresses_and_every_stack_joins_ai_platform(tree):
    for (name, service), address in SEED_ADDRESSES.items():
        networks = rendered(tree, name)["services"][service]["networks"]
        assert networks["ai-platform"]["ipv4_address"] == address
    for name in STACKS:
        if name == "signal_api":
            continue
        config = rendered(tree, name)
        network = config["networks"]["ai-platform"]
        assert network["name"] == "ai-platform" and network["external"] is True


def networks_of_every_service(tree) -> dict[tuple[str, str], set[str]]:
    """(stack, service) -> the Docker networks (by their real names) it joins, as compose renders them."""
    joined = {}
    for name in STACKS:
        config = rendered(tree, name)
        real = {key: spec.get("name", f"ai-platform-{name}_{key}") for key, spec in config["networks"].items()}
        for service, spec in config["services"].items():
            joined[(name, service)] = {real[key] for key in spec.get("networks", {})}
    return joined


def test_only_openclaw_and_the_edge_reach_signals_api(tree):
    """signal-cli-rest-api has no authentication: on ai-platform, any app could send and read the
    owner's messages, past the edge's owner-only /signal/ route."""
    joined = networks_of_every_service(tree)
    assert joined[("signal_api", "signal-api")] == {"ai-platform-signal"}
    on_signal = {key for key, networks in joined.items() if "ai-platform-signal" in networks}
    assert on_signal == {("signal_api", "signal-api"), ("clawdbot", "clawdbot"), ("edge", "edge")}
    assert rendered(tree, "signal_api")["networks"]["signal"]["external"] is True  # the wrapper makes it
    # Both still find it by the name they are configured with.
    openclaw = json.loads((STACKS_DIR / "clawdbot/openclaw.json").read_text())
    assert openclaw["channels"]["signal"]["transport"]["url"] == "http://signal-api:8080"
    assert "http://signal-api:8080;" in (STACKS_DIR / "edge/nginx.conf").read_text()


def test_ollamas_baked_models_are_the_read_only_layer_of_an_overlay_on_the_data_volume(tree):
    config = rendered(tree, "ollama")
    mounts = config["services"]["ollama"]["volumes"]
    assert [(m["type"], m["source"], m["target"]) for m in mounts] == [("volume", "models", "/models")]
    volume = config["volumes"]["models"]
    assert volume["driver"] == "local" and volume["driver_opts"]["type"] == "overlay"
    options = dict(option.split("=", 1) for option in volume["driver_opts"]["o"].split(","))
    assert options == {
        "lowerdir": str(tree.models),
        "upperdir": str(tree.data / "ollama/pulled"),
        "workdir": str(tree.data / "ollama/overlay-work"),
    }
    # Nothing mounts the image's models folder any other way.
    for name in STACKS:
        assert str(tree.models) not in json.dumps(rendered(tree, name)["services"]), name
    listing = (STACKS_DIR / "ollama/directories").read_text().split("\n")
    assert {line.split()[0] for line in listing if line and not line.startswith("#")} >= {
        "ollama/pulled",
        "ollama/overlay-work",
    }


def test_anythingllms_chromium_keeps_its_sandbox(tree):
    anythingllm = rendered(tree, "anythingllm")["services"]["anythingllm"]
    assert "ANYTHINGLLM_CHROMIUM_ARGS" not in anythingllm["environment"]
    assert "no-sandbox" not in json.dumps(anythingllm)
    assert anythingllm["cap_add"] == ["SYS_ADMIN"] and anythingllm["user"] == "1000:1000"
    assert "no-new-privileges:true" in anythingllm["security_opt"]
    # No other service gets a capability.
    others = [(n, s) for n in STACKS for s, spec in rendered(tree, n)["services"].items() if spec.get("cap_add")]
    assert others == [("anythingllm", "anythingllm")]


def test_dify_keeps_its_internals_off_the_shared_network(tree):
    services = rendered(tree, "dify")["services"]
    assert "ai-platform" not in services["dify-web"]["networks"]
    assert set(services["dify-sandbox"]["networks"]) == {"sandbox"}
    assert rendered(tree, "dify")["networks"]["sandbox"]["internal"] is True
    # Every Dify name is dify-*: none can answer for another stack's postgres, redis or api.
    assert all(name.startswith("dify-") for name in services)


def nginx_test(tree, conf_dir) -> subprocess.CompletedProcess:
    """`nginx -t` with conf_dir bound over /etc/nginx, in a network namespace of its own."""
    script = (
        f"set -e; ip link set lo up; mount --bind {conf_dir} /etc/nginx; "
        "nginx -t -q -c /etc/nginx/nginx.conf -g 'error_log stderr;'"
    )
    return subprocess.run(["unshare", "-n", "-m", "sh", "-c", script], capture_output=True, text=True)


def edge_conf_dir(tree, tmp_path):
    conf = tmp_path / "nginx"
    conf.mkdir()
    shutil.copy("/etc/nginx/mime.types", conf / "mime.types")
    for name in ("nginx.conf", "routes.conf", "headers.conf"):
        shutil.copy(tree.root / "stacks/edge" / name, conf / name)
    shutil.copytree(tree.root / "stacks/edge/pages", conf / "pages")
    shutil.copytree(tree.etc / "edge", conf / "ai-platform")
    shutil.copytree(tree.root / "stacks/edge/custom", conf / "custom")
    shutil.copytree(tree.etc / "tls", conf / "tls")  # the certificate make_tree installed
    return conf


def test_nginx_accepts_the_edge_config(tree, tmp_path):
    result = nginx_test(tree, edge_conf_dir(tree, tmp_path))
    assert result.returncode == 0, result.stderr


def test_nginx_rejects_a_broken_edge_config(tree, tmp_path):
    """Control: the check above is not a rubber stamp."""
    conf = edge_conf_dir(tree, tmp_path)
    (conf / "routes.conf").write_text((conf / "routes.conf").read_text() + "proxy_pass_header;\n")
    assert nginx_test(tree, conf).returncode != 0


def test_nginx_accepts_difys_internal_config(tmp_path):
    conf = tmp_path / "nginx"
    conf.mkdir()
    shutil.copy(STACKS_DIR / "dify" / "nginx.conf", conf / "nginx.conf")
    result = nginx_test(None, conf)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", ["bin/ai-platform-stack", "bin/ai-platform-backup"])
def test_scripts_pass_shellcheck(script):
    from stack_fixtures import ROOTFS

    paths = [
        ROOTFS / "opt/ai-platform" / script,
        *sorted(STACKS_DIR.glob("*/*-start")),
        STACKS_DIR / "data/ensure-databases.sh",
    ]
    result = subprocess.run(["shellcheck", *map(str, paths)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_only_litellm_holds_the_master_key_and_each_app_calls_it_with_its_own(tree):
    env_values = tree.env_values()
    master = env_values["LITELLM_MASTER_KEY"]
    holders = [name for name in STACKS if master in json.dumps(rendered(tree, name))]
    assert holders == ["litellm"]

    def environment(stack: str, service: str) -> dict:
        return rendered(tree, stack)["services"][service]["environment"]

    app_keys = {app: env_values[f"LITELLM_KEY_{app.upper()}"] for app in ("anythingllm", "clawdbot", "n8n", "dify")}
    assert len(set(app_keys.values())) == 4 and all(key.startswith("sk-") for key in app_keys.values())
    assert environment("anythingllm", "anythingllm")["LITE_LLM_API_KEY"] == app_keys["anythingllm"]
    assert environment("clawdbot", "clawdbot")["LITELLM_API_KEY"] == app_keys["clawdbot"]
    # LiteLLM gets them all, for ensure-keys.py to register after every start.
    litellm = environment("litellm", "litellm")
    assert {app: litellm[f"AI_PLATFORM_APP_KEY_{app.upper()}"] for app in app_keys} == app_keys


def test_litellm_is_told_to_migrate_offline(tree):
    # litellm-proxy-extras 0.4.67 reads PRISMA_OFFLINE_MODE with str_to_bool: "true" turns it on.
    litellm = rendered(tree, "litellm")["services"]["litellm"]["environment"]
    assert litellm["PRISMA_OFFLINE_MODE"].lower() in ("true", "1", "t", "y", "yes")
    assert litellm["DATABASE_URL"].startswith("postgresql://litellm:")


def test_the_apps_ask_for_auto_by_default(tree):
    anythingllm = rendered(tree, "anythingllm")["services"]["anythingllm"]["environment"]
    assert anythingllm["LITE_LLM_MODEL_PREF"] == "auto"
    openclaw = json.loads((STACKS_DIR / "clawdbot/openclaw.json").read_text())
    assert openclaw["agents"]["defaults"]["model"]["primary"] == "litellm/auto"
    assert openclaw["models"]["providers"]["litellm"]["apiKey"] == "${LITELLM_API_KEY}"
    assert "auto" in [model["id"] for model in openclaw["models"]["providers"]["litellm"]["models"]]


# A `docker` that plays the race two stacks starting side by side run into: the network is not
# there when the wrapper looks, another stack creates it the moment after, so this create fails.
RACED_DOCKER = """#!/bin/sh
made="$STATE/network"
case "$1 $2" in
  "network inspect")
    [ -f "$made" ] || exit 1
    case "$*" in *--format*) echo 172.20.0.0/16 ;; esac ;;
  "network create")
    touch "$made"
    echo "Error response from daemon: Pool overlaps with other one on this address space" >&2
    exit 1 ;;
  "compose "*) echo "$*" >> "$STATE/compose" ;;
  *) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
"""


def test_a_network_another_stack_created_meanwhile_is_used_not_a_failure(tree, tmp_path):
    """Seen in the chain: data and a service of the owner's without needs started together, and
    data failed on the network the other had just made (so LiteLLM and n8n never started)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(RACED_DOCKER)
    (fake / "docker").chmod(0o755)
    environ = {**tree.environ(), "PATH": f"{fake}:{os.environ['PATH']}", "STATE": str(tmp_path)}

    def up() -> subprocess.CompletedProcess:
        wrapper = [str(tree.root / "bin/ai-platform-stack"), "up", "signal_api"]
        return subprocess.run(wrapper, env=environ, capture_output=True, text=True, timeout=60)

    started = up()
    assert started.returncode == 0, started.stderr
    assert " up --detach --wait" in (tmp_path / "compose").read_text()

    # A create that fails with no network made meanwhile still stops the stack, saying why.
    (tmp_path / "network").unlink()
    (fake / "docker").write_text(RACED_DOCKER.replace('touch "$made"', ":"))
    failed = up()
    assert failed.returncode == 1 and "cannot create network ai-platform: Error response" in failed.stderr
