"""Where a node's Keepalived state changes are read: the lab's notify log, or the host's own journal.

The lab's Keepalived writes every change through its notify FIFO to one reader, which
appends "<unix time> <state>" to run/chaoslab/vrrp-state.log in the order of the changes
(provision/templates/vrrp_notify.sh): the last line is the latest state.

A Keepalived that chaoslab did not configure has no such log; it tells journald, as every
Keepalived does: "(VI_1) Entering MASTER STATE" (Keepalived 2), "VRRP_Instance(VI_1) Entering
MASTER STATE" (1.x). Those lines, stamped by the host's journald in UTC, are the states there.
Both give the recorder lines "<unix time> <state>" on the host's clock.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable

from chaoslab.errors import ChaoslabError
from chaoslab.lab.journal import entry_time, journal_entries
from chaoslab.lab.transport import Transport, Unreachable
from chaoslab.measure.events import VrrpPoll

VRRP_STATE_LOG = "run/chaoslab/vrrp-state.log"
# the VRRP state log's length, its lines after the first $1 (all if it is shorter), from one
# read of the file (a line appended between two reads would be counted twice), then whether
# Keepalived runs (see NotifyLog.poll)
VRRP_POLL = (
    'if [ -r "$2" ]; then '
    'awk -v seen="$1" \'{ line[NR] = $0 } END { print NR; for (i = (NR < seen ? 1 : seen + 1); i <= NR; i++) '
    'print line[i] }\' "$2"; else echo 0; fi; '
    'if pgrep -x keepalived >/dev/null; then echo alive; else echo gone; fi'
)
# Keepalived's own words for a state change; "Transition to" precedes "Entering" in 1.x and is not one
ENTERING = re.compile(r"(?:VRRP_Instance)?\((?P<instance>[^)]+)\) Entering (?P<state>MASTER|BACKUP|FAULT) STATE")
JOURNAL_FIELDS = "MESSAGE,_SOURCE_REALTIME_TIMESTAMP"
# the unit's journal entries after cursor $2 (all of them when $2 is empty; only the latest, for its
# cursor, when $3 is "start"), then a line "@@ <systemctl is-active>": one round trip a look
JOURNAL_POLL = f"""
command -v journalctl >/dev/null || {{ echo "@@ no-journal"; exit 0; }}
read_journal() {{ unit=$1; shift; journalctl -u "$unit" -o json --output-fields={JOURNAL_FIELDS} --no-pager "$@"; }}
if [ "$3" = start ]; then read_journal "$1" -n 1
elif [ -n "$2" ]; then read_journal "$1" --after-cursor="$2"
else read_journal "$1"
fi
echo "@@ $(systemctl is-active "$1")"
"""
# the entries of the unit's current run (its invocation), for the latest state
JOURNAL_CURRENT = (
    'command -v journalctl >/dev/null || exit 3; id=$(systemctl show -p InvocationID --value "$1"); '
    f'[ -z "$id" ] || journalctl _SYSTEMD_INVOCATION_ID="$id" -o json --output-fields={JOURNAL_FIELDS} '
    '--no-pager -n 2000'
)


class VrrpLog(ABC):
    """Where one node's Keepalived state changes are read."""

    @abstractmethod
    def latest(self, transport: Transport) -> str | None:
        """The state Keepalived entered last, None before the first (or when it cannot be read)."""

    @abstractmethod
    def poll(self, transport: Transport, alive: Callable[[], bool], position: int | str | None,
             liveness: bool) -> VrrpPoll:
        """The changes after `position` (None: none, only the position to start from), the position
        after them, and, with liveness, whether Keepalived runs."""


