"""How long a bake with unchanged inputs takes: `builder bake` as a new process, cache hit, both targets.

AWS: a moto server stands in for EC2 (one describe_images for the base, one for the platform's
AMIs); local: the image recorded under the input hash. Each run is a whole `builder` process
(start-up, config, input hash over the sources, lookup). Median of N runs.
Run: .venv/bin/python bench/bake_cache.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from moto_server import MotoServer, make_tagged_ami  # noqa: E402

BUILDER = str(REPO / ".venv" / "bin" / "builder")


def timed(command: list[str], env: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        times.append(time.monotonic() - started)
        answer = json.loads(result.stdout)
        assert result.returncode == 0 and answer["cached"] is True, result.stderr
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        server = MotoServer(work)
        try:
            env = {**os.environ, "AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "testing"}
            env["AWS_SECRET_ACCESS_KEY"] = "testing"
            ec2 = server.client("ec2")
            base = ec2.describe_images()["Images"][0]
            config = work / "platform.yaml"
            config.write_text(
                f"version: 1\nlocal:\n  state_dir: {work / 'state'}\nimage:\n"
                f"  base_ami_owner: '{base['OwnerId']}'\n  base_ami_name_filter: '{base['Name']}'\n"
            )
            common = [BUILDER, "--config", str(config), "--json", "bake"]
            plan = json.loads(
                subprocess.run(
                    [*common, "--target", "aws", "--dry-run"], env=env, capture_output=True, text=True
                ).stdout
            )
            make_tagged_ami(
                ec2,
                base["ImageId"],
                "ai-platform-bench",
                {"ai-platform:platform": "ai-platform", "ai-platform:input-hash": plan["input_hash"]},
            )
            aws_seconds = timed([*common, "--target", "aws"], env, runs)

            local_plan = json.loads(
                subprocess.run(
                    [*common, "--target", "local", "--dry-run"], env=env, capture_output=True, text=True
                ).stdout
            )
            store = work / "state" / "ai-platform" / "images" / local_plan["input_hash"]
            store.mkdir(parents=True)
            for name in ("root.qcow2", "vmlinuz", "initrd.img"):
                (store / name).write_bytes(b"\0")
            (store / "image.json").write_text(
                json.dumps(
                    {
                        "disk": str(store / "root.qcow2"),
                        "kernel": str(store / "vmlinuz"),
                        "initrd": str(store / "initrd.img"),
                    }
                )
            )
            local_seconds = timed([*common, "--target", "local"], env, runs)
        finally:
            server.stop()
    print(f"bake with unchanged inputs, median of {runs} new processes:")
    print(f"  aws (moto):  {aws_seconds:.2f} s")
    print(f"  local:       {local_seconds:.2f} s")


if __name__ == "__main__":
    main()
