"""Boot to ready: a launch of the baked local image, power-on to agent done, step by step, beside a bare
cloud-init boot of the same base (no agent, no stacks).

    .venv/bin/python bench/boot_to_ready.py --config PLATFORM.yaml [--name bench] [--keep] [--skip-bare]

PLATFORM.yaml must name a local state dir that holds a baked image (`builder bake --target local`,
or the one tests/local_bake.py bakes). The launch is the user's (`builder launch --wait --json`);
the times are when builder saw each console line (it polls every 2 s), and the agent's own
duration of each step. The bare boot is the base the bake started from with a seed that sets only
a host name, timed to cloud-init's "finished" line on the console. Both run under the accelerator
`local.accelerator` resolves to here. Nothing is asserted: numbers for the note and the README.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder.bake.local_base import cache_dir  # noqa: E402
from builder.local.accelerator import resolve  # noqa: E402
from builder.local.debian_base import build_debian_base  # noqa: E402
from builder.local.qemu import make_overlay, make_seed, qemu_command  # noqa: E402


def launch(config: Path, name: str, keep: bool = False) -> dict:
    builder = str(REPO / ".venv/bin/builder")
    began = time.monotonic()
    result = subprocess.run(
        [
            builder,
            "--config",
            str(config),
            "--json",
            "launch",
            name,
            "--target",
            "local",
            "--wait",
            "--wait-timeout",
            "3600",
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - began
    if not keep:
        subprocess.run([builder, "--config", str(config), "destroy", name, "--target", "local"], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"launch failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout), "seconds": seconds}


def bare_boot(work: Path) -> float:
    base = build_debian_base(cache_dir())
    accelerator = resolve("auto", base.kernel, cache_dir(), lambda line: print(line, file=sys.stderr))
    data = work / "data.img"
    data.write_bytes(b"")
    data.open("r+b").truncate(1 << 30)
    console = work / "console.log"
    command = qemu_command(
        kernel=base.kernel,
        initrd=base.initrd,
        root=make_overlay(base.disk, work / "root.qcow2"),
        data_disk=data,
        data_serial="vol0bench0000000000",
        seed=make_seed(work / "seed.iso", "i-bare-boot", "bare", "#cloud-config\nhostname: bare\n"),
        serial_log=console,
        accelerator=accelerator,
        memory_mib=4096,
    )
    began = time.monotonic()
    vm = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - began < 600:
            if (
                console.exists()
                and "Cloud-init v." in console.read_text(errors="replace")
                and " finished at " in console.read_text(errors="replace")
            ):
                return time.monotonic() - began
            time.sleep(0.5)
        raise SystemExit("the bare boot did not finish cloud-init within 600 s")
    finally:
        vm.kill()
        vm.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--name", default="bench")
    parser.add_argument("--keep", action="store_true", help="leave the launched instance running (destroy it yourself)")
    parser.add_argument("--skip-bare", action="store_true", help="only the launch (a bare boot measured before)")
    arguments = parser.parse_args()
    if not arguments.skip_bare:
        with tempfile.TemporaryDirectory() as work:
            bare = bare_boot(Path(work))
        print(f"bare cloud-init boot of the base: {bare:.0f} s to cloud-init finished", flush=True)
    launched = launch(arguments.config.resolve(), arguments.name, arguments.keep)
    print(f"baked image, builder launch --wait: {launched['seconds']:.0f} s to agent {launched['agent_state']}")
    if not arguments.skip_bare:
        print(f"ratio: {launched['seconds'] / bare:.1f}")
    for step in launched.get("agent_steps", []):
        print(f"  [{step['at_seconds']:6.1f} s] {step['line'].removeprefix('firstboot: ')}")


if __name__ == "__main__":
    main()
