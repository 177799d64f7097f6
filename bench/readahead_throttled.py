"""Read-ahead on a volume that fetches each block at its first read (issue #29): a model's first load
with and without `firstboot readahead` before it, in a VM whose disks behave like a fresh EBS volume.

    .venv/bin/python bench/readahead_throttled.py [--model-mib 512] [--cold-mibps 20] [--gap 20]

What stands in for what, and why:
- A fresh EBS volume made from a snapshot reads a block from S3 the first time, then from the volume.
  Here each disk is qemu's copy-on-read filter over a qcow2 overlay whose backing image (the
  "snapshot") is reached through a throttle group: a first read of a block crosses the throttle at
  `--cold-mibps` and is copied into the overlay, so every later read of it is a local read. That is
  the first-touch penalty, not a throttle on every read (qemu's plain `throttling.*` drive options
  would slow the read-ahead's reads and the model's second load alike, and prove nothing).
- Ollama's first answer after boot is dominated by loading the model's weights from disk; Ollama
  cannot run here (it is in neither Debian's archive nor PyPI, and no model can be downloaded), so
  the "first load" is what its loader does to the disk: every byte of the model file read once. The
  file is random bytes (no compression anywhere on the path).
- The read-ahead is the agent's own code (firstboot/readahead.py), run in the guest the way
  ai-platform-readahead.service runs it: idle I/O class, nice 19.

Each case gets a disk of its own, none hydrated, in one boot of the Debian base (the guest's page
cache is dropped before each timed load, so only the disk counts):
- without: the owner's first question right after boot, nothing read ahead;
- with, question after `--gap` s: the read-ahead started at boot, the question comes while it runs;
- with, question after the read-ahead finished.
Nothing is asserted: numbers for the note and the README.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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

CASES = ("without", "during", "after")
MARK = "BENCH-READAHEAD"

GUEST_SCRIPT = r"""
import os, subprocess, sys, time
from pathlib import Path

MODEL_DIR = "models"
GAP = float(sys.argv[1])

def say(text):
    with open("/dev/ttyS0", "w") as console:
        console.write(f"MARK {text}\n")

def mount(case):
    device = f"/dev/disk/by-id/virtio-cold-{case}"
    target = Path(f"/mnt/{case}")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "ro,noload", device, str(target)], check=True)
    return target

def first_load(models):
    # What the model's loader does to the disk: every byte once; the page cache dropped first.
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    began = time.monotonic()
    read = 0
    for path in sorted(models.rglob("*")):
        if path.is_file():
            with open(path, "rb", buffering=0) as handle:
                while block := handle.read(1 << 20):
                    read += len(block)
    return time.monotonic() - began, read

def read_ahead(root):
    agent = root / "agent"
    code = (
        "import sys; from pathlib import Path; from firstboot.readahead import read_ahead; "
        f"read_ahead(root=Path('{root / MODEL_DIR}'), state_path=Path('/run/readahead-{root.name}.json'))"
    )
    return subprocess.Popen(
        ["ionice", "-c3", "nice", "-n19", "python3", "-c", code], env={**os.environ, "PYTHONPATH": str(agent)}
    )

try:
    root = mount("without")
    seconds, read = first_load(root / MODEL_DIR)
    say(f"without {seconds:.2f} {read}")
    seconds, read = first_load(root / MODEL_DIR)
    say(f"hydrated {seconds:.2f} {read}")

    root = mount("during")
    ahead = read_ahead(root)
    time.sleep(GAP)
    seconds, read = first_load(root / MODEL_DIR)
    say(f"during {seconds:.2f} {read} after-gap {GAP:.0f}")
    ahead.wait()

    root = mount("after")
    began = time.monotonic()
    ahead = read_ahead(root)
    if ahead.wait() != 0:
        raise SystemExit("the read-ahead failed")
    say(f"readahead-took {time.monotonic() - began:.2f}")
    seconds, read = first_load(root / MODEL_DIR)
    say(f"after {seconds:.2f} {read}")
    say("done")
except BaseException as exc:
    say(f"failed {exc!r}")
    raise
