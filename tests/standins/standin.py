#!/usr/bin/python3
"""Stand-in for the platform's container images, run inside locally built images (tests only).

No registry is reachable here, so the pinned images (postgres, redis, nginx, ollama, litellm,
AnythingLLM, OpenClaw, Dify, n8n, Signal API, Weaviate, squid) cannot be pulled. Each stand-in
image is Debian with this program as its entrypoint, tagged as the pinned reference:

- postgres: the real PostgreSQL 15 from Debian, started the way the official image starts it
  (initdb with POSTGRES_PASSWORD on an empty PGDATA, password auth over TCP, trust on the socket);
- redis, nginx: the real programs from Debian, run with the compose file's command;
- everything else: a small HTTP server on the service's port that answers its health path and
  echoes what it received as JSON ({"standin", "path", "headers"}), answers a WebSocket upgrade,
  and, for apps with a database, logs in with the credentials compose gives it and creates a
  marker table (so a test can see the app's database, its password, and that data survives);
  such an app also keeps every POST body in its database (`standin_posts`) and lists them at
  GET /standin/posts: data written through the app, as a user writes a workflow;
- litellm also keeps virtual keys as the real one does (only their sha256, in its database, behind
  the master key): GET /key/info (404 for an unknown key) and POST /key/generate (a custom key,
  its alias unique), for the stack's ensure-keys.py; and it books a spend row per chat completion
  made with such a key (POST /v1/chat/completions, answered with the body's `mock_response`). Both
  go into tables of the real one's names and the columns the image suite reads
  ("LiteLLM_VerificationToken": token, key_alias; "LiteLLM_SpendLogs": api_key, metadata with
  user_api_key_alias), which the real one's migrations create (tests/test_litellm_migrations.py);
- n8n also has an `n8n import:credentials --input=FILE` command (an upsert on the id, into its
  database), for the stack's post-start;
- searxng (the catalogue's template, a service of the owner's own) refuses to start without its
  secret or on the settings' placeholder, as the real one does, and writes a file into its config
  folder at the first start, so a test sees that folder on the data volume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORTS = {
    "ollama": 11434,
    "litellm": 4000,
    "anythingllm": 3001,
    "clawdbot": 18789,
    "n8n": 5678,
    "signal-api": 8080,
    "weaviate": 8080,
    "dify-api": 5001,
    "dify-web": 3000,
    "dify-sandbox": 8194,
    "dify-plugin-daemon": 5002,
    "squid": 3128,
    "searxng": 8080,
}
# The placeholder of SearXNG's settings.yml: its webapp.py init() exits on it (searxng/searxng @0024272a).
SEARXNG_PLACEHOLDER_SECRET = "ultrasecretkey"
ROLE = "?"  # this container's role, for its database
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def database_url(role: str) -> str | None:
    env = os.environ
    if role == "litellm":
        return env.get("DATABASE_URL")
    if role == "n8n":
        return (
            f"postgresql://{env['DB_POSTGRESDB_USER']}:{env['DB_POSTGRESDB_PASSWORD']}"
            f"@{env['DB_POSTGRESDB_HOST']}:{env['DB_POSTGRESDB_PORT']}/{env['DB_POSTGRESDB_DATABASE']}"
        )
    if role == "dify-api" and os.environ.get("MODE") == "api":
        return f"postgresql://{env['DB_USERNAME']}:{env['DB_PASSWORD']}@{env['DB_HOST']}:{env['DB_PORT']}/{env['DB_DATABASE']}"
    return None


def create_marker(role: str) -> None:
    """Log in as the app does and leave a row behind; retried while Postgres is not there yet."""
    url = database_url(role)
    if not url:
        return
    sql = (
        "CREATE TABLE IF NOT EXISTS standin_marker (role text PRIMARY KEY, first_start timestamptz DEFAULT now());"
        f"INSERT INTO standin_marker (role) VALUES ('{role}') ON CONFLICT DO NOTHING;"
    )
    for _ in range(120):
        if subprocess.run(["psql", url, "-q", "-c", sql], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    raise SystemExit(f"standin {role}: could not log in to its database")


def psql(sql: str, **variables: str) -> subprocess.CompletedProcess:
    arguments = [f"{name}={value}" for name, value in variables.items()]
    return subprocess.run(
        ["psql", database_url(ROLE), "-Atq", "-v", "ON_ERROR_STOP=1", *(a for v in arguments for a in ("-v", v))],
        input=sql,
        capture_output=True,
        text=True,
    )


KEYS_TABLE = """
CREATE TABLE IF NOT EXISTS "LiteLLM_VerificationToken" (token text PRIMARY KEY, key_alias text UNIQUE, metadata jsonb);
CREATE TABLE IF NOT EXISTS "LiteLLM_SpendLogs" (
    request_id text PRIMARY KEY, api_key text, model text, spend double precision, metadata jsonb
);
"""
KEY_ALIAS = """SELECT key_alias FROM "LiteLLM_VerificationToken" WHERE token = :'token';"""


def chat_completion(handler: Handler, body: str) -> None:
    """POST /v1/chat/completions with a virtual key: the body's mock_response, and a spend row for the key."""
    key = handler.headers.get("Authorization", "").removeprefix("Bearer ")
    token = hashlib.sha256(key.encode()).hexdigest()
    found = psql(KEYS_TABLE + KEY_ALIAS, token=token)
    if not found.stdout.strip():
        handler.reply(401, {"error": {"message": "Authentication Error, Invalid proxy server token passed."}})
        return
    request = json.loads(body or "{}")
    request_id = f"chatcmpl-{os.urandom(8).hex()}"
    booked = psql(
        """INSERT INTO "LiteLLM_SpendLogs" VALUES (:'id', :'token', :'model', 0, :'metadata');""",
        id=request_id,
        token=token,
        model=request.get("model", ""),
        metadata=json.dumps({"user_api_key_alias": found.stdout.strip()}),
    )
    if booked.returncode != 0:
        handler.reply(500, {"error": {"message": booked.stderr}})
        return
    message = {"role": "assistant", "content": request.get("mock_response", "")}
    handler.reply(200, {"id": request_id, "object": "chat.completion", "choices": [{"index": 0, "message": message}]})


