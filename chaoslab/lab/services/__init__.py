"""How a node's services are managed: started, stopped, signalled, found.

In the netns lab chaoslab runs the daemons itself (direct); on hosts and VMs systemd
does (systemd). Which process is which service comes from the one table, chaoslab.stack.
"""

from __future__ import annotations

import signal as signals
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Restart:
    """The service manager restarted a unit by itself: its process went at `down`, it ran again at
    `up` (None: not yet), both on the node's clock."""

    unit: str
    down: float
    up: float | None


class ServiceManager(ABC):
    @abstractmethod
    def start(self, service: str) -> None:
        """Start a service and wait until it runs."""

    @abstractmethod
    def stop(self, service: str) -> None:
        """Stop a service the way its service manager does, and wait until it is gone."""

    @abstractmethod
    def reload(self, service: str) -> None:
        """Reload a running service's configuration the way its service manager does (HAProxy: a new
        process takes the listeners over from the old one), and wait until the service runs again."""

    @abstractmethod
    def pids(self, service: str) -> list[int]:
        """The pids of every process of the service on the node (empty if none)."""

    @abstractmethod
    def signal(self, service: str, signal: signals.Signals) -> list[int]:
        """Send a signal to every process of the service; return the pids signalled. SIGKILL kills
        them as one (a crash), SIGSTOP returns once they are stopped."""

    @abstractmethod
    def is_frozen(self, service: str) -> bool:
        """True if the service's processes are stopped (SIGSTOP)."""

    @abstractmethod
    def after_boot(self, services: Sequence[str]) -> None:
        """What the node's init does once it is powered on: the services run when this returns."""

    def restarts(self, service: str, since: float) -> list[Restart]:
        """The restarts the service manager made of the service by itself since `since` (the node's
        clock); none where chaoslab runs the daemons itself."""
        return []
