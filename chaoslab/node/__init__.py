"""The Node interface: what chaoslab can do to one machine of the lab, whatever runs it.

Providers (netns, vagrant, ssh) implement the primitives: run a command, read
a file, start / stop / signal a service, halt / boot, and link faults from
outside the node. Everything else (facts, freeze, degradation, partitions) is
built here on top of them, once for all providers.
"""

from __future__ import annotations

import signal as signals
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chaoslab.commands import CommandResult
from chaoslab.errors import ChaoslabError
from chaoslab.topology import NodeSpec, Profile, Topology

VRRP_STATE_LOG = "run/chaoslab/vrrp-state.log"
DEGRADE_CHAIN = "CHAOSLAB-DEGRADE"
PARTITION_CHAIN = "CHAOSLAB-PARTITION"
# Undo a degradation or partition; fine when there is none (without the tool there can be none), a
# failure when it cannot look or undo (no permission): the exit status says which, so a heal never
# reports what it did not do.
DROP_NETEM = ('command -v tc >/dev/null || exit 0; qdisc=$(tc qdisc show dev "$1" root) || exit 1; '
              'case "$qdisc" in *netem*) tc qdisc del dev "$1" root ;; esac')
DROP_CHAIN = ('command -v iptables >/dev/null || exit 0; chain=$1; shift; iptables -w -n -L "$1" >/dev/null || exit 1; '
              'iptables -w -n -L "$chain" >/dev/null 2>&1 || exit 0; '
              'for hook in "$@"; do while iptables -w -D "$hook" -j "$chain" 2>/dev/null; do :; done; done; '
              'iptables -w -F "$chain" && iptables -w -X "$chain"')


def parse_signal(value: str | int) -> signals.Signals:
    """'9', 9, 'KILL', 'SIGKILL' -> Signals.SIGKILL; an unknown one lists the known."""
    try:
        if isinstance(value, int) or str(value).isdigit():
            return signals.Signals(int(value))
        name = str(value).upper()
        return signals.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        known = ", ".join(s.name for s in (signals.SIGTERM, signals.SIGKILL, signals.SIGSTOP,
                                           signals.SIGCONT, signals.SIGHUP, signals.SIGINT))
        raise ChaoslabError(f"unknown signal {value!r}; use a name or number such as {known}") from None


def undo_each(*steps: Callable[[], None]) -> None:
    """Try every step, then fail naming each that failed."""
    failed = []
    for step in steps:
        try:
            step()
        except ChaoslabError as error:
            failed.append(str(error))
    if failed:
        raise ChaoslabError("; ".join(failed))


@dataclass(frozen=True)
class VrrpPoll:
    """What one look at a node's VRRP state log found. alive: whether Keepalived runs, None when
    that was not asked or could not be told; reachable: False when the node did not answer (then
    nothing is known of its Keepalived, which is not the same as knowing it stopped)."""

    lines: list[str]
    count: int
    alive: bool | None
    reachable: bool = True


