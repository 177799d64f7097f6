"""Secrets and the stacks' .env, from the .env contract the image ships.

Generated secrets are made once and kept on the data volume: every later boot, and every new
instance that attaches the same volume, reuses them (an n8n or LiteLLM key that changes makes
stored credentials unreadable). Provider API keys are read from SSM at every boot. The owner's
credentials (source "owner": logins the owner types) are made by builder, which can show them
again (`builder credentials`), and delivered at every boot (SSM on AWS, fw_cfg locally); an
instance they did not reach gets ones kept on the volume instead. The .env is written
atomically, mode 0600. No value is ever logged: each one is given to the redactor.

The contract (JSON, shipped in the image):

    {"version": 1, "variables": [
       {"name": "N8N_ENCRYPTION_KEY", "source": "generated", "bytes": 32, "immutable": true},
       {"name": "LITELLM_MASTER_KEY", "source": "generated", "bytes": 24, "prefix": "sk-"},
       {"name": "ANTHROPIC_API_KEY", "source": "provider:anthropic"},
       {"name": "PLATFORM_HOSTNAME", "source": "instance:hostname"},
       {"name": "N8N_OWNER_PASSWORD_HASH", "source": "bcrypt:N8N_OWNER_PASSWORD"}]}

"bcrypt:NAME" is the bcrypt hash of an earlier variable, for apps that take a login as a hash
(n8n's N8N_INSTANCE_OWNER_PASSWORD_HASH). A value holding "$" is written in single quotes, which
Compose's env-file parser takes literally (unquoted, it would expand "$2b" as a variable).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets as random_source
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from firstboot.status import Redactor, write_atomic, write_if_changed

CONTRACT_VERSION = 1
SECRETS_RELATIVE_PATH = Path("platform") / "secrets.env"  # on the data volume
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_SOURCES = re.compile(r"generated|owner|provider:[a-z]+|instance:[a-z0-9_]+|bcrypt:[A-Z][A-Z0-9_]*")
BCRYPT_COST = 10  # n8n's own (bcryptjs SALT_ROUNDS in its password utility)
_STANDARD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class SecretsError(Exception):
    pass


@dataclass(frozen=True)
class Variable:
    name: str
    source: str  # "generated", "owner", "provider:NAME", "instance:KEY"
    bytes: int = 32
    prefix: str = ""
    immutable: bool = False


def load_contract(path: Path) -> list[Variable]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SecretsError(f"{path}: the .env contract cannot be read ({exc})") from None
    if not isinstance(document, dict) or document.get("version") != CONTRACT_VERSION:
        raise SecretsError(f"{path}: not a version {CONTRACT_VERSION} .env contract")
    variables, seen = [], set()
    for index, entry in enumerate(document.get("variables", [])):
        where = f"{path}: variables[{index}]"
        if not isinstance(entry, dict) or not _NAME.fullmatch(str(entry.get("name", ""))):
            raise SecretsError(f"{where}: needs a name in UPPER_SNAKE_CASE")
        if entry["name"] in seen:
            raise SecretsError(f"{where}: {entry['name']} is listed twice")
        if not _SOURCES.fullmatch(str(entry.get("source", ""))):
            raise SecretsError(
                f"{where}: source must be generated, owner, provider:NAME, instance:KEY or bcrypt:VARIABLE"
            )
        if entry["source"].startswith("bcrypt:") and entry["source"].partition(":")[2] not in seen:
            raise SecretsError(f"{where}: {entry['source']} must name a variable listed before it")
        unknown = set(entry) - {"name", "source", "bytes", "prefix", "immutable", "stacks", "description"}
        if unknown:
            raise SecretsError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        seen.add(entry["name"])
        variables.append(
            Variable(
                entry["name"],
                entry["source"],
                int(entry.get("bytes", 32)),
                entry.get("prefix", ""),
                bool(entry.get("immutable", False)),
            )
        )
    return variables


def bcrypt_hash(password: str) -> str:
    """The bcrypt ($2b$) hash of `password`, the same at every boot: its salt is derived from the
    password itself. A salt only defends a guessable password against precomputed tables; these are
    the owner's generated credentials (128 random bits), so a fixed salt costs nothing, and the .env
    stays unchanged from boot to boot. The C library's bcrypt, through the standard `crypt` module
    (in Python up to 3.12: Ubuntu 22.04's 3.10 and 24.04's 3.12)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated in 3.11, removed in 3.13
        import crypt
    salt_bytes = hashlib.sha256(f"ai-platform bcrypt salt:{password}".encode()).digest()[:16]
    # bcrypt's salt is 22 characters of its own base64 alphabet (standard base64, another order).
    salt = base64.b64encode(salt_bytes).decode()[:22].translate(str.maketrans(_STANDARD_B64, _BCRYPT_B64))
    hashed = crypt.crypt(password, f"$2b${BCRYPT_COST:02d}${salt}")
    if not hashed or not hashed.startswith("$2b$"):
        raise SecretsError("this system's C library cannot make bcrypt hashes (libxcrypt has them)")
    return hashed


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as this module writes them (values never contain newlines)."""
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _NAME.fullmatch(name):
            raise SecretsError(f"{path}:{number}: not a KEY=VALUE line")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[name] = value
    return values


def render_env_file(values: Mapping[str, str], header: str) -> str:
    lines = []
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise SecretsError(f"{name}: a value with a line break cannot go into a .env file")
        if "$" in value:
            if "'" in value:
                raise SecretsError(f"{name}: a value with both $ and ' cannot go into a .env file")
            value = f"'{value}'"
        lines.append(f"{name}={value}\n")
    return f"# {header}\n" + "".join(lines)


def ensure_generated_secrets(
    variables: list[Variable],
    data_dir: Path,
    *,
    volume_is_new: bool,
    redact: Redactor,
    token: Callable[[int], str] = random_source.token_hex,
) -> tuple[dict[str, str], list[str]]:
    """The generated secrets, kept on the volume: existing ones never change, missing ones are made.

    Returns (values, names generated now). A volume that already holds data but has lost its
    secrets file is refused: new keys would make the stored data unreadable.
    """
    path = data_dir / SECRETS_RELATIVE_PATH
    existing: dict[str, str] = {}
    if path.exists():
        existing = read_env_file(path)
    elif not volume_is_new and _holds_data(data_dir):
        raise SecretsError(
            f"{path} is missing, but the data volume already holds data: new keys would make it unreadable. "
            "Restore secrets.env from a backup (see /mnt/data/backups), then run `firstboot run` again."
        )
    for value in existing.values():
        redact.register(value)
    values = dict(existing)
    made = []
    for variable in variables:
        # An owner credential gets a volume-kept stand-by too, for an instance its delivery missed.
        if variable.source not in ("generated", "owner") or variable.name in values:
            continue
        values[variable.name] = variable.prefix + token(variable.bytes)
        redact.register(values[variable.name])
        made.append(variable.name)
    if made:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = render_env_file(values, "Generated once by the firstboot agent; kept with the data. Never edit.")
        write_atomic(path, text, mode=0o600)
    return values, made


def build_env(
    variables: list[Variable],
    generated: Mapping[str, str],
    provider_keys: Mapping[str, str],
    instance_values: Mapping[str, str],
    owner_values: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The .env for the stacks: every variable of the contract that has a value, in contract order.
    An owner credential is the delivered one, else the one kept on the volume."""
    env = {}
    for variable in variables:
        kind, _, key = variable.source.partition(":")
        if kind == "generated":
            env[variable.name] = generated[variable.name]
        elif kind == "owner":
            env[variable.name] = (owner_values or {}).get(variable.name) or generated[variable.name]
        elif kind == "provider" and key in provider_keys:
            env[variable.name] = provider_keys[key]
        elif kind == "bcrypt" and key in env:
            env[variable.name] = bcrypt_hash(env[key])
        elif kind == "instance":
            if key not in instance_values:
                raise SecretsError(f"{variable.name}: the contract asks for instance:{key}, which the agent lacks")
            env[variable.name] = instance_values[key]
    return env


def write_env(path: Path, env: Mapping[str, str]) -> bool:
    """Write the .env (0600, root's) if its content changed; True when it did."""
    text = render_env_file(env, "Written by the firstboot agent at every boot from the .env contract.")
    if not write_if_changed(path, text, 0o600):
        return False
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    return True


def _holds_data(data_dir: Path) -> bool:
    """True when the volume holds application data (what the secrets protect).

    The agent's own platform/ directory (certificates, the secrets file) and ext4's lost+found
    are not: a run killed after making them but before the secrets holds nothing to protect.
    """
    if not data_dir.is_dir():
        return False
    return any(entry.name not in ("lost+found", SECRETS_RELATIVE_PATH.parts[0]) for entry in data_dir.iterdir())
