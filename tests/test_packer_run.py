"""Packer's machine-readable output as `builder bake` shows it, from real Packer runs (null builder)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from builder.bake import packer_run

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="needs packer")

TEMPLATE = """
variable "fail" {
  type    = bool
  default = false
}
source "null" "n" {
  communicator = "none"
}
build {
  sources = ["source.null.n"]
  provisioner "shell-local" {
    inline = [
      "echo provisioning, with a comma",
      "echo 'cannot fetch http://mirror/x (set image.mirrors.models)' >&2",
      "${var.fail ? "exit 3" : "true"}",
    ]
  }
  post-processor "manifest" {
    output = "manifest.json"
    custom_data = { input_hash = "abc" }
  }
}
"""


def run(tmp_path, fail: bool, env: dict | None = None):
    template = tmp_path / "t.pkr.hcl"
    template.write_text(TEMPLATE)
    steps, output = [], []
    outcome = packer_run.run_packer(
        ["packer", "build", "-machine-readable", "-var", f"fail={'true' if fail else 'false'}", str(template)],
        tmp_path / "packer.log",
        tmp_path,
        lambda elapsed, text: steps.append((elapsed, text)),
        output.append,
        env=env,
    )
    return outcome, steps, output


def test_a_work_folder_too_deep_for_plugin_sockets_gets_a_short_temporary_folder(tmp_path):
    """A long state_dir (or pytest-xdist's deeper temporary folders): Packer's plugin sockets in it
    would be over the 107 bytes a unix socket's path may hold, and every plugin failed to start."""
    import os

    deep = tmp_path / ("d" * (packer_run.SOCKET_PATH_MAX - len(str(tmp_path))))
    deep.mkdir()
    crashed, _, _ = run(tmp_path, fail=False, env={**os.environ, "TMPDIR": str(deep)})
    assert crashed.returncode != 0  # what the bake met before it chose the folder
    with packer_run.temporary_dir(deep) as temporary:
        assert temporary != deep and len(str(temporary / packer_run.PLUGIN_SOCKET)) <= packer_run.SOCKET_PATH_MAX
        outcome, _, _ = run(tmp_path, fail=False, env={**os.environ, "TMPDIR": str(temporary)})
    assert outcome.returncode == 0 and not temporary.exists()
    with packer_run.temporary_dir(tmp_path) as temporary:
        assert temporary == tmp_path  # a work folder that fits is used as it is


def test_steps_output_and_manifest_of_a_good_run(tmp_path):
    outcome, steps, output = run(tmp_path, fail=False)
    assert outcome.returncode == 0
    assert any("Running local shell script" in text for _, text in steps)
    assert all(elapsed >= 0 for elapsed, _ in steps)
    assert "null.n: provisioning, with a comma" in output  # Packer's escaped comma restored
    builds = packer_run.read_manifest(tmp_path / "manifest.json")
    assert builds[0]["custom_data"] == {"input_hash": "abc"}
    assert (tmp_path / "packer.log").read_text().count(",ui,") > 3


def test_a_failed_run_names_the_cause_and_keeps_the_provisioners_last_words(tmp_path):
    outcome, _, _ = run(tmp_path, fail=True)
    assert outcome.returncode != 0
    assert "non-zero exit status" in packer_run.failure_reason(outcome)
    assert any("set image.mirrors.models" in line for line in outcome.last_output)


def test_ami_ids_of_an_amazon_artifact():
    assert packer_run.ami_ids("us-east-1:ami-0123,eu-west-1:ami-0456") == {
        "us-east-1": "ami-0123",
        "eu-west-1": "ami-0456",
    }


PARENT = """
import sys
from pathlib import Path
from builder.bake import packer_run
packer_run.run_packer(
    ["packer", "build", "-machine-readable", sys.argv[1]], Path(sys.argv[2]), Path(sys.argv[3]),
    lambda elapsed, text: print(text, flush=True),
)
"""


def test_packer_is_interrupted_when_builder_is_killed(tmp_path):
    """SIGKILL leaves `builder` no chance to pass the interrupt on: the kernel must (PR_SET_PDEATHSIG)."""
    template = tmp_path / "slow.pkr.hcl"
    template.write_text(
        'source "null" "n" {\n  communicator = "none"\n}\n'
        'build {\n  sources = ["source.null.n"]\n'
        '  provisioner "shell-local" {\n    inline = ["echo long step", "sleep 611"]\n  }\n}\n'
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(template), str(tmp_path / "packer.log"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    for line in parent.stdout:
        if "Running local shell script" in line:
            break
    packer = subprocess.run(["pgrep", "-f", f"packer build.*{template}"], capture_output=True, text=True)
    packer_pids = [int(pid) for pid in packer.stdout.split()]
    assert packer_pids, "packer is not running"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    alive = packer_pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.5)
    assert not alive, "packer outlived the builder that ran it"
    # Packer 1.6.6's shell-local leaves its command running when cancelled (its builders stop their VMs).
    subprocess.run(["pkill", "-f", "sleep 611"])


def _running(pid: int) -> bool:
    """Alive and not a zombie (a dead child its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
