"""The Ubuntu 22.04 cloud image as the local base: downloaded from a loopback HTTP server (Ubuntu's
own servers are out of reach here; the file served is a made-up blob, so only the download, the
verification and the cache are tested, not booting a real Ubuntu image)."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from moto_server import free_port

from builder.errors import BuilderError
from builder.local.ubuntu_base import cached_path, fetch_ubuntu_base

BLOB = b"QFI\xfb" + bytes(range(256)) * 8192  # 2 MiB, qcow2's magic first
DIGEST = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def server():
    requests_seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests_seen.append(self.path)
            if self.path != "/jammy-server-cloudimg-amd64.img":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOB)))
            self.end_headers()
            self.wfile.write(BLOB)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests_seen
    httpd.shutdown()


def test_the_image_is_verified_cached_and_fetched_once(server, tmp_path):
    base, seen = server
    lines = []
    path = fetch_ubuntu_base(tmp_path, f"{base}/jammy-server-cloudimg-amd64.img", DIGEST, log=lines.append)
    assert path == cached_path(tmp_path, DIGEST) and path.read_bytes() == BLOB
    assert any("of 2 MiB" in line for line in lines), lines  # progress on a long download
    assert fetch_ubuntu_base(tmp_path, f"{base}/jammy-server-cloudimg-amd64.img", DIGEST, log=lines.append) == path
    assert len(seen) == 1, "a cached image was downloaded again"


def test_a_wrong_digest_keeps_nothing_and_says_which(server, tmp_path):
    base, _ = server
    wrong = "0" * 64
    with pytest.raises(BuilderError, match=rf"sha256 {DIGEST}, not local\.ubuntu_image_sha256 {wrong}"):
        fetch_ubuntu_base(tmp_path, f"{base}/jammy-server-cloudimg-amd64.img", wrong, log=lambda line: None)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [], "a file that failed verification was kept"


@pytest.mark.parametrize("path", ["/missing.img", None])
def test_an_unreachable_image_names_the_setting(server, tmp_path, path):
    base, _ = server
    url = f"{base}{path}" if path else f"http://127.0.0.1:{free_port()}/jammy.img"
    with pytest.raises(BuilderError, match=r"local\.ubuntu_image_url .* cannot be fetched"):
        fetch_ubuntu_base(tmp_path, url, DIGEST, log=lambda line: None)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
