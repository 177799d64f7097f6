"""LiteLLM keeps its books with no internet: on a booted instance, the image's own LiteLLM and
PostgreSQL, on a Docker network with no way out (`--internal`), migrate the database, take a virtual
key and book a request's spend under it.

This is what the platform needs of LiteLLM's image at first boot: with a DATABASE_URL and no
Prisma engines cached, the proxy fetches Prisma from npm and its engines from binaries.prisma.sh
at start, and without a network it loses its database, while /health/liveliness stays green. So
this test asks what only a working database gives: /health/readiness says "db": "connected", the
tables the platform reads exist, and a chat completion made with an app's key leaves a row in
"LiteLLM_SpendLogs" that names the key (api_key is the key's sha256, metadata.user_api_key_alias
its alias). Facts from litellm 1.83.10 (the pinned tag): proxy/utils.py hash_token,
proxy/litellm_pre_call_utils.py (user_api_key_alias), health_endpoints/_health_endpoints.py
(readiness), main.py (mock_response: no provider is called); spend rows are flushed every
PROXY_BATCH_WRITE_AT (10 s) plus up to 5. Upstream's docker/test_offline_migration.sh checks the
same way (an --internal network). It needs Docker running: the bake runs it before sysprep
(image/provision/85-test-with-docker.sh), so every bake proves it on the LiteLLM image it holds,
and a booted instance can run it too. Its containers, network and files are removed afterwards.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
import time

import pytest
from images_env import image_of
from litellm_books import SPEND_ROW, TABLES

LOCK = "/opt/ai-platform/images.lock.json"
PASSWORD = "offline-check"  # a throwaway database of a throwaway container, on a network of its own
MODEL = "offline-check"
ALIAS = "offline-check-app"
START_TIMEOUT = 900  # the real proxy migrates first; under emulation (no KVM) minutes
CONFIG = f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://127.0.0.1:9/v1
      api_key: none
"""
# Python in LiteLLM's container asks its API (the network has no way in from the host either).
CALL = """
import json, sys, urllib.error, urllib.request
method, path, key, body = sys.argv[1:5]
request = urllib.request.Request("http://127.0.0.1:4000" + path, data=body.encode() if body else None,
    method=method, headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        print(json.dumps({"status": response.status, "body": json.loads(response.read() or b"{}")}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": error.read().decode("utf-8", "replace")[:500]}))
"""


