"""How a command reaches a node: run it, start a long-running one, read a file.

The netns lab enters the node's namespace on this machine; hosts and VMs are reached over
OpenSSH. Nothing above a transport knows which it is.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence

from chaoslab.commands import CommandResult
from chaoslab.errors import ChaoslabError


class Unreachable(ChaoslabError):
    """The node did not answer (a host that is down, a VM that was halted)."""


class Transport(ABC):
    # how often the event recorder may look at the node; each look is a command or two
    poll_interval = 0.02

    @abstractmethod
    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a command on the node, as root; Unreachable if the node does not answer."""

    @abstractmethod
    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start a long-running command on the node (a monitor); its stdout is a text pipe."""

    @abstractmethod
    def read_file(self, relative: str) -> str | None:
        """The text of a file under the node's root, or None if it does not exist or cannot be read."""


def distribution_family(transport: Transport) -> str:
    """The node's distribution family, debian or rhel (the keys of chaoslab.stack's tables)."""
    return "debian" if transport.run(["test", "-d", "/etc/apt"]).ok else "rhel"