def key_api(handler: Handler, body: str) -> None:
    """LiteLLM's /key/info and /key/generate, as far as ensure-keys.py uses them."""
    if handler.headers.get("Authorization") != f"Bearer {os.environ['LITELLM_MASTER_KEY']}":
        handler.reply(401, {"error": {"message": "Authentication Error, invalid master key"}})
        return
    if handler.path.startswith("/key/info"):
        key = parse_qs(urlsplit(handler.path).query).get("key", [""])[0]
        token = hashlib.sha256(key.encode()).hexdigest()
        found = psql(KEYS_TABLE + KEY_ALIAS, token=token)
        if found.stdout.strip():
            handler.reply(200, {"key": token, "info": {"key_alias": found.stdout.strip()}})
        else:
            handler.reply(404, {"error": {"message": "Key not found in database", "code": "404"}})
        return
    request = json.loads(body or "{}")
    token = hashlib.sha256(request["key"].encode()).hexdigest()
    made = psql(
        KEYS_TABLE + """INSERT INTO "LiteLLM_VerificationToken" VALUES (:'token', :'alias', :'metadata');""",
        token=token,
        alias=request.get("key_alias", ""),
        metadata=json.dumps(request.get("metadata", {})),
    )
    if made.returncode != 0:
        handler.reply(400, {"error": {"message": f"Unique key aliases across all keys are required: {made.stderr}"}})
    else:
        handler.reply(200, {"key": request["key"], "key_alias": request.get("key_alias")})


def import_credentials(path: str) -> None:
    """`n8n import:credentials --input=FILE`: each credential kept in n8n's database, by id."""
    with open(path, encoding="utf-8") as handle:
        credentials = json.load(handle)
    if not isinstance(credentials, list):
        raise SystemExit("File does not seem to contain credentials: an array is expected.")
    for credential in credentials:
        kept = psql(
            "CREATE TABLE IF NOT EXISTS standin_credentials (id text PRIMARY KEY, type text, data text);"
            "INSERT INTO standin_credentials VALUES (:'id', :'type', :'data')"
            " ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, data = EXCLUDED.data;",
            id=credential["id"],
            type=credential["type"],
            data=json.dumps(credential["data"]),
        )
        if kept.returncode != 0:
            raise SystemExit(kept.stderr)
    print(f"Successfully imported {len(credentials)} credentials.")


