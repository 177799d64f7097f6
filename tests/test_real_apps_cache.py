"""The test cache's lock: CI's prewarm (tests/prewarm.py) and a test never make one entry twice."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import real_apps


def test_a_second_process_waits_for_the_first_to_finish_the_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(real_apps, "CACHE", tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); import real_apps; from pathlib import Path; "
            "real_apps.CACHE = Path(sys.argv[2]); "
            "lock = real_apps.cache_lock('entry'); lock.__enter__(); print('held', flush=True); time.sleep(3)",
            str(Path(__file__).parent),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    began = time.monotonic()
    with real_apps.cache_lock("entry"):
        waited = time.monotonic() - began
    holder.wait(timeout=10)
    assert waited > 1.5  # it had to wait for the holder to exit
