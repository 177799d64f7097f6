"""The real nginx on the edge's rendered config while an app starts: "starting" (503 with Retry-After:
a page for a browser, JSON for any other client), then the app itself once it answers; the index
shows each app's state from the agent's state file.

nginx runs in a network namespace of its own (`unshare -n -m`, the edge's files bound over
/etc/nginx, as tests/test_stack_files.py does), so its ports (8443, 8446) are the namespace's, never
the host's. Docker's DNS (127.0.0.11, the edge's resolver) is a stand-in here: a few lines of DNS
that know the app names this test uses, because Docker's own resolver lives only inside a container.
The apps are plain HTTP servers started in the namespace when the test says so.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

KNOWN_NAMES = {"n8n", "litellm"}  # the containers Docker's DNS knows; any other name: NXDOMAIN


def answer_dns(query: bytes) -> bytes:
    """A one-question answer: 127.0.0.1 for a known name, NXDOMAIN for any other."""
    labels, offset = [], 12
    while query[offset]:
        labels.append(query[offset + 1 : offset + 1 + query[offset]].decode())
        offset += query[offset] + 1
    question = query[12 : offset + 5]
    known = ".".join(labels) in KNOWN_NAMES
    header = query[:2] + (b"\x81\x80" if known else b"\x81\x83") + b"\x00\x01" + (b"\x00\x01" if known else b"\x00\x00")
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x01\x00\x04\x7f\x00\x00\x01" if known else b""
    return header + b"\x00\x00\x00\x00" + question + answer


def serve_dns() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.11", 53))
    while True:
        query, client = sock.recvfrom(512)
        sock.sendto(answer_dns(query), client)


def app(port: int, status: int, body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def get(url: str, accept: str = "*/*") -> dict:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, error.read()
    return {"status": status, "type": headers.get("Content-Type", ""), "retry": headers.get("Retry-After"),
            "body": body.decode()}  # fmt: skip


def in_namespace(conf: Path, out: Path) -> None:
    """Run inside `unshare -n -m`: the edge, the DNS stand-in, the apps, and what a client sees."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["mount", "--bind", str(conf), "/etc/nginx"], check=True)
    threading.Thread(target=serve_dns, daemon=True).start()
    nginx = subprocess.Popen(["nginx", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off; error_log stderr;"])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", 8446), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        seen = {
            "browser_down": get("https://127.0.0.1:8446/", "text/html,application/xhtml+xml,*/*;q=0.8"),
            "api_down": get("https://127.0.0.1:8446/rest/workflows", "application/json"),
            "unknown_name": get("https://127.0.0.1:8443/clawdbot/", "text/html"),
            "page_direct": get("https://127.0.0.1:8443/.ai-platform-edge/starting.html", "text/html"),
            "state_before": get("https://127.0.0.1:8443/.ai-platform-edge/state.json"),
        }
        (conf / "ai-platform/state.json").write_text(json.dumps({"version": 1, "stacks": {"n8n": "starting"}}))
        seen["state_after"] = get("https://127.0.0.1:8443/.ai-platform-edge/state.json")
        seen["index"] = get("https://127.0.0.1:8443/", "text/html")
        app(5678, 200, b'{"app": "n8n"}')
        app(4000, 503, b'{"error": "litellm\'s own"}')
        seen["browser_up"] = get("https://127.0.0.1:8446/", "text/html")
        seen["apps_own_503"] = get("https://127.0.0.1:8443/litellm/health")
        (out / "seen.json").write_text(json.dumps(seen))
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    from stack_fixtures import make_tree
    from test_stack_files import edge_conf_dir

    base = tmp_path_factory.mktemp("edge-starting")
    tree = make_tree(base / "tree", services=["n8n", "litellm", "clawdbot"])
    conf = edge_conf_dir(tree, base)
    nginx_conf = (conf / "nginx.conf").read_text()  # the one line changed: the pid file, the machine's own
    (conf / "nginx.conf").write_text(nginx_conf.replace("pid /tmp/nginx.pid;", f"pid {base}/nginx.pid;"))
    result = subprocess.run(
        ["unshare", "-n", "-m", sys.executable, __file__, str(conf), str(base)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads((base / "seen.json").read_text())


def test_a_browser_gets_a_page_that_says_the_app_is_starting_and_reloads_itself(seen):
    down = seen["browser_down"]
    assert down["status"] == 503 and down["type"].startswith("text/html") and down["retry"] == "5"
    assert "This app is starting" in down["body"] and 'http-equiv="refresh"' in down["body"]
    # A name Docker's DNS does not know yet (the app's container not created yet): the same page.
    assert seen["unknown_name"]["status"] == 503 and "This app is starting" in seen["unknown_name"]["body"]


def test_an_api_client_gets_503_with_retry_after_and_json(seen):
    down = seen["api_down"]
    assert (down["status"], down["type"], down["retry"]) == (503, "application/json", "5")
    assert json.loads(down["body"])["error"] == "starting"


def test_once_the_app_answers_the_edge_serves_it(seen):
    assert seen["browser_up"]["status"] == 200 and json.loads(seen["browser_up"]["body"]) == {"app": "n8n"}


def test_an_apps_own_error_passes_as_it_is(seen):
    """Only nginx's own errors become "starting": LiteLLM's JSON 503 reaches its client unchanged."""
    own = seen["apps_own_503"]
    assert own["status"] == 503 and json.loads(own["body"]) == {"error": "litellm's own"} and own["retry"] is None


def test_the_starting_pages_are_internal(seen):
    assert seen["page_direct"]["status"] == 404


def test_the_index_shows_each_apps_state_from_the_agents_state_file(seen):
    assert seen["state_before"]["status"] == 404  # before the agent's first word: the index says "unknown"
    after = seen["state_after"]
    assert after["status"] == 200 and after["type"] == "application/json"
    assert json.loads(after["body"])["stacks"] == {"n8n": "starting"}
    index = seen["index"]["body"]
    assert '<li data-stack="n8n">' in index and '<span class="state">' in index
    assert "fetch('/.ai-platform-edge/state.json'" in index


if __name__ == "__main__":
    in_namespace(Path(sys.argv[1]), Path(sys.argv[2]))
