"""A host chaoslab does not own: it is never halted by chaoslab, and its cables are not chaoslab's."""

from __future__ import annotations

from chaoslab.errors import ChaoslabError
from chaoslab.lab.machine import Machine


class NoMachine(Machine):
    def __init__(self, node: str):
        self.node = node

    def halt(self) -> None:
        raise ChaoslabError(f"the ssh provider cannot halt {self.node}: it could not boot it again; "
                            "halt and boot need a provider that owns the machine (vagrant)")

    def power_on(self) -> None:
        raise ChaoslabError(f"the ssh provider cannot boot {self.node}; use the vagrant provider for halt/boot")

    def is_halted(self) -> bool:
        return False

    def link_down(self, interface: str) -> None:
        raise ChaoslabError(f"the ssh provider cannot pull {self.node}'s cable from outside; "
                            "use degrade_link or partition_vrrp, or the vagrant provider")

    def link_up(self, interface: str) -> None:
        """Nothing to plug back: link_down is refused."""
