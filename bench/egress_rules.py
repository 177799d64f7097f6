"""What the egress rules cost: TCP connection time from a container to an address outside the host
(the laboratory's "internet", tests/egress_lab.py), without the rules and with the platform's
policy (firstboot/egress.py) plus an allow list of `--allow` extra ranges in front of the rejects.

Run (root, a running dockerd): .venv/bin/python bench/egress_rules.py [--connects N] [--allow N]
Prints the median and 99th percentile microseconds of connect()+first byte, per case.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from egress_lab import egress_lab, lab_policy, run  # noqa: E402

from firstboot import egress  # noqa: E402

TIMER = """
import json, socket, statistics, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times = []
for _ in range(count):
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=4) as s:
        s.recv(2)
    times.append((time.perf_counter() - start) * 1e6)
times.sort()
print(json.dumps({"median": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1]}))
"""


def measure(lab, connects: int) -> dict:
    _, host, port = lab["targets"]["internet"].split(":")
    return json.loads(run("docker", "exec", lab["client"], "python3", "-c", TIMER, host, port, str(connects)).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--allow", type=int, default=50, help="extra allowed ranges in the second policy")
    arguments = parser.parse_args()
    allow = tuple(f"192.0.{i // 256}.{i % 256}/32" for i in range(arguments.allow))
    with egress_lab() as lab:
        measure(lab, 200)  # warm: ARP, conntrack, the Python in the container
        cases = {
            "no rules": None,
            "policy": lab_policy(),
            f"policy + {arguments.allow} allowed": lab_policy(allow=allow),
        }
        for name, policy in cases.items():
            if policy:
                egress.apply(policy)
            result = measure(lab, arguments.connects)
            print(f"{name:>24}: median {result['median']:7.1f} us   p99 {result['p99']:7.1f} us")
            if policy:
                egress.remove(policy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
