"""Where a node's Keepalived state changes are read: the lab's notify log.

The lab's Keepalived writes every change through its notify FIFO to one reader, which
appends "<unix time> <state>" to run/chaoslab/vrrp-state.log in the order of the changes
(provision/templates/vrrp_notify.sh): the last line is the latest state.
"""

from __future__ import annotations

from collections.abc import Callable

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


class NotifyLog:
    """The lab's notify log, read with the transport; whether Keepalived runs from its service manager."""

    path = VRRP_STATE_LOG

    def lines(self, transport: Transport) -> list[str]:
        return (transport.read_file(self.path) or "").splitlines()

    def latest(self, transport: Transport) -> str | None:
        """The state of the last notification, None before the first."""
        fields = next((line.split() for line in reversed(self.lines(transport)) if line.strip()), None)
        return fields[1] if fields and len(fields) > 1 else None

    def poll(self, transport: Transport, alive: Callable[[], bool], seen: int, liveness: bool) -> VrrpPoll:
        """The log's lines after the first `seen` (all of them if the log is shorter: /run was emptied by
        a reboot), how many it has, and, with liveness, whether Keepalived runs."""
        lines = self.lines(transport)
        fresh = lines if len(lines) < seen else lines[seen:]
        return VrrpPoll(fresh, len(lines), alive() if liveness else None)


class NotifyLogOverSsh(NotifyLog):
    """The same log on a host over ssh, in one unprivileged round trip a look."""

    def poll(self, transport: Transport, alive: Callable[[], bool], seen: int, liveness: bool) -> VrrpPoll:
        try:
            result = transport.run_as(["sh", "-c", VRRP_POLL, "sh", str(seen), f"/{self.path}"], privileged=False)
        except Unreachable:
            return VrrpPoll([], seen, None, reachable=False)
        lines = result.stdout.splitlines()
        if not result.ok or len(lines) < 2 or not lines[0].isdigit():
            return VrrpPoll([], seen, None)  # cut off mid-answer (the host went down): look again
        count, *fresh, state = lines
        return VrrpPoll(fresh, int(count), state == "alive")
