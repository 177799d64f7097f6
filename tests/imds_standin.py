"""A stand-in for the EC2 instance metadata service (IMDSv2), served on 127.0.0.1.

The real IMDS exists only inside EC2. This one speaks the part of IMDSv2 the agent uses: a
session token from PUT /latest/api/token, required by GET /latest/dynamic/instance-identity/document
and by the instance role's credentials under /latest/meta-data/iam/security-credentials/ (what boto3
reads on an instance; moto accepts any key), and the VPC's ranges the egress policy closes
(meta-data/mac, then network/interfaces/macs/MAC/vpc-ipv4-cidr-blocks, one block a line; default
moto's default VPC). It can fail the first N requests, to exercise retries.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE = "ai-platform-test-role"
ROLE_CREDENTIALS = {
    "Code": "Success",
    "Type": "AWS-HMAC",
    "AccessKeyId": "testing",
    "SecretAccessKey": "testing",
    "Token": "testing",
    "LastUpdated": "2026-01-01T00:00:00Z",
    "Expiration": "2099-01-01T00:00:00Z",
}


class ImdsStandIn:
    def __init__(
        self,
        instance_id: str,
        availability_zone: str,
        region: str,
        fail_first: int = 0,
        vpc_cidr_blocks: tuple[str, ...] = ("172.31.0.0/16",),
    ):
        self.document = {"instanceId": instance_id, "availabilityZone": availability_zone, "region": region}
        self.mac = "0e:00:00:00:00:01"
        self.vpc_cidr_blocks = vpc_cidr_blocks
        self.fail_first = fail_first
        self.requests: list[tuple[str, str, dict]] = []
        self.tokens: set[str] = set()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def _answer(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _failing(self) -> bool:
                stand_in.requests.append((self.command, self.path, dict(self.headers)))
                if stand_in.fail_first > 0:
                    stand_in.fail_first -= 1
                    self._answer(500, "stand-in failure")
                    return True
                return False

            def do_PUT(self):
                if self._failing():
                    return
                if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    return self._answer(400)
                token = secrets.token_hex(16)
                stand_in.tokens.add(token)
                self._answer(200, token)

            def do_GET(self):
                if self._failing():
                    return
                if self.headers.get("X-aws-ec2-metadata-token") not in stand_in.tokens:
                    return self._answer(401)
                credentials = "/latest/meta-data/iam/security-credentials/"
                if self.path == credentials:
                    return self._answer(200, ROLE)
                if self.path == credentials + ROLE:
                    return self._answer(200, json.dumps(ROLE_CREDENTIALS))
                if self.path == "/latest/meta-data/mac":
                    return self._answer(200, stand_in.mac)
                if self.path == f"/latest/meta-data/network/interfaces/macs/{stand_in.mac}/vpc-ipv4-cidr-blocks":
                    return self._answer(200, "\n".join(stand_in.vpc_cidr_blocks))
                if self.path != "/latest/dynamic/instance-identity/document":
                    return self._answer(404)
                self._answer(200, json.dumps(stand_in.document))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
