"""The baked models read ahead after boot (firstboot/readahead.py), on a temporary folder of files:
progress as bytes read of the total, nothing read again once done, a stopped run resumed where it
stopped; who asks for it (the instance config) and where its line shows (console, tag, `builder status`)."""

from __future__ import annotations

import builtins
import json

import pytest
from firstboot_machine import Machine
from test_userdata import config

from builder.userdata import instance_document
from firstboot import readahead
from firstboot.cli import main
from firstboot.instance_config import InstanceConfigError, parse_instance_config

MIB = 1024 * 1024


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    (root / "blobs").mkdir(parents=True)
    (root / "blobs/sha256-a").write_bytes(b"a" * (3 * MIB + 5))
    (root / "blobs/sha256-b").write_bytes(b"b" * (2 * MIB))
    (root / "manifests").mkdir()
    (root / "manifests/llama3.2").write_text('{"layers": []}')
    return root


class CountingOpen:
    """builtins.open, counting the bytes read through it; it raises once `stop_after` bytes were read
    (a reboot in the middle of the read-ahead)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.read = 0
        self.stop_after = stop_after

    def __call__(self, *args, **kwargs):
        handle = builtins.open(*args, **kwargs)  # noqa: SIM115 (closed by the wrapper's __exit__)
        counter = self

        class Counted:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def seek(self, offset):
                handle.seek(offset)

            def read(self, size):
                if counter.stop_after is not None and counter.read >= counter.stop_after:
                    raise KeyboardInterrupt("rebooted")
                block = handle.read(size)
                counter.read += len(block)
                return block

        return Counted()


def test_every_byte_is_read_once_and_progress_is_bytes_of_the_total(models, tmp_path, monkeypatch):
    counting = CountingOpen()
    monkeypatch.setattr(readahead, "open", counting, raising=False)
    state = readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB, clock=lambda: 100.0)
    total = 5 * MIB + 5 + len('{"layers": []}')
    assert counting.read == total
    assert (state["done"], state["read_bytes"], state["total_bytes"], state["files"]) == (True, total, total, 3)
    assert json.loads((tmp_path / "state.json").read_text())["done"] is True
    assert readahead.line(state) == "ai-platform readahead: done, 0.0/0.0 GiB (100%) in 0 s"


def test_once_done_a_later_boot_reads_nothing(models, tmp_path, monkeypatch):
    readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB)
    counting = CountingOpen()
    monkeypatch.setattr(readahead, "open", counting, raising=False)
    assert readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB)["done"]
    assert counting.read == 0


def test_a_stopped_read_ahead_resumes_where_it_stopped(models, tmp_path, monkeypatch):
    stopped = CountingOpen(stop_after=2 * MIB)
    monkeypatch.setattr(readahead, "open", stopped, raising=False)
    with pytest.raises(KeyboardInterrupt):
        readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB, save_every=MIB)
    saved = readahead.load(tmp_path / "state.json")
    assert not saved.get("done") and saved["read_bytes"] == 2 * MIB  # the progress, saved as it went
    assert readahead.line(saved).startswith("ai-platform readahead: reading, 0.0/0.0 GiB (40%)")
    resumed = CountingOpen()
    monkeypatch.setattr(readahead, "open", resumed, raising=False)
    state = readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB, save_every=MIB)
    assert state["done"] and state["read_bytes"] == state["total_bytes"]
    assert resumed.read == state["total_bytes"] - 2 * MIB  # the rest, not all again


def test_other_files_start_it_over(models, tmp_path):
    readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB)
    (models / "blobs/sha256-c").write_bytes(b"c" * MIB)
    state = readahead.read_ahead(models, tmp_path / "state.json", chunk=MIB)
    assert state["files"] == 4 and state["read_bytes"] == state["total_bytes"]


def test_only_aws_without_paid_initialization_reads_ahead_and_the_default_adds_no_key():
    aws = instance_document(config(), "alpha", "aws")
    assert "models_read_ahead" not in aws  # an image baked before the read-ahead boots this document
    assert parse_instance_config(aws, "instance.json").models_read_ahead
    paid = instance_document(config(image={"root_volume_initialization_rate_mibps": 200}), "alpha", "aws")
    assert paid["models_read_ahead"] is False
    assert not parse_instance_config(paid, "instance.json").models_read_ahead
    with pytest.raises(InstanceConfigError, match="models_read_ahead: must be true or false"):
        parse_instance_config({**aws, "models_read_ahead": "yes"}, "instance.json")


def test_the_command_reads_when_asked_and_the_health_check_reports_its_line_once(models, tmp_path, capsys):
    machine = Machine(tmp_path / "a")
    machine.instance_config()
    settings = machine.settings()
    settings.paths = type(settings.paths)(**{**settings.paths.__dict__, "models_dir": models})
    assert main(["readahead"], settings) == 0
    assert "not needed here" in capsys.readouterr().out
    assert not (settings.paths.state_dir / "readahead.json").exists()
    machine.instance_config(target="aws", models_read_ahead=False)  # AWS initializes the root volume
    assert main(["readahead"], settings) == 0
    assert "not needed here" in capsys.readouterr().out
    machine.instance_config(target="aws")
    assert main(["readahead"], settings) == 0
    assert capsys.readouterr().out.startswith("ai-platform readahead: done, ")
    machine.instance_config()  # the health check below runs as on the local target (no AWS here)
    assert main(["health"], machine.settings(containers=lambda _project: [])) == 0
    assert "ai-platform readahead: done" in capsys.readouterr().out
    assert main(["health"], machine.settings(containers=lambda _project: [])) == 0
    assert "ai-platform readahead" not in capsys.readouterr().out  # said once, until it moves
