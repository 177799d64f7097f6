"""LiteLLM's database schema comes from migrations shipped in a Python package, applied to the real Postgres.

LiteLLM (`litellm[proxy]` at the pinned release) migrates its database at start with `prisma migrate
deploy` over the migrations of `litellm-proxy-extras`, the exact version its release requires. The
Prisma engines that run them come only from binaries.prisma.sh, out of reach here, so the engine
itself cannot run; what it applies can: each migration's SQL, in Prisma's order (by directory
name), on Debian's PostgreSQL 15, the major version of the data stack's pinned `postgres:15-alpine`.
The result must be the schema the same release's `schema.prisma` declares (every model a table)
with the columns the platform relies on: each app's virtual key, its alias, and the spend rows.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from postgres_cluster import POSTGRES_BIN, running_cluster
from real_images import CACHE, LITELLM_VERSION

WHEELS = CACHE / "pypi"

pytestmark = pytest.mark.skipif(
    not (POSTGRES_BIN / "postgres").exists(), reason="needs Debian's postgresql-15 (scripts/system-packages.txt)"
)


def wheel(requirement: str) -> Path:
    """A wheel from PyPI (cached): the one pip picks for REQUIREMENT, without its dependencies."""
    name, version = requirement.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(WHEELS.glob(pattern))
    if not found:
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "python3",
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                WHEELS,
                requirement,
            ],
            check=True,
            timeout=300,
        )
        found = sorted(WHEELS.glob(pattern))
    assert found, f"pip download {requirement} left no {pattern} in {WHEELS}"
    return found[0]


def required_extras_version() -> str:
    """The litellm-proxy-extras version that the pinned LiteLLM release requires (its wheel's METADATA)."""
    with zipfile.ZipFile(wheel(f"litellm=={LITELLM_VERSION}")) as archive:
        metadata = archive.read(f"litellm-{LITELLM_VERSION}.dist-info/METADATA").decode()
    match = re.search(r"^Requires-Dist: litellm-proxy-extras==(\S+)", metadata, re.MULTILINE)
    assert match, f"litellm {LITELLM_VERSION} names no litellm-proxy-extras version"
    return match.group(1).rstrip(";")


@pytest.fixture(scope="module")
def extras(tmp_path_factory) -> Path:
    """The unpacked litellm-proxy-extras package: migrations/ and schema.prisma."""
    root = tmp_path_factory.mktemp("extras")
    with zipfile.ZipFile(wheel(f"litellm-proxy-extras=={required_extras_version()}")) as archive:
        archive.extractall(root)
    return root / "litellm_proxy_extras"


@pytest.fixture(scope="module")
def postgres():
    """A fresh PostgreSQL 15 cluster run by the `postgres` user (it refuses root), on a private socket.

    Returns psql as root (trust on the socket) for SQL or a file of it.
    """
    with running_cluster("litellm-pg-") as running:
        root, port = running.root, running.port

        def psql(sql: str | None = None, *, file: Path | None = None, database: str = "litellm") -> str:
            command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", str(root), "-p", port]
            command += ["-U", "postgres"]
            command += ["-d", database] + (["-f", str(file)] if file else ["-c", sql])
            result = subprocess.run(command, capture_output=True, text=True)
            assert result.returncode == 0, f"psql failed on {file or sql}:\n{result.stderr}"
            return result.stdout

        psql("CREATE DATABASE litellm", database="postgres")
        yield psql


def declared_tables(schema: str) -> set[str]:
    """Each `model NAME { … }` of a Prisma schema is table NAME unless the model maps it (@@map)."""
    tables = set()
    for name, body in re.findall(r"^model\s+(\w+)\s*\{(.*?)^\}", schema, re.MULTILINE | re.DOTALL):
        mapped = re.search(r'@@map\("([^"]+)"\)', body)
        tables.add(mapped.group(1) if mapped else name)
    return tables


def offline_check():
    """The queries of the image suite's offline check (image/tests/litellm_books.py)."""
    path = Path(__file__).resolve().parent.parent / "image/tests/litellm_books.py"
    spec = importlib.util.spec_from_file_location("litellm_books", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migrations_build_the_schema_litellm_declares_on_postgres_15(extras, postgres):
    migrations = sorted(path for path in (extras / "migrations").iterdir() if (path / "migration.sql").is_file())
    assert len(migrations) > 50, f"only {len(migrations)} migrations in {extras}"
    for migration in migrations:
        postgres(file=migration / "migration.sql")

    tables = set(postgres("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").split())
    declared = declared_tables((extras / "schema.prisma").read_text())
    assert declared - tables == set(), "declared by schema.prisma, never created by a migration"
    assert {"LiteLLM_VerificationToken", "LiteLLM_SpendLogs", "LiteLLM_DailyUserSpend"} <= tables

    def columns(table: str) -> set[str]:
        query = f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}'"
        return set(postgres(query).split())

    # What ensure-keys.py registers (key, key_alias, metadata) and what spend per app is read from.
    assert {"token", "key_alias", "metadata", "spend", "max_budget"} <= columns("LiteLLM_VerificationToken")
    assert {"api_key", "spend", "total_tokens", "prompt_tokens", "completion_tokens", "model"} <= columns(
        "LiteLLM_SpendLogs"
    )
    # A spend row names the key it was booked to, and so the app (the key's alias).
    postgres("""INSERT INTO "LiteLLM_VerificationToken" (token, key_alias) VALUES ('hash-1', 'n8n')""")
    spend = postgres(
        """INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, total_tokens, "startTime",
        "endTime", model) VALUES ('r1', 'acompletion', 'hash-1', 0.002, 42, now(), now(), 'auto');
        SELECT t.key_alias, s.total_tokens FROM "LiteLLM_SpendLogs" s
        JOIN "LiteLLM_VerificationToken" t ON t.token = s.api_key"""
    )
    assert spend.split() == ["n8n|42"]
    # The booted image suite's offline check (image/tests/test_litellm_offline.py) reads the alias LiteLLM
    # writes into the row's metadata: its query holds on the real schema.
    postgres(
        """INSERT INTO "LiteLLM_SpendLogs" (request_id, call_type, api_key, spend, "startTime", "endTime", metadata)
        VALUES ('r2', 'acompletion', 'hash-2', 0, now(), now(), '{"user_api_key_alias": "anythingllm"}')"""
    )
    assert postgres(offline_check().SPEND_ROW.format(hashed="hash-2")).strip() == "anythingllm"
    assert set(offline_check().TABLES) <= tables
