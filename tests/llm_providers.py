"""The real LiteLLM (its local image, tests/real_images.py) in front of providers that misbehave.

The model providers are out of reach here, so one loopback HTTP server plays each way a provider
fails, by path: an OpenAI-compatible endpoint that answers (`/ok`), refuses the key (`/401`), is
over its rate (`/429`), fails (`/500`), accepts and never answers (`/hang`), and an Ollama that
answers (`/ollama`), slowly when asked (`/slow-ollama`). A port nobody listens on stands for a
refused connection. LiteLLM runs on the host's network with the platform's rendered config, its
cloud route pointed at one of those paths per case; the test and `bench/litellm_fallbacks.py`
ask it and read which deployment answered.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from json_http import send_json

CLOUD_ANSWER = "answered by the cloud stand-in"
LOCAL_ANSWER = "answered by the Ollama stand-in"
MASTER_KEY = "sk-fallback-test"
# How each failing case reaches LiteLLM: the path of the stand-in, or None for a refused connection.
CASES = {"refused": None, "401": "/401", "429": "/429", "500": "/500", "hang": "/hang"}


class _Provider(BaseHTTPRequestHandler):
    stop: threading.Event
    hits: list[str]

    def log_message(self, *_args) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        case = self.path.split("/")[1]
        self.hits.append(case)
        if case == "hang":
            self.stop.wait()  # accepted, never answered
            return
        if case in ("401", "429", "500"):
            body = {"error": {"message": f"stand-in says {case}", "type": "error", "code": case}}
            return self._send(int(case), body)
        if case in ("ollama", "slow-ollama"):
            if case == "slow-ollama":
                time.sleep(3)
            message = {"role": "assistant", "content": LOCAL_ANSWER}
            body = {
                "model": request.get("model", ""),
                "created_at": "2026-01-01T00:00:00Z",
                "message": message,
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 5,
                "eval_count": 5,
            }
            return self._send(200, body)
        choice = {"index": 0, "message": {"role": "assistant", "content": CLOUD_ANSWER}, "finish_reason": "stop"}
        body = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", ""),
            "choices": [choice],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
        }
        self._send(200, body)

    def _send(self, status: int, body: dict) -> None:
        send_json(self, status, body)


@dataclass
class Providers:
    port: int
    closed_port: int
    server: ThreadingHTTPServer
    stop: threading.Event
    hits: list[str]  # the first part of each request's path, in order

    def base(self, path: str | None) -> str:
        if path is None:
            return f"http://127.0.0.1:{self.closed_port}/v1"
        return f"http://127.0.0.1:{self.port}{path}/v1"

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_providers() -> Providers:
    stop, hits = threading.Event(), []
    handler = type("Provider", (_Provider,), {"stop": stop, "hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Providers(server.server_address[1], free_port(), server, stop, hits)


def fallback_config(
    rendered: dict, providers: Providers, ollama_path: str = "/ollama", hang_timeout: float | None = None
) -> dict:
    """The rendered config with its Ollama on the stand-in, and per case a copy of its cloud
    `smart` route (same timeouts and retries) on that case's endpoint, falling back as `smart` does.
    `hang_timeout` shortens the hung provider's timeout only: the tests show that the route's own
    timeout gives way (without it the request would wait for LiteLLM's request_timeout); the bench
    keeps the rendered one, whose cost it measures."""
    config = json.loads(json.dumps(rendered))
    config["general_settings"].pop("database_url", None)
    for entry in config["model_list"]:
        params = entry["litellm_params"]
        if params["model"].startswith(("ollama_chat/", "ollama/")):
            params["api_base"] = f"http://127.0.0.1:{providers.port}{ollama_path}"
    [smart] = [entry for entry in config["model_list"] if entry["model_name"] == "smart"]
    smart["litellm_params"]["api_base"] = providers.base("/ok")
    rules = {name: targets for rule in config["router_settings"]["fallbacks"] for name, targets in rule.items()}
    [auto] = [entry for entry in config["model_list"] if entry["model_name"] == "auto"]
    for case, path in CASES.items():
        params = {**smart["litellm_params"], "api_base": providers.base(path)}
        if case == "hang" and hang_timeout is not None:
            params["timeout"] = hang_timeout
        config["model_list"].append({"model_name": f"smart-{case}", "litellm_params": params})
        config["router_settings"]["fallbacks"].append({f"smart-{case}": rules["smart"]})
        # `auto` as rendered, its cloud tiers on this case's endpoint.
        routed = json.loads(json.dumps(auto))
        router = routed["litellm_params"]["complexity_router_config"]
        router["tiers"] = {
            tier: f"smart-{case}" if route == "smart" else route for tier, route in router["tiers"].items()
        }
        routed["model_name"] = f"auto-{case}"
        config["model_list"].append(routed)
        config["router_settings"]["fallbacks"].append({f"auto-{case}": rules["auto"]})
    return config


@dataclass
class Proxy:
    url: str
    container: str

    def ask(self, model: str, prompt: str = "hi", timeout: float = 600) -> tuple[requests.Response, float]:
        began = time.monotonic()
        response = requests.post(
            f"{self.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            json={"model": model, "messages": [{"role": "user", "content": prompt}]},
            timeout=timeout,
        )
        return response, time.monotonic() - began

    def logs(self) -> str:
        done = subprocess.run(["docker", "logs", "--tail", "60", self.container], capture_output=True, text=True)
        return done.stdout + done.stderr

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)


def start_proxy(image: str, config: dict, folder: Path, timeout: float = 180) -> Proxy:
    """The real LiteLLM with `config`, on the host's network (the stand-ins are on its loopback)."""
    path = folder / "config.yaml"
    path.write_text(json.dumps(config, indent=2))
    port = free_port()
    environ = [
        "-e",
        f"LITELLM_MASTER_KEY={MASTER_KEY}",
        "-e",
        "OPENAI_API_KEY=sk-standin",
        "-e",
        "ANTHROPIC_API_KEY=sk-standin",
    ]
    command = ["docker", "run", "-d", "--network", "host", *environ, "-v", f"{path}:/app/config.yaml:ro", image]
    container = subprocess.run(
        [*command, "--config", "/app/config.yaml", "--port", str(port), "--host", "127.0.0.1"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    proxy = Proxy(f"http://127.0.0.1:{port}", container)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{proxy.url}/health/liveliness", timeout=5).status_code == 200:
                return proxy
        except requests.RequestException:
            pass
        time.sleep(1)
    logs = proxy.logs()
    proxy.stop()
    raise AssertionError(f"LiteLLM did not start within {timeout:g} s:\n{logs[-3000:]}")
