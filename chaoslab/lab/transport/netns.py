"""Commands in a node's network namespace on this machine; its files under the node's root directory."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from chaoslab.commands import CommandResult, run
from chaoslab.lab.transport import ClockOffset, Transport


class NetnsTransport(Transport):
    def __init__(self, namespace: str, root: Path):
        self.namespace = namespace
        self.root = root

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        return run(["ip", "netns", "exec", self.namespace, *argv], timeout=timeout, check=check)

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    def clock_offset(self) -> ClockOffset:
        """A namespace of this machine: the same clock."""
        return ClockOffset(0.0, 0.0)

    def read_file(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
