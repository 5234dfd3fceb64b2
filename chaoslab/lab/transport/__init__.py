"""How a command reaches a node: run it, start a long-running one, read a file.

The netns lab enters the node's namespace on this machine; hosts and VMs are reached over
OpenSSH. Nothing above a transport knows which it is.
"""

from __future__ import annotations

import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from chaoslab.commands import CommandResult
from chaoslab.errors import ChaoslabError


class Unreachable(ChaoslabError):
    """The node did not answer (a host that is down, a VM that was halted)."""


@dataclass(frozen=True)
class ClockOffset:
    """How far the node's clock is ahead of this machine's (seconds; negative: behind), give or take
    the uncertainty: half the round trip of the best look."""

    offset: float
    uncertainty: float

    @property
    def applied(self) -> float:
        """The offset to move the node's stamps by: none when it is within its uncertainty (no telling
        it from the same clock, which a host on this machine's clock measures so)."""
        return self.offset if abs(self.offset) > self.uncertainty else 0.0


CLOCK_SAMPLES = 5


class Transport(ABC):
    # how often the event recorder may look at the node; each look is a command or two
    poll_interval = 0.02

    @abstractmethod
    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a command on the node, as root; Unreachable if the node does not answer."""

    def run_as(self, argv: Sequence[str], privileged: bool, timeout: float = 30.0,
               check: bool = False) -> CommandResult:
        """run, as root or not where that makes a difference (sudo over ssh); as root by default."""
        return self.run(argv, timeout, check)

    @abstractmethod
    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start a long-running command on the node (a monitor); its stdout is a text pipe."""

    @abstractmethod
    def read_file(self, relative: str) -> str | None:
        """The text of a file under the node's root, or None if it does not exist or cannot be read."""

    def clock_offset(self) -> ClockOffset:
        """The node's clock against this machine's, NTP's way: the node's time against the middle of
        the round trip, from the look with the shortest round trip of a few."""
        best: ClockOffset | None = None
        for _ in range(CLOCK_SAMPLES):
            sent = time.time()
            result = self.run(["date", "+%s.%N"], timeout=10)
            received = time.time()
            try:
                remote = float(result.stdout.strip())
            except ValueError:
                raise ChaoslabError(f"the node's clock could not be read: date printed {result.stdout!r}") from None
            sample = ClockOffset(remote - (sent + received) / 2, (received - sent) / 2)
            if best is None or sample.uncertainty < best.uncertainty:
                best = sample
        return best


def distribution_family(transport: Transport) -> str:
    """The node's distribution family, debian or rhel (the keys of chaoslab.stack's tables)."""
    return "debian" if transport.run(["test", "-d", "/etc/apt"]).ok else "rhel"
