"""A check for the VM chain (tests/test_chain_local.py) to call, not a test module: the online half of
`builder resize`, which tests/test_firstboot_data_growth.py can only run where root holds
CAP_SYS_RESOURCE. Against the chain's running instance: the data disk grown by 1 GiB through qemu
while the platform runs, then the agent's health check grows the mounted ext4 (its console line),
and the files on it are still there. Returns the seconds from the resize to the grown filesystem.

`chain` is test_chain_local.Chain (its run, ssh and console_tail); nothing here boots anything.
"""

from __future__ import annotations

import json
import time

GROWN = "ai-platform data: data filesystem grown from"


def check_online_growth(chain, name: str, timeout: float = 300) -> float:
    def data_bytes() -> int:
        return int(chain.ssh("df -B1 --output=size /mnt/data | tail -1").strip())

    chain.ssh("echo before-the-resize > /mnt/data/resize-check")
    before = data_bytes()
    size_gib = -(-before // 1024**3) + 1
    started = time.monotonic()
    result = chain.run("--json", "resize", name, "--target", "local", "--size", str(size_gib))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["running"] is True
    while data_bytes() < before + 512 * 1024**2:
        assert time.monotonic() - started < timeout, f"no growth within {timeout:g} s: {chain.console_tail()}"
        time.sleep(5)
    seconds = time.monotonic() - started
    assert GROWN in chain.console_tail()
    assert chain.ssh("cat /mnt/data/resize-check").strip() == "before-the-resize"
    return seconds
