"""Each app's own LiteLLM virtual key: registered once by the litellm stack's ensure-keys.py, and
found again at every later start (a reboot, a new instance on the same volume).

The script runs against a loopback stand-in of LiteLLM's key API, not the real proxy: the real
one keeps virtual keys only in its database, through a Prisma client whose engines come only from
binaries.prisma.sh, which no registry here serves (tests/real_images.py). The stand-in answers as
LiteLLM 1.83.10's key routes do (read in litellm/proxy/management_endpoints/key_management_endpoints.py):
the master key required, /key/info 404 for an unknown key, a custom `key` taken as given, a
`key_alias` unique. The stand-in image's litellm (tests/standins/standin.py) answers the same way
from Postgres, for the chain test.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from stack_fixtures import STACKS_DIR

MASTER = "sk-master-test"
APP_KEYS = {
    "AI_PLATFORM_APP_KEY_ANYTHINGLLM": "sk-anythingllm-test",
    "AI_PLATFORM_APP_KEY_CLAWDBOT": "sk-clawdbot-test",
    "AI_PLATFORM_APP_KEY_N8N": "sk-n8n-test",
    "AI_PLATFORM_APP_KEY_DIFY": "sk-dify-test",
}


def load_script():
    spec = importlib.util.spec_from_file_location("ensure_keys", STACKS_DIR / "litellm/ensure-keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KeyApi(BaseHTTPRequestHandler):
    tokens: ClassVar[dict[str, dict]] = {}  # sha256 of the key -> what /key/generate was given
    calls: ClassVar[list[str]] = []

    def do_GET(self):
        self.calls.append(f"GET {urlsplit(self.path).path}")
        if not self.authorized():
            return
        key = parse_qs(urlsplit(self.path).query)["key"][0]
        token = hashlib.sha256(key.encode()).hexdigest()
        if token in self.tokens:
            self.answer(200, {"key": token, "info": self.tokens[token]})
        else:
            self.answer(404, {"error": {"message": "Key not found in database", "param": "key", "code": "404"}})

    def do_POST(self):
        self.calls.append(f"POST {self.path}")
        if not self.authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if any(entry["key_alias"] == body["key_alias"] for entry in self.tokens.values()):
            taken = f"Key with alias '{body['key_alias']}' already exists."
            self.answer(400, {"error": {"message": f"{taken} Unique key aliases across all keys are required."}})
            return
        self.tokens[hashlib.sha256(body["key"].encode()).hexdigest()] = body
        self.answer(200, {"key": body["key"], "key_alias": body["key_alias"]})

    def authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {MASTER}":
            return True
        self.answer(401, {"error": {"message": "Authentication Error, Invalid proxy server token passed."}})
        return False

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def litellm(monkeypatch):
    KeyApi.tokens, KeyApi.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeyApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = load_script()
    monkeypatch.setattr(script, "API", f"http://127.0.0.1:{server.server_port}")
    yield script
    server.shutdown()


def environ(**extra):
    return {"DATABASE_URL": "postgresql://litellm@postgres/litellm", "LITELLM_MASTER_KEY": MASTER, **APP_KEYS, **extra}


def aliases() -> dict[str, str]:
    return {entry["metadata"]["app"]: entry["key_alias"] for entry in KeyApi.tokens.values()}


def test_the_first_start_registers_each_apps_key_under_its_name(litellm, capsys):
    assert litellm.main(environ()) == 0
    assert aliases() == {"anythingllm": "anythingllm", "clawdbot": "clawdbot", "dify": "dify", "n8n": "n8n"}
    # Registered with the very value the app holds: the app's config never changes.
    assert set(KeyApi.tokens) == {hashlib.sha256(key.encode()).hexdigest() for key in APP_KEYS.values()}
    out = capsys.readouterr().out
    assert "n8n's key registered now, as 'n8n'" in out
    assert not any(key in out for key in [MASTER, *APP_KEYS.values()])


def test_a_later_start_finds_every_key_and_registers_none(litellm, capsys):
    assert litellm.main(environ()) == 0
    KeyApi.calls.clear()
    capsys.readouterr()

    assert litellm.main(environ()) == 0

    assert KeyApi.calls == ["GET /key/info"] * 4
    assert capsys.readouterr().out.count("key is registered") == 4


def test_a_lost_key_is_registered_again_beside_the_older_one_holding_its_alias(litellm, capsys):
    assert litellm.main(environ()) == 0
    replaced = environ(AI_PLATFORM_APP_KEY_N8N="sk-n8n-new")

    assert litellm.main(replaced) == 0

    fingerprint = hashlib.sha256(b"sk-n8n-new").hexdigest()[:8]
    assert sorted(a for a in (e["key_alias"] for e in KeyApi.tokens.values()) if a.startswith("n8n")) == [
        "n8n",
        f"n8n-{fingerprint}",
    ]


def test_without_a_database_there_are_no_virtual_keys_and_nothing_is_asked(litellm, capsys):
    assert litellm.main(environ(DATABASE_URL="")) == 0
    assert KeyApi.calls == []
    assert "without a database" in capsys.readouterr().out


def test_a_refused_master_key_fails_the_start_with_litellms_reason(litellm, capsys):
    assert litellm.main(environ(LITELLM_MASTER_KEY="sk-wrong")) == 1
    err = capsys.readouterr().err
    assert "/key/info answered 401" in err and "Invalid proxy server token" in err
    assert KeyApi.tokens == {}


def test_an_unreachable_litellm_fails_the_start_saying_where_it_looked(monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(script, "API", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setattr(script, "ATTEMPTS", 2)
    monkeypatch.setattr(script, "PAUSE", 0.01)
    assert script.main(environ()) == 1
    assert "LiteLLM at http://127.0.0.1:9 cannot be reached" in capsys.readouterr().err
