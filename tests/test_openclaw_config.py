"""The OpenClaw config an instance renders, checked by the real OpenClaw's own strict validator
(npm's openclaw, on Node 24): an unknown or missing key stops its gateway at start."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from stack_fixtures import STACKS_DIR

from firstboot.apps import clawdbot
from firstboot.instance_config import StackSettings

pytestmark = pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm (Debian's npm package)")


@pytest.fixture(scope="module")
def openclaw():
    from real_apps import openclaw

    return openclaw()


def run_openclaw(openclaw, tmp_path, document: dict, *arguments: str) -> subprocess.CompletedProcess:
    """The real `openclaw ARGUMENTS` with `document` as its config, in a HOME of its own."""
    binary, environ = openclaw
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps(document))
    (tmp_path / "state").mkdir(exist_ok=True)
    environ = {
        **environ,
        "HOME": str(tmp_path),
        "OPENCLAW_CONFIG_PATH": str(config),
        "OPENCLAW_STATE_DIR": str(tmp_path / "state"),
        "OPENCLAW_GATEWAY_TOKEN": "test-token",
        "LITELLM_API_KEY": "sk-test",
    }
    return subprocess.run([str(binary), *arguments], env=environ, capture_output=True, text=True, timeout=300)


def validate(openclaw, tmp_path, document: dict) -> subprocess.CompletedProcess:
    return run_openclaw(openclaw, tmp_path, document, "config", "validate", "--json")


def rendered(settings: StackSettings, names: list[str]) -> dict:
    template = (STACKS_DIR / "clawdbot/openclaw.json").read_text()
    return json.loads(clawdbot.openclaw_config(template, clawdbot.control_ui_origins(settings, names)))


@pytest.mark.parametrize(
    "settings, names",
    [
        (StackSettings(), ["ai-platform-demo.tail1234.ts.net", "ai-platform-demo", "100.64.0.7"]),
        (StackSettings(edge_bind=("10.0.2.15",), public_host="127.0.0.1", public_ports={8443: 40001}), ["demo"]),
    ],
    ids=["tailnet", "local"],
)
def test_the_rendered_config_passes_openclaws_validator(openclaw, tmp_path, settings, names):
    result = validate(openclaw, tmp_path, rendered(settings, names))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["valid"] is True


def test_the_validator_refuses_the_keys_of_older_releases(openclaw, tmp_path):
    """The check can fail: the Signal keys this stack shipped before 2026.9 stop the gateway."""
    document = rendered(StackSettings(), ["demo"])
    document["channels"]["signal"] = {"enabled": False, "apiMode": "container", "httpUrl": "http://signal-api:8080"}
    result = validate(openclaw, tmp_path, document)
    assert result.returncode != 0
    assert "apiMode" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def signal_plugin(tmp_path_factory):
    """The Signal plugin as the bake lays it in: the pinned npm tarball, its integrity checked."""
    from builder.bake import openclaw_plugins

    (pin,) = [pin for pin in openclaw_plugins.pins() if pin["id"] == "signal"]
    target = tmp_path_factory.mktemp("plugins") / "signal"
    openclaw_plugins.unpack(openclaw_plugins.fetch(pin), target)
    return target


def plugins_list(openclaw, tmp_path, document: dict) -> dict:
    result = run_openclaw(openclaw, tmp_path, document, "plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    return {plugin["id"]: plugin for plugin in json.loads(result.stdout)["plugins"]}


def test_with_the_bots_number_the_signal_channel_is_on_through_the_baked_plugin(openclaw, tmp_path, signal_plugin):
    template = (STACKS_DIR / "clawdbot/openclaw.json").read_text()
    document = json.loads(clawdbot.openclaw_config(template, ["https://demo:8443"], "+15555550123", str(signal_plugin)))
    assert (
        document["channels"]["signal"]["enabled"] is True
        and document["channels"]["signal"]["account"] == "+15555550123"
    )
    result = validate(openclaw, tmp_path, document)
    assert result.returncode == 0 and json.loads(result.stdout)["valid"] is True, result.stdout + result.stderr
    plugin = plugins_list(openclaw, tmp_path, document)["signal"]
    assert (plugin["status"], plugin["enabled"], plugin["origin"]) == ("loaded", True, "config"), plugin
    assert plugin["source"].startswith(str(signal_plugin))
    # The container's path is what the instance renders.
    rendered_for_instance = json.loads(clawdbot.openclaw_config(template, [], "+15555550123"))
    assert rendered_for_instance["plugins"]["load"]["paths"] == ["/opt/openclaw-plugins/signal"]


def test_without_a_number_the_channel_stays_off_and_no_plugin_loads(openclaw, tmp_path):
    document = rendered(StackSettings(), ["demo"])
    assert document["channels"]["signal"]["enabled"] is False and "plugins" not in document
    assert "signal" not in plugins_list(openclaw, tmp_path, document)


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path):
    from builder.bake import openclaw_plugins
    from builder.errors import BuilderError

    (pin,) = openclaw_plugins.pins()
    good = openclaw_plugins.fetch(pin)
    with pytest.raises(BuilderError, match="the pin says"):
        openclaw_plugins.check_integrity(good + b"\0", pin["integrity"], "tampered")
