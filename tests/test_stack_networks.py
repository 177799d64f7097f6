"""The stack wrapper makes each network once while stacks start side by side.

Issue #29 let the stacks start at once; the chain's first boot then had two wrappers make
`ai-platform-signal` twice (Docker allows two networks of one name, and compose refuses both) and one
fail on the other's half-made `ai-platform` ("Pool overlaps"). The `docker` here is a stand-in that
keeps Docker's own behaviour in that race (a look, then a slow create that does not refuse a
duplicate name), because the real daemon's timing cannot be made to lose the race on demand.
"""

from __future__ import annotations

import os
import subprocess

from stack_fixtures import make_tree

FAKE_DOCKER = """#!/bin/bash
# docker network inspect NAME / network create ... NAME / compose ...: networks are files in $NETWORKS
state=$NETWORKS
case "$1 $2" in
    "network inspect")
        [ -s "$state/${@: -1}" ] || exit 1
        [ "$3" = --format ] && echo 172.20.0.0/16  # the subnet the wrapper checks (ai-platform's)
        exit 0 ;;
    "network create") name=${@: -1}; sleep 0.5; echo made >>"$state/$name"; exit 0 ;;
    compose*) exit 0 ;;
esac
exit 0
"""


def test_stacks_started_at_once_make_each_network_once(tmp_path):
    tree = make_tree(tmp_path / "tree", services=["data"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    networks = tmp_path / "networks"
    networks.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    environ = {
        **tree.environ(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "NETWORKS": str(networks),
        "AI_PLATFORM_RUN": str(run),
    }
    wrapper = str(tree.root / "bin/ai-platform-stack")
    starts = [
        subprocess.Popen(["bash", wrapper, "up", "data"], env=environ, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for start in starts:
        assert start.wait(timeout=60) == 0, start.stderr.read()
    made = {path.name: path.read_text().count("made") for path in networks.iterdir()}
    assert made == {"ai-platform": 1, "ai-platform-signal": 1}
