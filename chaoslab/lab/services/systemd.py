"""Services as systemd units on a host or VM, reached over its transport (sudo where needed).

Unit names come from the host (inventory variables chaoslab_unit_<service>, such as
chaoslab_unit_httpd=nginx), by default per distribution family from chaoslab.stack. A
service's processes are those of its unit's control group, so that a process of the same name
elsewhere on the host (a container, a second instance) is never counted or signalled; signals
go through systemd (systemctl kill). When systemd restarts a unit by itself (Restart=always, as
Debian's haproxy.service has), its journal says so; restarts() reads it.
"""

from __future__ import annotations

import signal as signals
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property

from chaoslab.errors import ChaoslabError
from chaoslab.lab.journal import entry_time, journal_entries
from chaoslab.lab.services import Restart, ServiceManager
from chaoslab.lab.transport import Transport, Unreachable, distribution_family
from chaoslab.stack import SERVICES

WAIT_STEP = 0.1
# the pids of the unit's control group (cgroup v2, else v1's systemd hierarchy); nothing if it has none
UNIT_PIDS = (
    'cg=$(systemctl show -p ControlGroup --value "$1") || exit 1; [ -n "$cg" ] || exit 0; '
    'cat "/sys/fs/cgroup$cg/cgroup.procs" 2>/dev/null || cat "/sys/fs/cgroup/systemd$cg/cgroup.procs" 2>/dev/null; '
    'exit 0'
)
# systemd's catalog: the message ids of what it logs about a unit (systemd/sd-messages.h)
PROCESS_EXITED = "98e322203f7a4ed290d09fe03c09fe15"
FAILED_WITH_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"
RESTART_SCHEDULED = "5eb03494b6584870a536b337290809b3"
STARTED = "39f53479d3a045ac8e11786248231fbf"
# the unit runs again after a reload: active (not reloading) and its main pid a live process
RELOADED = ('state=$(systemctl show -p ActiveState --value "$1") && [ "$state" = active ] && '
            'pid=$(systemctl show -p MainPID --value "$1") && [ "${pid:-0}" -gt 0 ] && kill -0 "$pid"')


def restarts_in(entries: Sequence[dict]) -> list[Restart]:
    """The restarts systemd made, from a unit's journal entries in order: each scheduled restart,
    from the exit before it (or the scheduling, if no exit was logged) to the start after it."""
    found: list[Restart] = []
    exited: float | None = None
    pending: tuple[str, float] | None = None
    for entry in entries:
        message_id, when = entry.get("MESSAGE_ID"), entry_time(entry)
        if when is None:
            continue
        if message_id in (PROCESS_EXITED, FAILED_WITH_RESULT) and exited is None:
            exited = when
        elif message_id == RESTART_SCHEDULED:
            pending = (str(entry.get("UNIT", "")), exited if exited is not None else when)
        elif message_id == STARTED:
            if pending:
                found.append(Restart(pending[0], pending[1], when))
            pending, exited = None, None
    if pending:
        found.append(Restart(pending[0], pending[1], None))
    return found


class SystemdServices(ServiceManager):
    def __init__(self, node: str, transport: Transport, units: Mapping[str, str] | None = None):
        self.node = node
        self.transport = transport
        self.units = dict(units or {})  # service -> the host's unit, where it is not the family's

    @cached_property
    def family(self) -> str:
        return distribution_family(self.transport)

    def unit(self, service: str) -> str:
        return self.units.get(service) or SERVICES[service].units[self.family]

    def pids(self, service: str) -> list[int]:
        try:
            result = self.transport.run_as(["sh", "-c", UNIT_PIDS, "sh", self.unit(service)], privileged=False)
        except Unreachable:
            return []
        return [int(pid) for pid in result.stdout.split() if pid.isdigit()]

    def signal(self, service: str, signal: signals.Signals) -> list[int]:
        """Through systemd, to every process of the unit at once (systemctl kill)."""
        pids = self.pids(service)
        if pids:
            self.transport.run(["systemctl", "kill", f"--signal={signal.name}", self.unit(service)], check=True)
        if pids and signal == signals.SIGSTOP:
            self._wait(lambda: self.is_frozen(service), 2, f"{service} to stop on {self.node}")
        return pids

    def is_frozen(self, service: str) -> bool:
        pids = self.pids(service)
        if not pids:
            return False
        result = self.transport.run(["ps", "-o", "stat=", "-p", ",".join(map(str, pids))])
        return any(state.startswith("T") for state in result.stdout.split())

    def start(self, service: str) -> None:
        unit = self.unit(service)
        self.transport.run(["systemctl", "reset-failed", unit])
        self.transport.run(["systemctl", "start", unit], timeout=60, check=True)
        self._wait(lambda: bool(self.pids(service)), 10, f"{service} to start on {self.node}")

    def stop(self, service: str) -> None:
        self.transport.run(["systemctl", "stop", self.unit(service)], timeout=60, check=True)

    def reload(self, service: str) -> None:
        """systemctl reload: the unit's own ExecReload (Debian's haproxy.service checks the config, then
        sends its master-worker SIGUSR2: new workers on the listeners the master keeps, the old ones finish
        their connections). A unit that cannot reload fails with systemd's words. Returns once the unit is
        active again with a live main pid."""
        unit = self.unit(service)
        self.transport.run(["systemctl", "reload", unit], timeout=60, check=True)
        self._wait(lambda: self.transport.run(["sh", "-c", RELOADED, "sh", unit]).ok, 10,
                   f"{service} to run again after its reload on {self.node}")

    def after_boot(self, services: Sequence[str]) -> None:
        """systemd starts the enabled units at boot: wait until each runs."""
        for service in services:
            self._wait(lambda service=service: bool(self.pids(service)), 60, f"{service} to start on {self.node}")

    def restarts(self, service: str, since: float) -> list[Restart]:
        """The restarts systemd made of the service's unit since `since` (the host's clock), from its journal."""
        unit = self.unit(service)
        try:
            result = self.transport.run(["journalctl", "-u", unit, "-o", "json", "--no-pager",
                                         "--output-fields=MESSAGE_ID,UNIT", f"--since=@{since:.3f}"], timeout=30)
        except Unreachable:
            return []
        return restarts_in(journal_entries(result.stdout)) if result.ok else []

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ChaoslabError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(WAIT_STEP)
