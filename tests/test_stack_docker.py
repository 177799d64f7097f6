"""The whole platform started on a real Docker engine, through the wrapper the systemd units run.

The pinned images cannot be pulled here (no registry is reachable). LiteLLM, OpenClaw and n8n run
their real software, in local images laid out as upstream's (tests/real_images.py: LiteLLM from PyPI,
OpenClaw and n8n from npm on Node 24); LiteLLM without its database, which needs Prisma engines
nobody here serves. The rest are locally built stand-ins carrying their references (tests/standins/standin.py;
real_images.STANDIN_ONLY says why each one): real PostgreSQL, Redis and NGINX from Debian, small
health-endpoint servers for the rest. Everything else is real: the compose files, `docker compose
up --wait` on their healthchecks, the ai-platform network, the edge's nginx config with TLS, the
agent's per-instance files, the backup script.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests
import urllib3
from browser import Watched, chromium_fixture  # noqa: F401 (the `chromium` fixture)
from real_images import LITELLM_WITHOUT_DATABASE, use_real_apps
from stack_fixtures import BACKUP, make_tree
from standins.images import build_standins

from builder import images
from firstboot.instance_config import StackSettings

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="needs a running dockerd (scripts/setup starts one)",
)
ORDER = ["data", "ollama", "litellm", "anythingllm", "signal_api", "clawdbot", "dify", "n8n", "edge"]
EDGE = "https://127.0.0.1"
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    pins = images.load_lock()
    build_standins(pins)
    use_real_apps(pins)
    # As a local launch renders it: clients come to 127.0.0.1 (OpenClaw allows that origin).
    settings = StackSettings(edge_bind=("127.0.0.1",), public_host="127.0.0.1")
    tree = make_tree(tmp_path_factory.mktemp("platform"), settings=settings)
    override = tree.etc / "compose/litellm.yaml"
    assert not override.exists(), "the agent now writes a LiteLLM override: merge the test's into it"
    override.write_text(LITELLM_WITHOUT_DATABASE)
    tree.share_data()
    started, seconds = [], {}
    try:
        for name in ORDER:
            began = time.monotonic()
            result = tree.stack("up", name)
            assert result.returncode == 0, f"{name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            seconds[name] = round(time.monotonic() - began, 1)
            started.append(name)
        print(f"stacks healthy after (s): {seconds}")
        yield tree
    finally:
        for name in reversed(started):
            tree.stack("down", name)
        subprocess.run(["docker", "network", "rm", "ai-platform", "ai-platform-signal"], capture_output=True)
        # Ollama's overlay of the test's folders: the next run's folders are others.
        subprocess.run(["docker", "volume", "rm", "ai-platform-ollama_models"], capture_output=True)
        tree.unshare_data()
        # Bind-mounted data belongs to container users; the test's tmp dir is removed as root.


def psql(database: str, sql: str) -> str:
    container = container_of("data", "postgres")
    return subprocess.run(
        ["docker", "exec", container, "psql", "-U", "postgres", "-d", database, "-Atc", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def container_of(project: str, service: str) -> str:
    return subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project=ai-platform-{project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def print_log(project: str, service: str) -> None:
    """The end of a container's log, for a failed test's report."""
    logs = subprocess.run(
        ["docker", "logs", "--tail", "40", container_of(project, service)], capture_output=True, text=True
    )
    print(f"{service}'s log:", logs.stdout[-4000:], logs.stderr[-4000:])


def get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, verify=False, allow_redirects=False, timeout=10, **kwargs)


def test_every_healthcheck_is_healthy(platform):
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", "label=com.docker.compose.project"], capture_output=True, text=True
    ).stdout.split()
    states = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True).stdout)
    with_check = {s["Name"]: s["State"]["Health"]["Status"] for s in states if s["State"].get("Health")}
    assert len(with_check) >= 13
    assert set(with_check.values()) == {"healthy"}, with_check
    assert all(s["State"]["Status"] == "running" for s in states)


def test_each_app_has_its_database_and_logs_in_with_its_own_password(platform):
    assert {"litellm", "n8n", "dify", "dify_plugin"} <= set(psql("postgres", "SELECT datname FROM pg_database").split())
    # The stand-in marks its database; the real n8n has migrated its own, as its own role.
    # (The real LiteLLM runs without one here.)
    assert psql("dify", "SELECT role FROM standin_marker") == "dify-api"
    assert psql("dify", "SELECT tableowner FROM pg_tables WHERE tablename = 'standin_marker'") == "dify"
    assert psql("n8n", "SELECT tableowner FROM pg_tables WHERE tablename = 'workflow_entity'") == "n8n"


def test_the_index_lists_every_service(platform):
    page = get(f"{EDGE}:8443/").text
    for title, url in [
        ("LiteLLM", "https://127.0.0.1:8443/litellm/"),
        ("AnythingLLM", "https://127.0.0.1:8444/"),
        ("Dify", "https://127.0.0.1:8445/"),
        ("n8n", "https://127.0.0.1:8446/"),
        ("Clawdbot", "https://127.0.0.1:8443/clawdbot/"),
    ]:
        assert f'href="{url}">{title}<' in page


@pytest.mark.parametrize(
    "url, standin, path",
    [
        (f"{EDGE}:8444/workspaces", "anythingllm", "/workspaces"),
        (f"{EDGE}:8445/apps", "dify-web", "/apps"),
        (f"{EDGE}:8445/console/api/setup", "dify-api", "/console/api/setup"),
    ],
)
def test_each_route_reaches_its_upstream_over_tls_with_security_headers(platform, url, standin, path):
    response = get(url)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["standin"], body["path"]) == (standin, path)
    assert body["headers"]["X-Forwarded-Proto"] == "https"
    # The edge serves the self-signed certificate here (no tailnet): no HSTS, which would lock a
    # browser out once it had seen a trusted one (firstboot/certificate.py; tests/test_firstboot_certificate.py
    # shows it sent with a trusted certificate).
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def assert_edge_security_headers(response: requests.Response) -> None:
    """Each header once (the app's own or the edge's): requests joins repeated headers with ", ".
    No HSTS at all behind the self-signed certificate, not even an app's own."""
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"].upper() in ("SAMEORIGIN", "DENY")
    assert "," not in response.headers["Referrer-Policy"]