class Handler(BaseHTTPRequestHandler):
    role = "?"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.role == "litellm" and self.path.startswith("/key/"):
            key_api(self, "")
            return
        if self.role == "litellm" and self.path == "/health/readiness":  # the real one's "db" field
            connected = psql("SELECT 1;").returncode == 0
            self.reply(200, {"status": "healthy", "db": "connected" if connected else "disconnected"})
            return
        if self.headers.get("Upgrade", "").lower() == "websocket":
            accept = base64.b64encode(
                hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WEBSOCKET_GUID).encode()).digest()
            ).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.close_connection = True
            return
        expected = f"Bearer {os.environ.get('AUTHENTICATION_APIKEY_ALLOWED_KEYS')}"
        weaviate_data = self.role == "weaviate" and not self.path.startswith("/v1/.well-known/")
        if weaviate_data and self.headers.get("Authorization") != expected:
            self.reply(401, {"error": "anonymous access is off"})
            return
        if self.path == "/standin/posts" and database_url(self.role):
            listed = subprocess.run(
                ["psql", database_url(self.role), "-Atc", "SELECT body FROM standin_posts ORDER BY at"],
                capture_output=True,
                text=True,
            )
            self.reply(200, {"standin": self.role, "posts": listed.stdout.splitlines()})
            return
        self.reply(200, {"standin": self.role, "path": self.path, "headers": dict(self.headers.items())})

    def do_POST(self) -> None:
        url = database_url(self.role)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if self.role == "litellm" and self.path.startswith("/key/"):
            key_api(self, body)
            return
        if self.role == "litellm" and self.path in ("/v1/chat/completions", "/chat/completions"):
            chat_completion(self, body)
            return
        if url and body:
            sql = (
                "CREATE TABLE IF NOT EXISTS standin_posts (path text, body text, at timestamptz DEFAULT now());\n"
                "INSERT INTO standin_posts (path, body) VALUES (:'path', :'body');\n"
            )
            kept = subprocess.run(
                ["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-v", f"path={self.path}", "-v", f"body={body}"],
                input=sql,
                capture_output=True,
                text=True,
            )
            if kept.returncode != 0:
                self.reply(500, {"standin": self.role, "error": kept.stderr.strip()})
                return
        self.do_GET()

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def searxng_start() -> None:
    secret = os.environ.get("SEARXNG_SECRET", "")
    if secret in ("", SEARXNG_PLACEHOLDER_SECRET):
        raise SystemExit("searxng stand-in: SEARXNG_SECRET is unset or the placeholder; refusing to start")
    settings = "/etc/searxng/settings.yml"
    if not os.path.exists(settings):
        with open(settings, "w") as handle:
            handle.write("# written by the searxng stand-in at its first start\n")


def serve(role: str) -> None:
    global ROLE
    ROLE = role
    if role == "searxng":
        searxng_start()
    create_marker(role)
    if role == "litellm" and database_url(role):
        psql(KEYS_TABLE)  # its tables, as the real one's migrations make them at start
    Handler.role = role
    port = PORTS.get(role)
    if port is None:  # workers: nothing to serve
        while True:
            time.sleep(3600)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def postgres() -> None:
    """The official image's start, reduced to what the stacks rely on."""
    data = os.environ.get("PGDATA", "/var/lib/postgresql/data")
    user = pwd.getpwnam("postgres")
    binaries = "/usr/lib/postgresql/15/bin"
    os.makedirs(data, exist_ok=True)
    os.makedirs("/var/run/postgresql", exist_ok=True)
    for path in (data, "/var/run/postgresql"):
        os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(data, 0o700)

    def as_postgres():
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    if not os.path.exists(os.path.join(data, "PG_VERSION")):
        password_file = "/tmp/pwfile"
        with open(password_file, "w") as handle:
            handle.write(os.environ["POSTGRES_PASSWORD"])
        os.chown(password_file, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                f"{binaries}/initdb",
                "-D",
                data,
                "-U",
                "postgres",
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ],
            check=True,
            preexec_fn=as_postgres,
        )
        os.unlink(password_file)
        with open(os.path.join(data, "pg_hba.conf"), "a") as hba:
            hba.write("host all all all scram-sha-256\n")
    as_postgres()
    os.execv(f"{binaries}/postgres", [f"{binaries}/postgres", "-D", data, "-c", "listen_addresses=*"])


def main() -> None:
    global ROLE
    # As PID 1 nothing ends us on SIGTERM unless we say so (the real images stop promptly too).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    role, arguments = sys.argv[1], sys.argv[2:]
    if role == "postgres":
        postgres()
    elif role == "n8n-import":  # the stand-in's `n8n` command: import:credentials --input=FILE
        ROLE = "n8n"
        import_credentials(arguments[0])
    elif role in ("redis", "nginx"):
        os.execvp(arguments[0], arguments)  # the compose file's command, run by the real program
    else:
        serve(role)


if __name__ == "__main__":
    main()
