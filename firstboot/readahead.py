"""The baked models read ahead once after boot, so Ollama's first answer does not wait on the volume.

An EBS volume made from a snapshot (the root volume of an instance of the image) fetches each block
from S3 the first time it is read: a model's first load is many times slower than later ones. This
reads every file under the models folder once, in the background (ai-platform-readahead.service:
lowest CPU and I/O priority), unless the launch pays AWS to initialize the volume
(image.root_volume_initialization_rate_mibps; the agent's instance config then says
`models_read_ahead: false`). Not on the local target: its disks are local files.

Its progress is a small state file (/var/lib/ai-platform/readahead.json): bytes read of the total,
and where it stands, so a run stopped by a reboot resumes there and one after completion reads
nothing. The health check copies its line into the health report; `builder status` shows it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from firstboot.report import TAG_VALUE_LIMIT
from firstboot.status import write_atomic

STATE_PATH = Path("/var/lib/ai-platform/readahead.json")
MODELS_DIR = Path("/opt/ai-platform/models")
CHUNK = 4 * 1024 * 1024
SAVE_EVERY = 256 * 1024 * 1024  # progress written this often (and after each file)
PREFIX = "ai-platform readahead:"
TAG = "ai-platform:readahead"


def listing(root: Path) -> list[tuple[str, int]]:
    """(path under root, size) of every regular file, in a stable order."""
    found = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found.append((str(path.relative_to(root)), path.stat().st_size))
    return sorted(found)


def load(state_path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if isinstance(state, dict):
            return state
    return {}


def _save(state: dict, state_path: Path) -> None:
    state_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(state_path, json.dumps(state, indent=2) + "\n", mode=0o644)


def read_ahead(
    root: Path = MODELS_DIR,
    state_path: Path = STATE_PATH,
    chunk: int = CHUNK,
    save_every: int = SAVE_EVERY,
    clock: Callable[[], float] = time.time,
) -> dict:
    """Read every file under root once; the state when done. A state for the same files resumes at
    its file and offset; a finished one returns at once, reading nothing."""
    files = listing(root)
    total = sum(size for _, size in files)
    state = load(state_path)
    if state.get("files") != len(files) or state.get("total_bytes") != total:
        state = {"files": len(files), "total_bytes": total, "read_bytes": 0, "file_index": 0, "offset": 0}
        state["started_at"] = clock()
    if state.get("done"):
        return state
    since_save = 0
    for index in range(state["file_index"], len(files)):
        name, _size = files[index]
        offset = state["offset"] if index == state["file_index"] else 0
        state["file_index"], state["offset"] = index, offset
        with open(root / name, "rb", buffering=0) as handle:
            handle.seek(offset)
            while block := handle.read(chunk):
                state["offset"] += len(block)
                state["read_bytes"] += len(block)
                since_save += len(block)
                if since_save >= save_every:
                    _save(state, state_path)
                    since_save = 0
        state["file_index"], state["offset"] = index + 1, 0
        _save(state, state_path)
    state.update(done=True, finished_at=clock(), read_bytes=total)
    _save(state, state_path)
    return state


def line(state: dict) -> str:
    """The report's line: how far the read-ahead got."""
    if not state:
        return f"{PREFIX} not started"
    total, read = state.get("total_bytes", 0), state.get("read_bytes", 0)
    share = f"{100 * read / total:.0f}%" if total else "100%"
    amount = f"{read / 2**30:.1f}/{total / 2**30:.1f} GiB ({share})"
    if state.get("done"):
        seconds = state.get("finished_at", 0) - state.get("started_at", 0)
        return f"{PREFIX} done, {amount} in {seconds:.0f} s"
    return f"{PREFIX} reading, {amount}"


def publish_tag(ec2, instance_id: str, text: str) -> None:
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": TAG, "Value": text[:TAG_VALUE_LIMIT]}])
