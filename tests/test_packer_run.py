"""Packer's machine-readable output as `builder bake` shows it, from real Packer runs (null builder)."""

from __future__ import annotations

import shutil

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


def run(tmp_path, fail: bool):
    template = tmp_path / "t.pkr.hcl"
    template.write_text(TEMPLATE)
    steps, output = [], []
    outcome = packer_run.run_packer(
        ["packer", "build", "-machine-readable", "-var", f"fail={'true' if fail else 'false'}", str(template)],
        tmp_path / "packer.log",
        tmp_path,
        lambda elapsed, text: steps.append((elapsed, text)),
        output.append,
    )
    return outcome, steps, output


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