""".replace("MARK", MARK)


def volume_image(work: Path, model_mib: int) -> Path:
    """The "snapshot": ext4 with a model file of random bytes and the agent's package, made without
    mounting (mkfs.ext4 -d), as qcow2."""
    tree = work / "tree"
    blobs = tree / "models" / "blobs"
    blobs.mkdir(parents=True)
    with open(blobs / "sha256-bench-model", "wb") as model:
        for _ in range(model_mib):
            model.write(os.urandom(1 << 20))
    shutil.copytree(REPO / "firstboot", tree / "agent" / "firstboot", ignore=shutil.ignore_patterns("__pycache__"))
    raw = work / "snapshot.raw"
    size_mib = model_mib + 64
    subprocess.run(["truncate", "-s", f"{size_mib}M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(raw)], check=True)
    snapshot = work / "snapshot.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(snapshot)], check=True)
    raw.unlink()
    shutil.rmtree(tree)
    return snapshot


def lazy_disk(case: str, snapshot: Path, work: Path, cold_bytes_per_second: int) -> list[str]:
    """qemu options for a disk that reads a block through the throttle once, then locally."""
    overlay = make_overlay(snapshot, work / f"volume-{case}.qcow2")
    return [
        "-object",
        f"throttle-group,id=s3-{case},x-bps-read={cold_bytes_per_second}",
        "-blockdev",
        f"driver=file,filename={snapshot},node-name=snap-file-{case},read-only=on",
        "-blockdev",
        f"driver=qcow2,file=snap-file-{case},node-name=snap-{case},read-only=on",
        "-blockdev",
        f"driver=throttle,throttle-group=s3-{case},file=snap-{case},node-name=s3-{case}-path,read-only=on",
        "-blockdev",
        f"driver=file,filename={overlay},node-name=vol-file-{case}",
        "-blockdev",
        f"driver=qcow2,file=vol-file-{case},backing=s3-{case}-path,node-name=vol-{case}",
        "-blockdev",
        f"driver=copy-on-read,file=vol-{case},node-name=lazy-{case}",
        "-device",
        f"virtio-blk-pci,drive=lazy-{case},serial=cold-{case}",
    ]


def run(model_mib: int, cold_mibps: float, gap: float, timeout: float) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        snapshot = volume_image(work, model_mib)
        base = build_debian_base(cache_dir())
        accelerator = resolve("auto", base.kernel, cache_dir(), lambda line: print(line, file=sys.stderr))
        user_data = (
            "#cloud-config\nhostname: readahead\nwrite_files:\n  - path: /root/bench.py\n    content: |\n"
            + "".join(f"      {line}\n" for line in GUEST_SCRIPT.splitlines())
            + f"runcmd:\n  - [python3, /root/bench.py, '{gap:g}']\n"
        )
        data = work / "data.img"  # the platform's data disk slot, unused here
        data.write_bytes(b"")
        data.open("r+b").truncate(1 << 20)
        console = work / "console.log"
        command = qemu_command(
            kernel=base.kernel,
            initrd=base.initrd,
            root=make_overlay(base.disk, work / "root.qcow2"),
            data_disk=data,
            data_serial="vol0bench0000000000",
            seed=make_seed(work / "seed.iso", "i-readahead", "readahead", user_data),
            serial_log=console,
            accelerator=accelerator,
            memory_mib=2048,
        )
        for case in CASES:
            command += lazy_disk(case, snapshot, work, int(cold_mibps * 2**20))
        vm = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        began = time.monotonic()
        try:
            while True:
                text = console.read_text(errors="replace") if console.exists() else ""
                found = dict(re.findall(rf"^{MARK} (\S+) ?(.*)$", text, flags=re.MULTILINE))
                if "failed" in found:
                    raise SystemExit(f"the guest's bench failed: {found['failed']}\n{text[-3000:]}")
                if "done" in found:
                    return found
                if vm.poll() is not None:
                    raise SystemExit(f"qemu exited {vm.returncode}: {vm.stderr.read().decode()[-2000:]}")
                if time.monotonic() - began > timeout:
                    raise SystemExit(f"no result within {timeout:g} s:\n{text[-3000:]}")
                time.sleep(1)
        finally:
            vm.kill()
            vm.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-mib", type=int, default=512, help="the model file's size")
    parser.add_argument("--cold-mibps", type=float, default=20, help="a block's first read, MiB/s")
    parser.add_argument("--gap", type=float, default=20, help="seconds from boot to the first question")
    parser.add_argument("--timeout", type=float, default=1800)
    arguments = parser.parse_args()
    found = run(arguments.model_mib, arguments.cold_mibps, arguments.gap, arguments.timeout)
    mib = arguments.model_mib

    def seconds(case: str) -> float:
        return float(found[case].split()[0])

    print(f"model {mib} MiB; a block's first read at {arguments.cold_mibps:g} MiB/s (qemu copy-on-read + throttle)")
    print(f"  first load, nothing read ahead:         {seconds('without'):7.1f} s")
    print(f"  same disk again (every block local):     {seconds('hydrated'):7.1f} s")
    print(f"  read-ahead from boot, question at {arguments.gap:3.0f} s:  {seconds('during'):7.1f} s")
    print(f"  read-ahead finished first ({seconds('readahead-took'):5.1f} s):    {seconds('after'):7.1f} s")


if __name__ == "__main__":
    main()
