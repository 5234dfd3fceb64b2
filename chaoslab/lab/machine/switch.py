"""A netns node's machine: halting kills everything in its namespace at once and takes its links
down (what was in RAM goes: pid files, the VIP); its cables are the ports of the lab's switch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from chaoslab.commands import run
from chaoslab.lab.machine import Machine
from chaoslab.lab.namespaces import kill_at_once, namespace_pids


class SwitchMachine(Machine):
    def __init__(self, namespace: str, root: Path, interfaces: Sequence[str], switch: str,
                 ports: dict[str, str], vip: tuple[str, str] | None):
        self.namespace = namespace
        self.root = root
        self.interfaces = list(interfaces)
        self.switch = switch  # the switch's namespace
        self.ports = ports  # interface -> the switch-side end of its cable
        self.vip = vip  # (address, interface) on a load balancer, which may hold it when it dies

    def halt(self) -> None:
        kill_at_once(lambda: namespace_pids(self.namespace))
        for pid_file in (self.root / "run").glob("*.pid"):  # /run is lost with the RAM
            pid_file.unlink()
        for interface in self.interfaces:
            run(["ip", "-n", self.namespace, "link", "set", interface, "down"], check=True)
        if self.vip:  # what was in RAM is gone: the VIP too
            address, interface = self.vip
            run(["ip", "-n", self.namespace, "addr", "del", f"{address}/32", "dev", interface])

    def power_on(self) -> None:
        for interface in self.interfaces:
            run(["ip", "-n", self.namespace, "link", "set", interface, "up"], check=True)

    def is_halted(self) -> bool:
        result = run(["ip", "-n", self.namespace, "-o", "link", "show", self.interfaces[0]])
        flags = result.stdout.split("<", 1)[-1].split(">", 1)[0].split(",")
        return result.ok and "UP" not in flags

    def link_down(self, interface: str) -> None:
        run(["ip", "-n", self.switch, "link", "set", self.ports[interface], "down"], check=True)

    def link_up(self, interface: str) -> None:
        run(["ip", "-n", self.switch, "link", "set", self.ports[interface], "up"], check=True)
