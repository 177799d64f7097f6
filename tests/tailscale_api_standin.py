"""A stand-in for the two calls of Tailscale's API an instance makes to mint its auth key, on 127.0.0.1.

Tailscale's API (api.tailscale.com) is its control server's: it cannot run here, and tests reach no
internet. This one answers as upstream's own test server does (tailscale/tailscale v1.102.3,
feature/oauthkey/oauthkey_test.go, mockControlServer) and checks what upstream's client sends:
POST /api/v2/oauth/token (the client-credentials grant, the client as HTTP Basic credentials) answers
an access token; POST /api/v2/tailnet/-/keys with that bearer token answers {"key": ...}. A status
can be forced per path to play an outage (503) or a refusal (401/403/400, with {"message": ...}).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/api/v2/oauth/token"
KEYS_PATH = "/api/v2/tailnet/-/keys"
ACCESS_TOKEN = "stand-in-access-token"


class TailscaleApiStandIn:
    def __init__(self, client_id: str, client_secret: str, minted_key: str):
        self.client_id, self.client_secret, self.minted_key = client_id, client_secret, minted_key
        self.forced: dict[str, tuple[int, str]] = {}  # path -> (status, message)
        self.key_requests: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _answer(self, code: int, document: dict) -> None:
                data = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path in stand_in.forced:
                    code, message = stand_in.forced[self.path]
                    return self._answer(code, {"message": message})
                if self.path == TOKEN_PATH:
                    return self._token(body)
                if self.path == KEYS_PATH:
                    return self._key(body)
                return self._answer(404, {"message": "not found"})

            def _token(self, body: bytes) -> None:
                form = urllib.parse.parse_qs(body.decode())
                kind, _, credentials = self.headers.get("Authorization", "").partition(" ")
                user, _, password = base64.b64decode(credentials or "").decode().partition(":")
                given = (urllib.parse.unquote(user), urllib.parse.unquote(password))
                if form.get("grant_type") != ["client_credentials"] or kind != "Basic":
                    return self._answer(400, {"message": "unsupported grant"})
                if given != (stand_in.client_id, stand_in.client_secret):
                    return self._answer(401, {"message": "invalid client credentials"})
                self._answer(200, {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600})

            def _key(self, body: bytes) -> None:
                if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                    return self._answer(401, {"message": "invalid token"})
                request = json.loads(body)
                stand_in.key_requests.append(request)
                self._answer(200, {"id": "kStandIn", "key": stand_in.minted_key})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
