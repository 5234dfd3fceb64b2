"""Services as systemd units on a host or VM, reached over its transport (sudo where needed);
unit and process names per distribution family from chaoslab.stack."""

from __future__ import annotations

import signal as signals
import time
from collections.abc import Callable, Sequence
from functools import cached_property

from chaoslab.errors import ChaoslabError
from chaoslab.lab.services import ServiceManager
from chaoslab.lab.transport import Transport, Unreachable, distribution_family
from chaoslab.stack import SERVICES

WAIT_STEP = 0.1
# SIGKILL a service's processes as one (see chaoslab.lab.namespaces.kill_at_once): stop every
# process of that name, again until no new one appears, then kill them all; print the pids.
KILL_AT_ONCE = """
stopped=" "
while :; do
    fresh=""
    for pid in $(pgrep -x "$1"); do
        case "$stopped" in *" $pid "*) ;; *) fresh="$fresh $pid" ;; esac
    done
    [ -n "$fresh" ] || break
    kill -STOP $fresh 2>/dev/null
    stopped="$stopped$fresh "
done
[ "$stopped" = " " ] || kill -KILL $stopped 2>/dev/null
echo $stopped
"""


class SystemdServices(ServiceManager):
    def __init__(self, node: str, transport: Transport):
        self.node = node
        self.transport = transport

    @cached_property
    def family(self) -> str:
        return distribution_family(self.transport)

    def unit(self, service: str) -> str:
        return SERVICES[service].units[self.family]

    def process(self, service: str) -> str:
        return SERVICES[service].processes[self.family]

    def pids(self, service: str) -> list[int]:
        try:
            result = self.transport.run(["pgrep", "-x", self.process(service)])
        except Unreachable:
            return []
        return [int(pid) for pid in result.stdout.split()]

    def signal(self, service: str, signal: signals.Signals) -> list[int]:
        process = self.process(service)
        if signal == signals.SIGKILL:
            killed = self.transport.run(["sh", "-c", KILL_AT_ONCE, "sh", process], check=True)
            return [int(pid) for pid in killed.stdout.split()]
        pids = self.pids(service)
        if pids:
            self.transport.run(["kill", f"-{signal.name.removeprefix('SIG')}", *map(str, pids)])
        if signal == signals.SIGSTOP:
            self._wait(lambda: self.is_frozen(service), 2, f"{service} to stop on {self.node}")
        return pids

    def is_frozen(self, service: str) -> bool:
        result = self.transport.run(["ps", "-o", "stat=", "-C", self.process(service)])
        return any(state.startswith("T") for state in result.stdout.split())

    def start(self, service: str) -> None:
        unit = self.unit(service)
        self.transport.run(["systemctl", "reset-failed", unit])
        self.transport.run(["systemctl", "start", unit], timeout=60, check=True)
        self._wait(lambda: bool(self.pids(service)), 10, f"{service} to start on {self.node}")

    def stop(self, service: str) -> None:
        self.transport.run(["systemctl", "stop", self.unit(service)], timeout=60, check=True)

    def after_boot(self, services: Sequence[str]) -> None:
        """systemd starts the enabled units at boot: wait until each runs."""
        for service in services:
            self._wait(lambda service=service: bool(self.pids(service)), 60, f"{service} to start on {self.node}")

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ChaoslabError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(WAIT_STEP)