class NotifyLog(VrrpLog):
    """The lab's notify log, read with the transport; whether Keepalived runs from its service manager."""

    path = VRRP_STATE_LOG

    def lines(self, transport: Transport) -> list[str]:
        return (transport.read_file(self.path) or "").splitlines()

    def latest(self, transport: Transport) -> str | None:
        fields = next((line.split() for line in reversed(self.lines(transport)) if line.strip()), None)
        return fields[1] if fields and len(fields) > 1 else None

    def poll(self, transport: Transport, alive: Callable[[], bool], position: int | str | None,
             liveness: bool) -> VrrpPoll:
        """The log's lines after the first `position` (all of them if the log is shorter: /run was
        emptied by a reboot), how many it has, and, with liveness, whether Keepalived runs."""
        lines = self.lines(transport)
        seen = len(lines) if position is None else int(position)
        fresh = lines if len(lines) < seen else lines[seen:]
        return VrrpPoll(fresh, len(lines), alive() if liveness else None)


class NotifyLogOverSsh(NotifyLog):
    """The same log on a host over ssh, in one unprivileged round trip a look."""

    def poll(self, transport: Transport, alive: Callable[[], bool], position: int | str | None,
             liveness: bool) -> VrrpPoll:
        try:
            result = transport.run_as(["sh", "-c", VRRP_POLL, "sh", str(position or 0), f"/{self.path}"],
                                      privileged=False)
        except Unreachable:
            return VrrpPoll([], position, None, reachable=False)
        lines = result.stdout.splitlines()
        if not result.ok or len(lines) < 2 or not lines[0].isdigit():
            return VrrpPoll([], position, None)  # cut off mid-answer (the host went down): look again
        count, *fresh, state = lines
        return VrrpPoll([] if position is None else fresh, int(count), state == "alive")


def state_line(entry: dict, instance: str | None) -> str | None:
    """A journal entry of Keepalived -> '<unix time> <state>' if it tells a state change (of
    `instance`, when one is named), else None."""
    message = entry.get("MESSAGE")
    found = ENTERING.search(message) if isinstance(message, str) else None
    if not found or (instance and found["instance"] != instance):
        return None
    when = entry_time(entry)
    return None if when is None else f"{when:.6f} {found['state']}"


class JournalLog(VrrpLog):
    """Keepalived's own lines in the host's journal (journald), read over the node's transport."""

    def __init__(self, node: str, unit: Callable[[], str], instance: str | None):
        self.node = node
        self.keepalived_unit = unit  # asked when first needed: it may depend on the host's distribution
        self.instance = instance  # the VRRP instance of the topology's VIP; None: any

    @property
    def unit(self) -> str:
        return self.keepalived_unit()

    def latest(self, transport: Transport) -> str | None:
        try:
            result = transport.run(["sh", "-c", JOURNAL_CURRENT, "sh", self.unit], timeout=30)
        except Unreachable:
            return None
        if result.returncode == 3:
            raise self.no_journal()
        lines = [line for entry in journal_entries(result.stdout) if (line := state_line(entry, self.instance))]
        return lines[-1].split()[1] if lines else None

    def poll(self, transport: Transport, alive: Callable[[], bool], position: int | str | None,
             liveness: bool) -> VrrpPoll:
        cursor = "" if position is None else str(position)
        try:
            result = transport.run(["sh", "-c", JOURNAL_POLL, "sh", self.unit, cursor,
                                    "start" if position is None else ""], timeout=30)
        except Unreachable:
            return VrrpPoll([], position, None, reachable=False)
        output = result.stdout.rstrip("\n").rsplit("\n", 1)
        if not result.ok or not output[-1].startswith("@@ "):
            return VrrpPoll([], position, None)  # cut off mid-answer: look again
        if output[-1] == "@@ no-journal":
            raise self.no_journal()
        entries = journal_entries(output[0]) if len(output) == 2 else []
        after = next((entry["__CURSOR"] for entry in reversed(entries) if entry.get("__CURSOR")), cursor)
        lines = [] if position is None else [line for entry in entries if (line := state_line(entry, self.instance))]
        running = output[-1].removeprefix("@@ ").strip() in ("active", "reloading")
        return VrrpPoll(lines, after, running if liveness else None)

    def no_journal(self) -> ChaoslabError:
        return ChaoslabError(f"{self.node} has no journalctl: chaoslab reads Keepalived's state changes from "
                             "journald there; a host without it needs the lab's notify log (inventory variable "
                             "chaoslab_vrrp_states=notify, with provision/templates/vrrp_notify.sh as notify_fifo)")
