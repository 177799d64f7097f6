"""The firstboot agent's own time per step, on the local target, first boot and a later boot.

Waits are excluded by construction: the data disk is present from the start, there is no network
(local target, no tailnet), and the systemd stand-in reports the stacks healthy at the first look.
What remains is the agent's own work: reading the config, probing and formatting the disk (a
64 MiB sparse image: mkfs time grows with the volume, lazily initialised on ext4), writing the
mount unit, the self-signed certificate (openssl), the secrets and the .env.

Run: .venv/bin/python bench/firstboot_steps.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from firstboot_machine import Machine

from firstboot.cli import main


def one_machine(root: Path) -> Machine:
    machine = Machine(root)
    machine.disk("vol-0123456789abcdef0")
    machine.instance_config()
    machine.cloud_init("local-bench")
    machine.systemd.polls_to_active = 1
    return machine


def boot(machine: Machine) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["run"], machine.settings())
    if code != 0:
        raise SystemExit(f"the agent failed: {machine.status()['first_error']}")
    return {step["name"]: step["seconds"] for step in machine.status()["steps"]}


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    logging.disable(logging.CRITICAL)
    first, later = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as directory:
            machine = one_machine(Path(directory))
            first.append(boot(machine))
            later.append(boot(machine))
    for title, samples in (("first boot", first), ("later boot", later)):
        print(f"{title} ({runs} runs), median seconds per step:")
        for step in samples[0]:
            print(f"  {step:<10} {statistics.median(s[step] for s in samples):8.3f}")
        totals = [sum(s.values()) for s in samples]
        print(f"  {'total':<10} {statistics.median(totals):8.3f}  (max {max(totals):.3f})")
    starts = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import firstboot.cli"], check=True)
        starts.append(time.perf_counter() - started)
    print(f"agent process start (interpreter + imports), median of {runs}: {statistics.median(starts):.3f} s")


if __name__ == "__main__":
    main_bench()
