"""Pull every image of the lock by digest, verify it, tag it as the stacks name it (run in the image).

A mirror (REGISTRY_MIRROR, image.mirrors.registry) serves the same paths without the registry's
host: docker.io/library/postgres is MIRROR/library/postgres. A pin without a digest (baked with
--allow-unresolved) is pulled by tag, and the digest it got goes into the bill of materials.
"""

import json
import os
import subprocess
import sys


def docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def main(lock_path, env_path):
    mirror = os.environ.get("REGISTRY_MIRROR", "").rstrip("/")
    mirror_host = mirror.split("://", 1)[-1] if mirror else ""
    with open(lock_path) as handle:
        lock = json.load(handle)
    lines = ["# The images of the lock, pulled and verified at bake time; never pulled again."]
    for pin in lock["images"]:
        repository, tag, digest = pin["repository"], pin["tag"], pin.get("digest")
        path = repository.split("/", 1)[1]
        source = f"{mirror_host}/{path}" if mirror_host else repository
        reference = f"{source}@{digest}" if digest else f"{source}:{tag}"
        print(f"pulling {reference}", flush=True)
        pulled = docker("pull", "--quiet", reference)
        if pulled.returncode != 0:
            setting = "image.mirrors.registry" if not mirror else f"image.mirrors.registry ({mirror})"
            sys.exit(f"cannot pull {repository}:{tag} from {reference}: {pulled.stderr.strip()} (set {setting})")
        repo_digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", reference).stdout)
        if digest and not any(entry.endswith("@" + digest) for entry in repo_digests):
            sys.exit(f"{reference}: pulled, but its digests {repo_digests} do not include {digest}")
        tagged = docker("tag", reference, f"{repository}:{tag}")
        if tagged.returncode != 0:
            sys.exit(f"docker tag {reference} {repository}:{tag}: {tagged.stderr.strip()}")
        lines.append(f"{pin['variable']}={repository}:{tag}")
    with open(env_path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
