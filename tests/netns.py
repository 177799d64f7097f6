"""A command run with no network but its own loopback (`unshare -n`), reaching chosen host services.

Inside the new network namespace nothing leaves the machine: there is no route, only `lo`. The
services the command may reach (a moto server, a VM's SSH port) are bridged by port number: each
host port is served on the namespace's 127.0.0.1 at the same number, through a UNIX socket, which
is a file and so crosses network namespaces. The same URL then works inside and out.

Host side: `HostBridge(ports, directory)` listens on one UNIX socket per port.
Namespace side: this file, run as `unshare -n python netns.py --port P=SOCKET ... -- COMMAND`,
brings `lo` up, serves each port, runs COMMAND and exits with its status.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import threading
from pathlib import Path


def _pump(source: socket.socket, destination: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            destination.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((destination, socket.SHUT_WR), (source, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


def _join(client: socket.socket, connect) -> None:
    try:
        upstream = connect()
    except OSError:
        client.close()
        return
    pumps = [
        threading.Thread(target=_pump, args=(client, upstream), daemon=True),
        threading.Thread(target=_pump, args=(upstream, client), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    for pump in pumps:
        pump.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, connect) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_join, args=(client, connect), daemon=True).start()


def _connect_tcp(port: int):
    def connect():
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.settimeout(None)  # the timeout is for connecting: an idle SSH or HTTP connection stays open
        return sock

    return connect


def _connect_unix(path: str):
    def connect():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    return connect


class HostBridge:
    """One UNIX socket per host port, each connection relayed to 127.0.0.1:PORT on the host."""

    def __init__(self, ports: list[int], directory: Path):
        self.sockets: dict[int, Path] = {}
        self._listeners = []
        for port in ports:
            path = directory / f"port-{port}.sock"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            listener.listen(16)
            threading.Thread(target=_serve, args=(listener, _connect_tcp(port)), daemon=True).start()
            self.sockets[port] = path
            self._listeners.append(listener)

    def command(self, command: list[str]) -> list[str]:
        """COMMAND wrapped to run in a new network namespace that reaches only the bridged ports."""
        ports = [f"--port={port}={path}" for port, path in self.sockets.items()]
        return ["unshare", "--net", sys.executable, __file__, *ports, "--", *command]

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        for path in self.sockets.values():  # a closed socket's file stays: a later bridge binds it again
            path.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", action="append", default=[], help="PORT=UNIX_SOCKET")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for item in arguments.port:
        port, path = item.split("=", 1)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(16)
        threading.Thread(target=_serve, args=(listener, _connect_unix(path)), daemon=True).start()
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
