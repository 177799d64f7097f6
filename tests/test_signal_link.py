"""Linking Signal is one command and a scan: `builder signal link NAME` through the edge's owner route,
and the channel reported as waiting until linked, then Clawdbot restarted once by itself.

The Signal API's link endpoints are played by a stand-in on loopback: the real signal-cli-rest-api
starts a link session with Signal's servers, which no machine here reaches. It answers as 0.100
does (src/api/api.go: /v1/qrcodelink/raw → {"device_link_uri"}, /v1/accounts → ["+…"]) behind the
edge's Basic auth for the owner, and lists the number once the "phone" scanned.
"""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from json_http import send_json

from builder import signal_link
from builder.errors import BuilderError
from firstboot import health, signal_channel

ACCOUNT = "+15555550123"
PASSWORD = "owner-password"
URI = "sgnl://linkdevice?uuid=Zm9vYmFy&pub_key=QUJDREVGRw%3D%3D"


class SignalStandIn(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.linked_after_polls = 2  # the phone scans after the command has asked twice
        self.polls, self.link_sessions, self.linked = 0, 0, False
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status: int, body) -> None:
        send_json(self, status, body)

    def do_GET(self):
        server: SignalStandIn = self.server
        expected = "Basic " + base64.b64encode(f"owner:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:  # the edge's owner route
            return self.answer(401, {"error": "owner only"})
        if self.path.startswith("/signal/v1/qrcodelink/raw?device_name="):
            server.link_sessions += 1
            return self.answer(200, {"device_link_uri": URI})
        if self.path == "/signal/v1/accounts":
            if server.link_sessions:
                server.polls += 1
                server.linked = server.linked or server.polls > server.linked_after_polls
            return self.answer(200, [ACCOUNT] if server.linked else [])
        return self.answer(404, {"error": "no such route"})


@pytest.fixture
def standin():
    server = SignalStandIn()
    yield server
    server.shutdown()


def api(standin, password=PASSWORD) -> signal_link.SignalApi:
    return signal_link.SignalApi(standin.base, password)


def test_the_link_code_is_shown_and_the_command_returns_once_the_number_is_linked(standin):
    shown = []
    result = signal_link.link(api(standin), ACCOUNT, "ai-platform-demo", shown.append, timeout=30, poll=0.01)
    assert result.startswith(f"{ACCOUNT} is linked")
    # The QR code of exactly the URI the Signal API served, drawn in half-block characters.
    assert shown[0] == signal_link.qr_text(URI) and set(shown[0]) <= set(" █▀▄\n")
    assert any(URI in line for line in shown)
    assert standin.link_sessions == 1 and standin.polls == 3


def test_a_linked_number_gets_no_new_code(standin):
    standin.linked = True
    shown = []
    assert signal_link.link(api(standin), ACCOUNT, "demo", shown.append) == f"{ACCOUNT} is linked already"
    assert shown == [] and standin.link_sessions == 0  # a new session would unlink nothing, but confuses


def test_a_wrong_password_and_a_scan_that_never_comes_are_clear_errors(standin):
    with pytest.raises(BuilderError, match="refused the owner's password"):
        signal_link.link(api(standin, "wrong"), ACCOUNT, "demo", print)
    standin.linked_after_polls = 10**6
    with pytest.raises(BuilderError, match=r"not linked within 0\.05 s; run the command again"):
        signal_link.link(api(standin), ACCOUNT, "demo", lambda _line: None, timeout=0.05, poll=0.01)


def test_the_command_needs_the_bots_number(builder, tmp_path):
    config = tmp_path / "platform.yaml"
    config.write_text(f"version: 1\nlocal:\n  state_dir: {tmp_path}\n")
    result = builder("--config", str(config), "signal", "link", "demo", "--target", "local")
    assert result.code == 1 and "services.signal_api.account is not set" in result.err


def test_the_channel_waits_without_failing_then_clawdbot_restarts_once_linked():
    numbers: list[str] = []
    restarted = []
    waiting = signal_channel.state(ACCOUNT, lambda: numbers)
    assert waiting == signal_channel.WAITING
    line = health.summary({"clawdbot": "healthy", "signal_api": "healthy", health.SIGNAL_CHANNEL: waiting})
    assert line.startswith("ai-platform health: 2/2 healthy") and "signal channel waiting for its link" in line
    assert not signal_channel.follow(None, waiting, restarted.append)  # the first look: nothing to do
    assert not signal_channel.follow(waiting, waiting, restarted.append)
    numbers.append(ACCOUNT)
    linked = signal_channel.state(ACCOUNT, lambda: numbers)
    assert signal_channel.follow(waiting, linked, restarted.append)
    assert not signal_channel.follow(linked, linked, restarted.append)  # once, not every minute
    assert restarted == ["ai-platform-stack@clawdbot.service"]


def test_a_signal_api_that_cannot_answer_is_unknown_not_waiting():
    def broken():
        raise RuntimeError("the Signal API is not running")

    assert signal_channel.state(ACCOUNT, broken) == "unknown: the Signal API is not running"
    assert not signal_channel.follow(signal_channel.WAITING, "unknown: x", lambda unit: None)


def test_an_edge_out_of_reach_on_aws_points_at_the_tailnet_not_only_the_instance(builder, tmp_path, aws, monkeypatch):
    """It once asked only "is the instance running?" when this machine was not on the tailnet."""
    from moto_server import free_port

    from builder import endpoints, owner_credentials
    from builder.config.schema import PlatformConfig

    (tmp_path / "platform.yaml").write_text(f"version: 1\nservices:\n  signal_api:\n    account: '{ACCOUNT}'\n")
    config = PlatformConfig.model_validate({"version": 1})
    owner_credentials.ensure_aws(aws.client("ssm"), config, "alpha", lambda _line: None)
    monkeypatch.setattr(
        endpoints, "tailnet_bases", lambda _config, _name, _host=None: {"main": f"https://127.0.0.1:{free_port()}"}
    )
    result = builder("signal", "link", "alpha", "--timeout", "1")
    assert result.code == 1
    assert "cannot be reached" in result.err and "on the tailnet (`tailscale status` lists" in result.err, result.err
