"""`local.accelerator: auto`: KVM only where a kernel really boots under it, within a bound."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from builder.local import accelerator


@pytest.fixture
def lines():
    return []


def test_a_forced_choice_is_kept_without_a_probe(tmp_path, lines):
    for setting in ("tcg", "kvm"):
        assert accelerator.resolve(setting, None, tmp_path, lines.append, device=tmp_path / "none") == setting
    assert lines == [] and not (tmp_path / "kvm-probe.json").exists()


def test_no_kvm_device_is_tcg_with_one_line_saying_why(tmp_path, lines):
    assert accelerator.resolve("auto", None, tmp_path, lines.append, device=tmp_path / "kvm") == "tcg"
    assert len(lines) == 1 and "TCG" in lines[0] and str(tmp_path / "kvm") in lines[0]


def hanging_qemu(tmp_path: Path) -> str:
    """A qemu that never exits: what a KVM that hangs in the guest's first instructions looks like."""
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(3600)\n")
    fake.chmod(0o755)
    return str(fake)


def test_a_hanging_probe_is_killed_at_its_deadline(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"")
    reason = accelerator.probe(hanging_qemu(tmp_path), kernel, seconds=1)
    assert reason is not None and "within 1 s" in reason


def test_the_answer_is_kept_for_this_host_boot(tmp_path, lines, monkeypatch):
    device = tmp_path / "kvm"
    device.write_bytes(b"")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"")
    calls = []
    monkeypatch.setattr(accelerator, "probe", lambda *args: calls.append(args) or "it hangs here")
    monkeypatch.setattr(accelerator.shutil, "which", lambda _name: sys.executable)
    for _ in range(3):
        assert accelerator.resolve("auto", kernel, tmp_path, lines.append, device=device) == "tcg"
    assert len(calls) == 1 and len(lines) == 3


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs qemu")
def test_the_probe_recognises_a_kernel_that_boots(tmp_path):
    """The probe's notion of "boots", checked under TCG (which always works) with the local base's
    real kernel: it reaches its no-root panic and qemu exits."""
    from vm_image import CACHE, GUEST_PACKAGES

    from builder.local.debian_base import build_debian_base

    base = build_debian_base(CACHE / "images", extra_packages=GUEST_PACKAGES)
    assert accelerator.probe(shutil.which("qemu-system-x86_64"), base.kernel, seconds=60, accelerator="tcg") is None
