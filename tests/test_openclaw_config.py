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


def validate(openclaw, tmp_path, document: dict) -> subprocess.CompletedProcess:
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
    return subprocess.run(
        [str(binary), "config", "validate", "--json"], env=environ, capture_output=True, text=True, timeout=300
    )


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
