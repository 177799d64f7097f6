"""The Ubuntu 22.04 cloud image as the local base: downloaded from a loopback HTTP server (Ubuntu's
own servers are out of reach here; the file served is a made-up blob, so only the download, the
verification and the cache are tested, not booting a real Ubuntu image)."""

from __future__ import annotations

import hashlib
import socket
import threading

import pytest
from bake_sources import StaticHttp
from moto_server import free_port

from builder.errors import BuilderError
from builder.local.ubuntu_base import cached_path, fetch_ubuntu_base

BLOB = b"QFI\xfb" + bytes(range(256)) * 8192  # 2 MiB, qcow2's magic first
DIGEST = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
def server():
    httpd = StaticHttp({"/jammy-server-cloudimg-amd64.img": BLOB})
    yield httpd.url, httpd.requests
    httpd.stop()


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


def test_the_bake_takes_the_ubuntu_image_as_a_base_that_boots_itself(server, tmp_path, monkeypatch):
    from builder.bake.local_base import prepare_local_base
    from builder.config.schema import PlatformConfig

    base, _ = server
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = PlatformConfig(
        version=1,
        local={
            "base_image": "ubuntu-22.04",
            "ubuntu_image_url": f"{base}/jammy-server-cloudimg-amd64.img",
            "ubuntu_image_sha256": DIGEST,
        },
    )
    variables = prepare_local_base(config, tmp_path / "work", log=lambda line: None)
    assert variables == {
        "local_base_image": str(cached_path(tmp_path / "cache/ai-platform-builder/images", DIGEST)),
        "local_base_checksum": f"sha256:{DIGEST}",
        "local_boot": [],
        # No kernel outside the image to probe KVM with: auto picks TCG.
        "local_accelerator": "tcg",
    }


def test_an_image_without_kernel_boots_from_its_own_disk(tmp_path):
    from builder.local.instances import LocalImage
    from builder.local.qemu import qemu_command

    image = LocalImage(tmp_path / "root.qcow2", None, None)
    assert LocalImage.from_json(image.to_json()) == image
    disks = {
        "root": tmp_path / "root",
        "data_disk": tmp_path / "data",
        "data_serial": "vol0123456789abcdef0",
        "seed": tmp_path / "seed",
        "serial_log": tmp_path / "console",
    }
    command = qemu_command(kernel=None, initrd=None, **disks)
    assert "-kernel" not in command and "-append" not in command
    assert "virtio-blk-pci,drive=root,bootindex=0" in command
    with pytest.raises(ValueError, match="kernel_args"):
        qemu_command(kernel=None, initrd=None, kernel_args="quiet", **disks)
    booted_from_outside = qemu_command(kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img", **disks)
    assert "virtio-blk-pci,drive=root" in booted_from_outside  # boot index 0 is the kernel's


def test_a_download_that_breaks_off_keeps_nothing_and_says_so(tmp_path):
    """A server that promises 2 MiB and closes after 1 KiB: a clear error, not a traceback."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_once():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(BLOB)}\r\n\r\n".encode() + BLOB[:1024])

    threading.Thread(target=serve_once, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/jammy.img"
    with pytest.raises(BuilderError, match=r"local\.ubuntu_image_url .*: the download broke off"):
        fetch_ubuntu_base(tmp_path, url, DIGEST, log=lambda line: None)
    listener.close()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