def test_the_real_litellm_answers_through_the_edge_only_with_its_master_key(platform):
    models = f"{EDGE}:8443/litellm/v1/models"
    assert get(models).status_code == 401
    key = platform.env_values()["LITELLM_MASTER_KEY"]
    listed = get(models, headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200, listed.text[:500]
    # `embed`: the baked embedding model, AnythingLLM's embedder (the real LiteLLM loads the route).
    assert {"auto", "local", "smart", "embed"} <= {model["id"] for model in listed.json()["data"]}
    assert_edge_security_headers(listed)


def test_the_real_litellm_admin_ui_loads_under_its_sub_path_with_every_script(platform):
    """SERVER_ROOT_PATH=/litellm and the path passed through: the UI's scripts live under /litellm too."""
    page = get(f"{EDGE}:8443/litellm/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    scripts = set(re.findall(r'src="(/[^"]+\.js)"', page.text))
    assert scripts and all(script.startswith("/litellm/") for script in scripts), scripts
    for script in scripts:
        assert get(f"{EDGE}:8443{script}").status_code == 200, script


N8N = f"{EDGE}:8446"
N8N_OWNER = "owner@ai-platform.invalid"


def n8n_session(password: str) -> requests.Session:
    """Signed in to the real n8n as its owner (n8n binds its cookie to a browser id: send one)."""
    session = requests.Session()
    session.verify = False
    session.trust_env = False  # else REQUESTS_CA_BUNDLE outranks verify=False
    session.headers["browser-id"] = "stack-test"
    signed_in = session.post(f"{N8N}/rest/login", json={"emailOrLdapLoginId": N8N_OWNER, "password": password})
    assert signed_in.status_code == 200, signed_in.text[:500]
    return session


def test_the_real_n8n_has_its_owner_from_the_environment_and_nobody_else_claims_it(platform):
    password = platform.env_values()["N8N_OWNER_PASSWORD"]
    claim = {"email": "someone@example.com", "firstName": "A", "lastName": "B", "password": "Claim1234567"}
    refused = requests.post(f"{N8N}/rest/owner/setup", json=claim, verify=False, timeout=30)
    assert refused.status_code == 400 and "already setup" in refused.text, refused.text[:500]
    wrong = {"emailOrLdapLoginId": N8N_OWNER, "password": password + "x"}
    assert requests.post(f"{N8N}/rest/login", json=wrong, verify=False, timeout=30).status_code == 401
    with n8n_session(password) as session:
        me = session.get(f"{N8N}/rest/login", timeout=30)
        assert me.status_code == 200 and me.json()["data"]["email"] == N8N_OWNER, me.text[:500]
        assert me.json()["data"]["role"] == "global:owner"


def test_the_real_n8n_builds_its_links_on_the_edge_port_the_client_uses(platform):
    """N8N_EDITOR_BASE_URL and N8N_WEBHOOK_URL: without them n8n names https://HOST:5678/."""
    with n8n_session(platform.env_values()["N8N_OWNER_PASSWORD"]) as session:
        settings = session.get(f"{N8N}/rest/settings", timeout=30)
    assert settings.status_code == 200, settings.text[:500]
    data = settings.json()["data"]
    # (n8n trims the editor's trailing slash itself)
    assert (data["urlBaseEditor"].rstrip("/"), data["urlBaseWebhook"]) == (N8N, f"{N8N}/")
    assert_edge_security_headers(settings)


def test_the_real_n8n_has_a_ready_credential_for_the_gateway_with_its_own_key(platform):
    """Imported by the stack's post-start (`n8n import:credentials`): the owner finds it among their
    credentials, n8n keeps it encrypted with its own key, and a second import changes nothing."""
    env = platform.env_values()
    with n8n_session(env["N8N_OWNER_PASSWORD"]) as session:
        listed = session.get(f"{N8N}/rest/credentials", timeout=30)
    assert listed.status_code == 200, listed.text[:500]
    [credential] = [c for c in listed.json()["data"] if c["id"] == "aiPlatformLiteLLM"]
    assert (credential["name"], credential["type"]) == ("LiteLLM (ai-platform)", "openAiApi")
    assert env["LITELLM_KEY_N8N"] not in psql("n8n", "SELECT data FROM credentials_entity")
    container = container_of("n8n", "n8n")
    exported = subprocess.run(
        [
            "docker",
            "exec",
            container,
            "sh",
            "-c",
            "n8n export:credentials --id=aiPlatformLiteLLM --decrypted"
            " --output=/tmp/exported.json >/dev/null && cat /tmp/exported.json && rm /tmp/exported.json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    [data] = [c["data"] for c in json.loads(exported.stdout)]
    assert data == {"apiKey": env["LITELLM_KEY_N8N"], "url": "http://litellm:4000/v1"}

    again = subprocess.run(
        [str(platform.root / "stacks/n8n/post-start")],
        env={**platform.environ(), "COMPOSE_PROJECT": "ai-platform-n8n"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert psql("n8n", "SELECT count(*) FROM credentials_entity WHERE name = 'LiteLLM (ai-platform)'") == "1"


def test_the_real_openclaw_serves_its_control_ui_under_clawdbot_with_its_assets(platform):
    """Through the edge (a trusted proxy that rewrites the forwarded headers): the page and every
    script and style it names, all under gateway.controlUi.basePath."""
    page = get(f"{EDGE}:8443/clawdbot/")
    assert page.status_code == 200, page.text[:500]
    assert "text/html" in page.headers["Content-Type"]
    assets = set(re.findall(r'(?:src|href)="(/clawdbot/[^"]+\.(?:js|css))"', page.text))
    assert assets, page.text[:2000]
    for asset in assets:
        assert get(f"{EDGE}:8443{asset}").status_code == 200, asset
    assert_edge_security_headers(page)


def test_openclaws_own_paths_at_its_root_reach_it_and_it_checks_their_token(platform):
    """The canvas and A2UI hosts and the capability URLs OpenClaw hands its clients live under
    /__openclaw__/ at the gateway's root, outside its base path: the edge passes them on."""
    url = f"{EDGE}:8443/__openclaw__/a2ui/a2ui.bundle.js"
    refused = get(url)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized", refused.text[:300]
    token = platform.env_values()["OPENCLAW_GATEWAY_TOKEN"]
    served = get(url, headers={"Authorization": f"Bearer {token}"})
    assert served.status_code == 200 and "javascript" in served.headers["Content-Type"], served.text[:300]


@pytest.mark.parametrize("path, port", [("/anythingllm", 8444), ("/dify/apps", 8445), ("/n8n", 8446)])
def test_apps_without_a_sub_path_redirect_to_their_own_port(platform, path, port):
    response = get(f"{EDGE}:8443{path}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://127.0.0.1:{port}/"


def test_linking_a_phone_is_for_the_owner_only(platform):
    url = f"{EDGE}:8443/signal/v1/qrcodelink?device_name=test"
    refused = get(url)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert get(url, auth=("owner", "wrong")).status_code == 401
    owner = get(url, auth=("owner", platform.env_values()["EDGE_OWNER_PASSWORD"]))
    assert owner.status_code == 200 and owner.json()["path"] == "/v1/qrcodelink?device_name=test"


def test_websocket_upgrades_pass_through_the_edge(platform):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /clawdbot/ws HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with (
        socket.create_connection(("127.0.0.1", 8443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(request.encode())
        head = tls.recv(4096).decode()
    assert head.startswith("HTTP/1.1 101"), head
    assert "Upgrade: websocket" in head


def test_a_client_over_its_rate_answers_429(platform):
    with requests.Session() as session:
        # (liveliness: LiteLLM's /health would call every model)
        url = f"{EDGE}:8443/litellm/health/liveliness"
        codes = [session.get(url, verify=False, timeout=10).status_code for _ in range(400)]
    assert 429 in codes
    assert codes[0] == 200


def test_in_a_browser_the_owner_pairs_openclaws_control_ui_and_it_connects(platform, chromium):
    """The owner's first visit: the token from `builder credentials`, then OpenClaw's pairing request
    for this new browser, approved as the owner approves it (`openclaw devices approve`); the page
    then connects over its WebSocket through the edge and lists LiteLLM's models."""
    watched = Watched(chromium, "openclaw-control-ui")
    try:
        page = watched.page
        page.goto(f"{EDGE}:8443/clawdbot/")
        # Its first connect, with no token, is refused: the page then asks for it.
        page.get_by_text("This Gateway expects its token").wait_for(timeout=60_000)
        page.locator("#login-gate-credential").fill(platform.env_values()["OPENCLAW_GATEWAY_TOKEN"])
        page.get_by_role("button", name="Connect").click()
        # The owner sees the request in `openclaw devices list` (the gateway names it in its close reason).
        request_id = watched.wait_for(pending_pairing_request, 180, "pairing request in `openclaw devices list`")
        approved = openclaw_cli("devices", "approve", request_id)
        assert approved.returncode == 0, approved.stderr[-2000:]
        page.get_by_text("Connected", exact=True).wait_for(timeout=60_000)
        watched.wait_for(
            lambda: any('"provider":"litellm"' in f and '"id":"auto"' in f for f in watched.frames), 60, "models"
        )
        watched.screenshot()
        assert watched.broken == []
    except BaseException:
        print_log("clawdbot", "clawdbot")
        raise
    finally:
        watched.close()


def openclaw_cli(*arguments: str) -> subprocess.CompletedProcess:
    container = container_of("clawdbot", "clawdbot")
    command = ["docker", "exec", container, "openclaw", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def pending_pairing_request() -> str | None:
    listed = openclaw_cli("devices", "list", "--json")
    found = re.findall(r'"requestId"\s*:\s*"([^"]+)"', listed.stdout)
    return found[0] if listed.returncode == 0 and found else None


def test_in_a_browser_litellms_admin_ui_renders_its_login(platform, chromium):
    """Every script of the UI runs (none refused, none rate-limited) and its login form appears."""
    watched = Watched(chromium, "litellm-admin-ui")
    try:
        watched.page.goto(f"{EDGE}:8443/litellm/ui/")
        watched.page.get_by_text("Access your LiteLLM Admin UI").wait_for(timeout=60_000)
        watched.page.wait_for_load_state("networkidle")
        watched.screenshot()
        assert watched.broken == []
    finally:
        watched.close()


def test_in_a_browser_the_owner_signs_in_to_n8n_and_its_push_connection_stays_open(platform, chromium):
    """The real n8n's editor on its edge port: the sign-in page (no setup page: the owner is set), the
    owner's password from `builder credentials`, then the editor with its push WebSocket open (n8n
    closes one whose Origin does not match the host the edge passes on)."""
    watched = Watched(chromium, "n8n-editor")
    try:
        page = watched.page
        page.goto(f"{N8N}/")
        page.wait_for_url("**/signin**", timeout=120_000)
        page.locator('input[name="emailOrLdapLoginId"]').fill(N8N_OWNER)
        page.locator('input[name="password"]').fill(platform.env_values()["N8N_OWNER_PASSWORD"])
        page.get_by_role("button", name="Sign in").click()
        # Signed in: n8n opens its editor, or first its AI assistant's introduction.
        page.wait_for_url(lambda url: "/signin" not in url, timeout=120_000)
        page.goto(f"{N8N}/workflow/new")  # the editor canvas: its layout opens the push connection
        push = watched.wait_for(lambda: [s for s in watched.sockets if "/rest/push" in s.url], 60, "push WebSocket")
        page.wait_for_timeout(5_000)  # a refused push is closed at once, with "Invalid origin!"
        assert not push[0].is_closed(), watched.frames
        assert not any("Invalid origin" in frame for frame in watched.frames)
        watched.screenshot()
        assert watched.broken == []
    except BaseException:
        print(f"n8n's page at {watched.page.url}:", watched.page.inner_text("body")[:2000])
        print("its errors:", watched.errors, watched.broken)
        watched.screenshot()
        print_log("n8n", "n8n")
        raise
    finally:
        watched.close()


def test_in_a_browser_the_index_links_every_app_to_a_page_that_answers(platform, chromium):
    """As the owner (the Signal link asks for the owner's password)."""
    owner = {"username": "owner", "password": platform.env_values()["EDGE_OWNER_PASSWORD"]}
    watched = Watched(chromium, "index", http_credentials=owner)
    try:
        watched.page.goto(f"{EDGE}:8443/")
        links = watched.page.eval_on_selector_all("a", "anchors => anchors.map(a => [a.textContent, a.href])")
        assert {title for title, _ in links} >= {"LiteLLM", "AnythingLLM", "Dify", "n8n", "Clawdbot"}
        watched.screenshot()
        for title, href in links:
            response = watched.page.goto(href)
            assert response is not None and response.status == 200, (title, href)
        assert watched.broken == []
    finally:
        watched.close()


def test_a_stopped_service_does_not_stop_the_others(platform):
    assert platform.stack("down", "clawdbot").returncode == 0
    try:
        # NGINX answers for this route alone, and promptly: its 502 once Docker's DNS no longer knows
        # the name, its 504 while the stopped container's address is still cached (a connect timeout),
        # each as the edge's "starting" answer (routes.conf): 503. Never a request held for a minute.
        stopped = requests.get(f"{EDGE}:8443/clawdbot/", verify=False, allow_redirects=False, timeout=30)
        assert stopped.status_code == 503 and stopped.headers.get("Retry-After") == "5"
        assert get(f"{EDGE}:8443/litellm/health/liveliness").status_code == 200
    finally:
        assert platform.stack("up", "clawdbot").returncode == 0
    assert get(f"{EDGE}:8443/clawdbot/").status_code == 200


def test_a_restart_keeps_the_data(platform):
    """A workflow saved in the real n8n, and a row in a stand-in's database, after n8n and the
    database restart."""
    password = platform.env_values()["N8N_OWNER_PASSWORD"]
    workflow = {"name": "kept-across-restart", "nodes": [], "connections": {}, "settings": {}}
    with n8n_session(password) as session:
        saved = session.post(f"{N8N}/rest/workflows", json=workflow, timeout=60)
    assert saved.status_code == 200, saved.text[:500]
    psql("dify", "INSERT INTO standin_marker (role) VALUES ('kept-across-restart')")
    for name in ["n8n", "data"]:
        assert platform.stack("down", name).returncode == 0
    for name in ["data", "n8n"]:
        result = platform.stack("up", name)
        assert result.returncode == 0, result.stderr
    assert "kept-across-restart" in psql("dify", "SELECT role FROM standin_marker").split()
    with n8n_session(password) as session:
        listed = session.get(f"{N8N}/rest/workflows", timeout=60)
    assert listed.status_code == 200, listed.text[:500]
    assert "kept-across-restart" in {flow["name"] for flow in listed.json()["data"]}


def backups(environ: dict) -> list[str]:
    """The backups' names, newest first (`ai-platform-backup list`)."""
    return subprocess.run([str(BACKUP), "list"], env=environ, capture_output=True, text=True).stdout.split()


def test_a_backup_restores_a_dropped_database_table(platform):
    environ = platform.environ()
    made = subprocess.run([str(BACKUP), "create"], env=environ, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    name = backups(environ)[0]
    backup = platform.data / "backups" / name
    assert {"litellm", "n8n", "dify", "dify_plugin"} <= set((backup / "databases").read_text().split())
    # Checked in the data stack's own postgres (pg_restore --list of every dump), and recorded for the agent.
    assert json.loads((platform.data / "backups" / "last.json").read_text())["last_good"]["name"] == name
    listing = subprocess.run(["tar", "-tzf", str(backup / "files.tar.gz")], capture_output=True, text=True).stdout
    assert "n8n/" in listing and "anythingllm/server.env" in listing
    # The real n8n's database is in it, its tables with it.
    with (backup / "n8n.dump").open("rb") as dump:
        contents = subprocess.run(
            ["docker", "exec", "-i", container_of("data", "postgres"), "pg_restore", "--list"],
            stdin=dump, capture_output=True, text=True,
        )  # fmt: skip
    assert "TABLE public workflow_entity" in contents.stdout, contents.stderr
    # Restored into a stand-in's database (the real n8n would hold its tables while they are replaced).
    psql("dify", "DROP TABLE standin_marker")
    restored = subprocess.run([str(BACKUP), "restore", name, "dify"], env=environ, capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    assert "dify-api" in psql("dify", "SELECT role FROM standin_marker").split()


def test_backups_keep_only_the_newest_ones(platform):
    environ = {**platform.environ(), "AI_PLATFORM_BACKUP_KEEP": "2"}
    for _ in range(3):
        made = subprocess.run([str(BACKUP), "create"], env=environ, capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        time.sleep(1.1)  # backup names are timestamps to the second
    names = backups(environ)
    assert len(names) == 2 and names == sorted(names, reverse=True)


def test_a_backup_taken_while_an_app_writes_its_files_is_whole(platform):
    """The apps run during a backup (CI once failed on OpenClaw writing under clawdbot/ mid-copy)."""
    time.sleep(1.1)  # backup names are timestamps to the second: not the previous test's
    live = platform.data / "clawdbot" / "backup-test-writes"
    live.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def write_all_the_time():
        count = 0
        while not stop.is_set():
            count += 1
            with open(live / "growing.log", "a") as log:
                log.write("x" * 4096)
            (live / f"note-{count % 20}").write_text(str(count))
            (live / f"note-{(count + 10) % 20}").unlink(missing_ok=True)

    writer = threading.Thread(target=write_all_the_time)
    writer.start()
    try:
        made = subprocess.run([str(BACKUP), "create"], env=platform.environ(), capture_output=True, text=True)
    finally:
        stop.set()
        writer.join()
        shutil.rmtree(live)
    assert made.returncode == 0, made.stderr
    name = backups(platform.environ())[0]
    archive = platform.data / "backups" / name / "files.tar.gz"
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True)
    assert listing.returncode == 0, f"the archive is not whole: {listing.stderr}"
    assert "clawdbot/backup-test-writes/growing.log" in listing.stdout.split()