class Node(ABC):
    """One machine of the lab: a load balancer or a web server."""

    # how often the event recorder reads the node's VRRP state log; each line carries
    # its own time stamp, so a slower poll delays the record, not the time it gives
    poll_interval = 0.02

    def __init__(self, spec: NodeSpec, topology: Topology, profile: Profile):
        self.spec = spec
        self.topology = topology
        self.profile = profile

    @property
    def services(self) -> tuple[str, ...]:
        """The services this node runs under the lab's profile."""
        return self.profile.services(self.spec)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- primitives each provider implements -----------------------------

    @abstractmethod
    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a command on the node (as root)."""

    @abstractmethod
    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start a long-running command on the node (a monitor); its stdout is a text pipe."""

    @abstractmethod
    def read_file(self, relative: str) -> str | None:
        """The text of a file under the node's root, or None if it does not exist."""

    @abstractmethod
    def start_service(self, service: str) -> None:
        """Start a service and wait until it runs."""

    @abstractmethod
    def stop_service(self, service: str) -> None:
        """Stop a service the way its service manager does, and wait until it is gone."""

    @abstractmethod
    def service_pids(self, service: str) -> list[int]:
        """The pids of every process of the service on this node (empty if none)."""

    @abstractmethod
    def signal_service(self, service: str, signal: signals.Signals) -> list[int]:
        """Send a signal to every process of the service; return the pids signalled."""

    @abstractmethod
    def halt(self) -> None:
        """The node dies as a whole: every process gone at once, its links down."""

    @abstractmethod
    def boot(self) -> None:
        """Bring a halted node back: links up, services started."""

    @abstractmethod
    def is_halted(self) -> bool:
        """True while the node is halted."""

    @abstractmethod
    def link_down(self, interface: str) -> None:
        """Pull the node's cable on that interface (from outside the node)."""

    @abstractmethod
    def link_up(self, interface: str) -> None:
        """Plug it back in."""

    @abstractmethod
    def is_service_frozen(self, service: str) -> bool:
        """True if the service's processes are stopped (SIGSTOP)."""

    # -- built on the primitives ----------------------------------------

    def check_service(self, service: str) -> str:
        if service not in self.services:
            runs = ", ".join(self.services)
            raise ChaoslabError(f"node {self.name} runs no service {service!r}; it runs: {runs}")
        return service

    def check_interface(self, interface: str) -> str:
        return self.spec.interface(interface).name

    def restart_service(self, service: str) -> None:
        self.stop_service(service)
        self.start_service(service)

    def service_running(self, service: str) -> bool:
        return bool(self.service_pids(self.check_service(service)))

    def running_services(self) -> list[str]:
        return [service for service in self.services if self.service_pids(service)]

    def kill_service(self, service: str, signal: str | int = "SIGKILL") -> list[int]:
        """Signal every process of the service; fail if none runs."""
        self.check_service(service)
        pids = self.signal_service(service, parse_signal(signal))
        if not pids:
            raise ChaoslabError(f"{service} is not running on {self.name}: nothing to signal")
        return pids

    def freeze_service(self, service: str) -> list[int]:
        return self.kill_service(service, signals.SIGSTOP)

    def thaw_service(self, service: str) -> list[int]:
        return self.signal_service(self.check_service(service), signals.SIGCONT)

    def addresses(self, interface: str) -> list[str]:
        result = self.run(["ip", "-o", "-4", "addr", "show", "dev", interface])
        return [line.split()[3].split("/")[0] for line in result.stdout.splitlines() if " inet " in line]

    def holds_vip(self) -> bool:
        if self.spec.role != "loadbalancer" or self.is_halted():
            return False
        return self.topology.vip in self.addresses(self.topology.vip_interface)

    def vrrp_state(self) -> str:
        """MASTER, BACKUP or FAULT from Keepalived's latest notification; STOPPED if it does not run.

        The notifications come through Keepalived's notify FIFO, one reader, in the order
        of the transitions (provision/templates/vrrp_notify.sh): the last line is the latest."""
        if self.spec.role != "loadbalancer":
            raise ChaoslabError(f"node {self.name} is a {self.spec.role}: it runs no VRRP")
        if not self.service_pids("keepalived"):
            return "STOPPED"
        lines = (self.read_file(VRRP_STATE_LOG) or "").split("\n")
        fields = next((line.split() for line in reversed(lines) if line.strip()), None)
        return fields[1] if fields else "INIT"

    def vrrp_poll(self, seen: int, liveness: bool) -> VrrpPoll:
        """One look for the event recorder: the VRRP state log's lines after the first `seen`
        (all of them if the log is shorter: /run was emptied by a reboot), how many lines it
        has, and, with liveness, whether Keepalived runs."""
        lines = (self.read_file(VRRP_STATE_LOG) or "").splitlines()
        fresh = lines if len(lines) < seen else lines[seen:]
        return VrrpPoll(fresh, len(lines), bool(self.service_pids("keepalived")) if liveness else None)

    def degrade_link(self, interface: str, delay_ms: float = 0, loss_percent: float = 0) -> str:
        """Delay and/or drop the node's outgoing packets on an interface.

        tc netem does both where the kernel has it; without sch_netem, loss
        is emulated with iptables' statistic match and delay is refused."""
        self.check_interface(interface)
        if not 0 <= loss_percent <= 100 or delay_ms < 0:
            raise ChaoslabError("loss_percent must be within 0..100 and delay_ms at least 0")
        netem = ["tc", "qdisc", "replace", "dev", interface, "root", "netem"]
        if delay_ms:
            netem += ["delay", f"{delay_ms:g}ms"]
        if loss_percent:
            netem += ["loss", f"{loss_percent:g}%"]
        result = self.run(netem)
        if result.ok:
            return "netem"
        if delay_ms:
            raise ChaoslabError(
                f"cannot delay packets on {self.name}: this kernel has no sch_netem qdisc "
                f"({result.stderr.strip()}); only loss can be emulated here (iptables statistic)"
            )
        self._ensure_chain(DEGRADE_CHAIN, "OUTPUT")
        self.run(["iptables", "-w", "-A", DEGRADE_CHAIN, "-o", interface, "-m", "statistic", "--mode", "random",
                  "--probability", f"{loss_percent / 100:.4f}", "-j", "DROP"], check=True)
        return "iptables"

    def restore_link(self, interface: str) -> None:
        """Undo degrade_link on an interface (both mechanisms); harmless when nothing is set.
        A root qdisc other than netem is the host's own (shaping on a real host): it stays."""
        self.check_interface(interface)
        undo_each(lambda: self._undo(["sh", "-c", DROP_NETEM, "sh", interface], f"remove the netem qdisc of {interface}"),
                  lambda: self._drop_chain(DEGRADE_CHAIN, ("OUTPUT",)))

    def block_vrrp(self, peers: Sequence[str]) -> None:
        """Drop VRRP (IP protocol 112) from and to the peers; other traffic flows."""
        self._ensure_chain(PARTITION_CHAIN, "INPUT")
        self._ensure_chain(PARTITION_CHAIN, "OUTPUT")
        for peer in peers:
            self.run(["iptables", "-w", "-A", PARTITION_CHAIN, "-p", "vrrp", "-s", peer, "-j", "DROP"], check=True)
            self.run(["iptables", "-w", "-A", PARTITION_CHAIN, "-p", "vrrp", "-d", peer, "-j", "DROP"], check=True)

    def unblock_vrrp(self) -> None:
        self._drop_chain(PARTITION_CHAIN, ("INPUT", "OUTPUT"))

    def _ensure_chain(self, chain: str, hook: str) -> None:
        self.run(["iptables", "-w", "-N", chain])  # exists already: fine
        if not self.run(["iptables", "-w", "-C", hook, "-j", chain]).ok:
            self.run(["iptables", "-w", "-I", hook, "-j", chain], check=True)

    def _drop_chain(self, chain: str, hooks: Sequence[str]) -> None:
        """Unhook a chain from every hook, flush and delete it; harmless when it does not exist (one
        command: over ssh each costs a round trip)."""
        self._undo(["sh", "-c", DROP_CHAIN, "sh", chain, *hooks],
                   f"remove the iptables chain {chain} from {' and '.join(hooks)}")

    def _undo(self, argv: Sequence[str], what: str) -> None:
        result = self.run(argv)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ChaoslabError(f"could not {what} on {self.name}" + (f": {detail[-1]}" if detail else
                                                                       f" (exit {result.returncode})"))
