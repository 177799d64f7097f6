"""QMP, qemu's JSON monitor: a minimal client over the UNIX socket a local instance's qemu listens on.

The human monitor (HMP, `-monitor`) stays for the power-off (builder/local/instances.py); QMP is
for what needs an answer a program can check: a block job's end and its error.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from builder.errors import BuilderError


class QmpError(BuilderError):
    """qemu refused a command, or its monitor could not be reached."""


class Qmp:
    """One session: greeting read and capabilities negotiated on entry, closed on exit."""

    def __init__(self, path: Path, timeout: float = 30):
        self.path, self.timeout = path, timeout
        self._connection: socket.socket | None = None
        self._reader = None

    def __enter__(self) -> Qmp:
        try:
            self._connection = socket.socket(socket.AF_UNIX)
            self._connection.settimeout(self.timeout)
            self._connection.connect(str(self.path))
            self._reader = self._connection.makefile("r", encoding="utf-8")
            self._message()  # the greeting
        except OSError as exc:
            self.close()
            raise QmpError(f"qemu's QMP monitor {self.path} did not answer ({exc})") from None
        self.execute("qmp_capabilities")
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._connection is not None:
            self._connection.close()
        self._connection = self._reader = None

    def execute(self, command: str, **arguments) -> object:
        """The command's `return`; QmpError with qemu's own words when it answers `error`."""
        request = {"execute": command, **({"arguments": arguments} if arguments else {})}
        try:
            self._connection.sendall(json.dumps(request).encode() + b"\n")
            while True:
                answer = self._message()
                if "event" in answer:  # asynchronous news (a job's state): the caller polls instead
                    continue
                break
        except OSError as exc:
            raise QmpError(f"qemu's QMP monitor {self.path} stopped answering during {command} ({exc})") from None
        if "error" in answer:
            raise QmpError(f"qemu refused {command}: {answer['error'].get('desc', answer['error'])}")
        return answer.get("return")

    def _message(self) -> dict:
        line = self._reader.readline()
        if not line:
            raise OSError("the monitor closed the connection")
        return json.loads(line)
