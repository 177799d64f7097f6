"""n8n's owner, set from the environment: the hash the agent makes is one n8n's own library accepts.

n8n 2.37.10 (its owner instance-settings loader and password utility, read in the npm package)
takes N8N_INSTANCE_OWNER_PASSWORD_HASH only if it matches ^\\$2[aby]\\$\\d{2}\\$[./A-Za-z0-9]{53}$,
and compares logins with bcryptjs 2.4.3. Here that very bcryptjs (from npm, on Node 24) checks the
agent's hashes, in seconds; the stack tests sign in to the real n8n with the owner's password.
"""

from __future__ import annotations

import re
import subprocess

from real_apps import node24_bin, npm_install

from firstboot import env

N8N_HASH = re.compile(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}")


def bcryptjs_compare(password: str, hashed: str) -> bool:
    folder = npm_install("bcryptjs-2.4.3", "bcryptjs@2.4.3", path=[node24_bin()])
    script = "process.stdout.write(String(require('bcryptjs').compareSync(process.argv[1], process.argv[2])))"
    result = subprocess.run(
        [str(node24_bin() / "node"), "-e", script, password, hashed],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout == "true"


def test_the_owner_hash_is_one_n8n_takes_and_the_same_at_every_boot():
    password = "0123456789abcdef0123456789abcdef"
    hashed = env.bcrypt_hash(password)
    assert N8N_HASH.fullmatch(hashed) and hashed.startswith("$2b$10$")  # n8n's cost, 10
    assert env.bcrypt_hash(password) == hashed  # the .env does not change from boot to boot
    assert env.bcrypt_hash(password + "0") != hashed
    assert bcryptjs_compare(password, hashed)
    assert not bcryptjs_compare(password.upper(), hashed)
