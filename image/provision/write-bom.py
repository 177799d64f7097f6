"""The bill of materials of the image: what it was made from and what it holds (run in the image)."""

import glob
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


def run(*command):
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def main(path):
    lock = json.loads(Path("/opt/ai-platform/images.lock.json").read_text())
    images = []
    for pin in lock["images"]:
        local = f"{pin['repository']}:{pin['tag']}"
        digests = json.loads(run("docker", "image", "inspect", "--format", "{{json .RepoDigests}}", local))
        images.append({"reference": local, "locked_digest": pin.get("digest"), "repo_digests": digests})
    models = []
    for manifest in sorted(glob.glob("/opt/ai-platform/models/manifests/*/*/*/*")):
        parts = manifest.split("/")
        data = Path(manifest).read_bytes()
        models.append(
            {
                "model": f"{parts[-2]}:{parts[-1]}"
                if parts[-3] == "library"
                else f"{parts[-3]}/{parts[-2]}:{parts[-1]}",
                "manifest_digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "layers": [layer["digest"] for layer in json.loads(data)["layers"]],
            }
        )
    packages = dict(
        line.split("\t", 1) for line in run("dpkg-query", "-W", "-f", "${Package}\t${Version}\n").splitlines()
    )
    agent = run("/opt/ai-platform/agent/bin/pip", "show", "ai-platform-builder")
    bom = {
        "build_id": os.environ.get("BUILD_ID", ""),
        "input_hash": os.environ.get("INPUT_HASH", ""),
        "source_image": os.environ.get("SOURCE_IMAGE", ""),
        "os": dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().replace('"', "").splitlines()
            if "=" in line
        ),
        "agent_version": next((x.split(": ", 1)[1] for x in agent.splitlines() if x.startswith("Version: ")), ""),
        "images": images,
        "models": models,
        "apt_packages": packages,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(bom, handle, indent=2, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
