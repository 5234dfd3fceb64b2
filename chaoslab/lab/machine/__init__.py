"""What can be done to a node's machine from outside it: power it off at once and on again, pull
and plug its cables. The netns lab's switch and namespaces, the VMs' libvirt; on a host that
chaoslab does not own, nothing (halt and cables are refused: chaoslab could not undo them)."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Machine(ABC):
    @abstractmethod
    def halt(self) -> None:
        """The node dies as a whole: every process gone at once, nothing sent on the way out."""

    @abstractmethod
    def power_on(self) -> None:
        """Power a halted node on; returns once commands reach it again (its services are the
        service manager's to start)."""

    @abstractmethod
    def is_halted(self) -> bool:
        """True while the node is off."""

    @abstractmethod
    def link_down(self, interface: str) -> None:
        """Pull the node's cable on that interface."""

    @abstractmethod
    def link_up(self, interface: str) -> None:
        """Plug it back in."""