class OfflinePair:
    """PostgreSQL and LiteLLM from the image's pins, alone on an internal network."""

    def __init__(self, host):
        self.host = host
        suffix = secrets.token_hex(4)
        names = (f"ai-platform-offline-{part}-{suffix}" for part in ("net", "pg", "llm"))
        self.network, self.postgres, self.litellm = names
        self.directory = f"/tmp/ai-platform-offline-{suffix}"
        self.master = "sk-" + secrets.token_hex(16)

    def run(self, command: str, check: bool = True):
        result = self.host.run(command)
        if check:
            assert result.rc == 0, f"{command}: {result.stderr[-2000:]}"
        return result

    def start(self) -> None:
        self.run(f"docker network create --internal {self.network}")
        self.run(
            f"docker run -d --name {self.postgres} --network {self.network} "
            f"-e POSTGRES_PASSWORD={PASSWORD} {image_of(self.host, 'POSTGRES_IMAGE')}"
        )
        self.run(f"mkdir -p {self.directory} && printf %s {shlex.quote(CONFIG)} > {self.directory}/config.yaml")
        environment = {
            "DATABASE_URL": f"postgresql://postgres:{PASSWORD}@{self.postgres}:5432/postgres",
            "LITELLM_MASTER_KEY": self.master,
            "LITELLM_SALT_KEY": "sk-" + secrets.token_hex(16),
            # As the platform's litellm stack runs it (stacks/litellm/compose.yaml).
            "STORE_MODEL_IN_DB": "False",
            "PRISMA_OFFLINE_MODE": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        flags = " ".join(f"-e {name}={shlex.quote(value)}" for name, value in environment.items())
        self.run(
            f"docker run -d --name {self.litellm} --network {self.network} {flags} "
            f"-v {self.directory}/config.yaml:/app/config.yaml:ro {image_of(self.host, 'LITELLM_IMAGE')} "
            "--config /app/config.yaml --port 4000"
        )

    def call(self, method: str, path: str, key: str, body: dict | None = None) -> dict:
        arguments = " ".join(shlex.quote(a) for a in (method, path, key, json.dumps(body) if body else ""))
        result = self.run(f"docker exec {self.litellm} python3 -c {shlex.quote(CALL)} {arguments}", check=False)
        return json.loads(result.stdout) if result.rc == 0 and result.stdout.strip() else {"status": None}

    def sql(self, query: str) -> str:
        command = f"docker exec {self.postgres} psql -U postgres -d postgres -Atc {shlex.quote(query)}"
        return self.run(command).stdout.strip()

    def logs(self) -> str:
        return self.run(f"docker logs --tail 40 {self.litellm} 2>&1", check=False).stdout

    def wait_until_ready(self) -> dict:
        deadline = time.monotonic() + START_TIMEOUT
        seen: dict = {}
        while time.monotonic() < deadline:
            running = self.run(f"docker inspect -f '{{{{.State.Running}}}}' {self.litellm}", check=False)
            if running.stdout.strip() != "true":
                break  # it exited: its logs say why
            seen = self.call("GET", "/health/readiness", self.master)
            if seen.get("status") == 200 and seen["body"].get("db") == "connected":
                return seen["body"]
            time.sleep(5)
        raise AssertionError(f"LiteLLM never reported its database connected (last: {seen}):\n{self.logs()}")

    def stop(self) -> None:
        self.run(f"docker rm -f -v {self.litellm} {self.postgres}", check=False)
        self.run(f"docker network rm {self.network}", check=False)
        self.run(f"rm -rf {self.directory}", check=False)


PLACEHOLDER = "(a one-file placeholder: it cannot run)"  # what a test's bake (tests/bake_sources.py) pins


@pytest.mark.docker_running
def test_litellm_migrates_and_books_spend_per_key_with_no_network(host):
    pins = {pin["variable"]: pin for pin in json.loads(host.file(LOCK).content_string)["images"]}
    placeholders = [name for name in ("POSTGRES_IMAGE", "LITELLM_IMAGE") if PLACEHOLDER in pins[name]["source"]]
    if placeholders:  # only a test's bake that never starts a stack pins those
        pytest.skip(f"{', '.join(placeholders)}: the lock pins a placeholder that cannot run")
    with host.sudo():
        pair = OfflinePair(host)
        try:
            pair.start()
            pair.wait_until_ready()
            names = ", ".join(f"'{table}'" for table in TABLES)
            found = pair.sql(f"SELECT table_name FROM information_schema.tables WHERE table_name IN ({names})")
            assert sorted(found.split()) == sorted(TABLES), f"tables after its migrations: {found!r}\n{pair.logs()}"

            key = "sk-" + secrets.token_hex(16)
            made = pair.call("POST", "/key/generate", pair.master, {"key": key, "key_alias": ALIAS})
            assert made.get("status") == 200, made
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "mock_response": "booked"}
            answered = pair.call("POST", "/v1/chat/completions", key, body)
            assert answered.get("status") == 200, answered
            assert answered["body"]["choices"][0]["message"]["content"] == "booked"

            hashed = hashlib.sha256(key.encode()).hexdigest()
            deadline, booked = time.monotonic() + 90, ""
            while time.monotonic() < deadline and not booked:
                booked = pair.sql(SPEND_ROW.format(hashed=hashed))
                time.sleep(3)
            assert booked == ALIAS, f"no spend row names the key: {booked!r}\n{pair.logs()}"
        finally:
            pair.stop()
