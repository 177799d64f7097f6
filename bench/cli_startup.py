"""How long `builder` takes to start: --help, and a full config validation, against bare Python.

Run: .venv/bin/python bench/cli_startup.py [--runs N]
Prints the median and the spread of wall-clock times of each command, each run in a new process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILDER = Path(sys.executable).with_name("builder")

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "builder --help": [str(BUILDER), "--help"],
    "builder config validate examples/platform.yaml": [
        str(BUILDER),
        "config",
        "validate",
        str(REPO / "examples" / "platform.yaml"),
    ],
    "builder config show": [str(BUILDER), "--config", str(REPO / "examples" / "platform.yaml"), "config", "show"],
}


def measure(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    print(f"{'command':<50} {'median ms':>10} {'min ms':>8} {'max ms':>8}   ({runs} runs each)")
    for name, command in COMMANDS.items():
        times = measure(command, runs)
        print(
            f"{name:<50} {statistics.median(times) * 1000:>10.1f} {min(times) * 1000:>8.1f} {max(times) * 1000:>8.1f}"
        )


if __name__ == "__main__":
    main()
