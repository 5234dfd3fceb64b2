"""A node: what chaoslab can do to one machine of the lab, whatever runs it.

A node is three parts a provider chooses (chaoslab.lab.providers): its transport (how a
command reaches it), its service manager (how its services are started, stopped and
signalled) and its machine (what can be done to it from outside: halt, boot, cables).
Everything else (facts, freeze, degradation, partitions, VRRP states) is built here on
them, once for every kind of host.
"""

from __future__ import annotations

import re
import signal as signals
import subprocess
from collections.abc import Callable, Sequence
from functools import cached_property

from chaoslab.commands import CommandResult
from chaoslab.errors import ChaoslabError
from chaoslab.lab.machine import Machine
from chaoslab.lab.roles import VIP_NETWORK_INTERFACE
from chaoslab.lab.services import ServiceManager
from chaoslab.lab.topology import NodeSpec, Profile, Topology
from chaoslab.lab.transport import ClockOffset, Transport, Unreachable, distribution_family
from chaoslab.lab.vrrp import VrrpLog
from chaoslab.measure.events import VrrpPoll
from chaoslab.stack import SERVICES

DEGRADE_CHAIN = "CHAOSLAB-DEGRADE"
# one chain per kind of fault, so that an undo removes its own fault alone and knows which it removed
PARTITION_CHAIN = "CHAOSLAB-PARTITION"  # partition_vrrp: VRRP cut between the load balancers
VRRP_BLOCK_CHAIN = "CHAOSLAB-VRRP"  # block_vrrp: one node's firewall drops VRRP
ONE_WAY_CHAIN = "CHAOSLAB-ONEWAY"  # partition_one_way: a node drops what another sends it
FIREWALL_CHAINS = {PARTITION_CHAIN: ("INPUT", "OUTPUT"), VRRP_BLOCK_CHAIN: ("INPUT", "OUTPUT"), ONE_WAY_CHAIN: ("INPUT",)}
# which way of VRRP a direction drops: received (INPUT, from the peers) or sent (OUTPUT, to them)
VRRP_DIRECTIONS = {"in": ("INPUT",), "out": ("OUTPUT",), "both": ("INPUT", "OUTPUT")}
# Undo a degradation or partition; fine when there is none (without the tool there can be none), a
# failure when it cannot look or undo (no permission): the exit status says which, so a heal never
# reports what it did not do.
DROP_NETEM = ('command -v tc >/dev/null || exit 0; qdisc=$(tc qdisc show dev "$1" root) || exit 1; '
              'case "$qdisc" in *netem*) tc qdisc del dev "$1" root ;; esac')
# It prints the chain's rules (iptables -S) before it removes them: nothing when there was no chain.
DROP_CHAIN = ('command -v iptables >/dev/null || exit 0; chain=$1; shift; iptables -w -n -L "$1" >/dev/null || exit 1; '
              'iptables -w -n -L "$chain" >/dev/null 2>&1 || exit 0; iptables -w -S "$chain"; '
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


def vrrp_hooks(direction: str) -> tuple[str, ...]:
    """The iptables hooks a VRRP block in that direction needs; a direction not known is an error naming the known."""
    if direction not in VRRP_DIRECTIONS:
        raise ChaoslabError(f"unknown direction {direction!r}; use one of: {', '.join(VRRP_DIRECTIONS)} "
                            "(VRRP the node receives, sends, or both)")
    return VRRP_DIRECTIONS[direction]


def dropped_sources(rules: Sequence[str]) -> list[str]:
    """The source addresses of `iptables -S` lines ('-A CHAIN -s 192.168.1.13/32 -j DROP' -> 192.168.1.13)."""
    found = []
    for rule in rules:
        words = rule.split()
        if "-s" in words[:-1]:
            address = words[words.index("-s") + 1].removesuffix("/32")
            if address not in found:
                found.append(address)
    return found


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


class Node:
    """One machine of the lab, a load balancer or a web server: how a command reaches it (transport),
    how its services are managed (services), what can be done to it from outside (machine), and
    where its Keepalived's state changes are read (vrrp_log: the lab's notify log, or the host's
    journal). Everything else is built here on them, once for every kind of host."""

    def __init__(self, spec: NodeSpec, topology: Topology, profile: Profile, transport: Transport,
                 services: ServiceManager, machine: Machine, vrrp_log: VrrpLog):
        self.spec = spec
        self.topology = topology
        self.profile = profile
        self.transport = transport
        self.manager = services
        self.machine = machine
        self.vrrp_log = vrrp_log

    @property
    def services(self) -> tuple[str, ...]:
        """The services this node runs under the lab's profile."""
        return self.profile.services(self.spec)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def poll_interval(self) -> float:
        """How often the event recorder looks at the node; each line of the VRRP state log carries
        its own time stamp, so a slower poll delays the record, not the time it gives."""
        return self.transport.poll_interval

    @cached_property
    def family(self) -> str:
        """The node's distribution family, debian or rhel (the keys of chaoslab.stack's tables)."""
        return distribution_family(self.transport)

    @cached_property
    def clock(self) -> ClockOffset:
        """How far the node's clock is off this machine's, measured once (times the node stamps, such as
        its journal's, are moved onto this machine's clock by it)."""
        return self.transport.clock_offset()

    def version(self, service: str) -> str | None:
        """The service's version as the node's binary reports it; None if it cannot tell."""
        known = SERVICES[service]
        argv = known.version_command.get(self.family)
        if not argv:
            return None
        try:
            result = self.run(list(argv), timeout=10)
        except ChaoslabError:
            return None
        found = re.search(known.version_pattern, result.stdout + result.stderr)
        return found.group(1) if found else None

    def __repr__(self) -> str:
        return f"<Node {self.name}>"

    # -- commands, through the transport -----------------------------------

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run a command on the node (as root)."""
        return self.transport.run(argv, timeout, check)

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start a long-running command on the node (a monitor); its stdout is a text pipe."""
        return self.transport.spawn(argv)

    def read_file(self, relative: str) -> str | None:
        """The text of a file under the node's root, or None if it does not exist."""
        return self.transport.read_file(relative)

    # -- services, through the service manager ----------------------------

    def start_service(self, service: str) -> None:
        """Start a service and wait until it runs."""
        self.check_service(service)
        if self.is_halted():
            raise ChaoslabError(f"{self.name} is halted; boot it before starting {service}")
        self.manager.start(service)

    def reload_service(self, service: str) -> None:
        """Reload a running service's configuration the way its service manager does (HAProxy: a new
        process takes the listeners over, the old one finishes what it serves); wait until it runs again."""
        self.check_service(service)
        if self.is_halted():
            raise ChaoslabError(f"{self.name} is halted; boot it before reloading {service}")
        self.manager.reload(service)

    def stop_service(self, service: str) -> None:
        """Stop a service the way its service manager does, and wait until it is gone."""
        self.manager.stop(self.check_service(service))

    def service_pids(self, service: str) -> list[int]:
        """The pids of every process of the service on this node (empty if none)."""
        return self.manager.pids(service)

    def signal_service(self, service: str, signal: signals.Signals) -> list[int]:
        """Send a signal to every process of the service; return the pids signalled."""
        return self.manager.signal(service, signal)

    def service_restarts(self, since: float) -> list[dict]:
        """The restarts the node's service manager made by itself since `since` (this machine's clock),
        as events on this machine's clock: {"kind": "restart", "node", "service", "unit", "t" (when it
        ran again, or went if it has not yet), "down", "up", "after" (seconds without it)}."""
        margin = 1.0  # the clocks' offset is not known yet: ask a little earlier, keep what is after `since`
        found = [(service, restart) for service in self.services
                 for restart in self.manager.restarts(service, since - margin)]
        if not found:
            return []
        offset = self.clock.applied  # as the event recorder moves the node's other stamps
        events = []
        for service, restart in found:
            down = restart.down - offset
            up = None if restart.up is None else restart.up - offset
            if (up or down) >= since:
                events.append({"t": up if up is not None else down, "kind": "restart", "node": self.name,
                               "service": service, "unit": restart.unit, "down": down, "up": up,
                               "after": None if up is None else round(up - down, 6)})
        return events

    def is_service_frozen(self, service: str) -> bool:
        """True if the service's processes are stopped (SIGSTOP)."""
        return self.manager.is_frozen(self.check_service(service))

    # -- the machine, from outside ------------------------------------------

    def halt(self) -> None:
        """The node dies as a whole: every process gone at once, its links down."""
        self.machine.halt()

    def boot(self) -> None:
        """Bring a halted node back: powered on, no fault of the links left, its services running."""
        self.machine.power_on()
        for interface in self.spec.interfaces:
            self.restore_link(interface.name)
        self.clear_firewall()  # a machine that boots has none of the rules a fault set
        self.manager.after_boot(self.services)

    def is_halted(self) -> bool:
        return self.machine.is_halted()

    def link_down(self, interface: str) -> None:
        """Pull the node's cable on that interface (from outside the node)."""
        self.machine.link_down(self.check_interface(interface))

    def link_up(self, interface: str) -> None:
        """Plug it back in."""
        self.machine.link_up(self.check_interface(interface))

    # -- built on the primitives ----------------------------------------

    def check_service(self, service: str) -> str:
        if service not in self.services:
            runs = ", ".join(self.services)
            raise ChaoslabError(f"node {self.name} runs no service {service!r}; it runs: {runs}")
        return service

    def check_interface(self, interface: str) -> str:
        """The interface's name; vip-network (chaoslab.lab.roles) names the node's interface on the VIP's network."""
        if interface == VIP_NETWORK_INTERFACE:
            return self.topology.vip_interface_of(self.spec)
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
        try:
            result = self.run(["ip", "-o", "-4", "addr", "show", "dev", interface])
        except Unreachable:
            return []  # a node that does not answer holds nothing its clients could reach
        return [line.split()[3].split("/")[0] for line in result.stdout.splitlines() if " inet " in line]

    def holds_vip(self) -> bool:
        if self.spec.role != "loadbalancer" or self.is_halted():
            return False
        return self.topology.vip in self.addresses(self.topology.vip_interface_of(self.spec))

    def vrrp_state(self) -> str:
        """MASTER, BACKUP or FAULT from Keepalived's latest notification; STOPPED if it does not run."""
        if self.spec.role != "loadbalancer":
            raise ChaoslabError(f"node {self.name} is a {self.spec.role}: it runs no VRRP")
        if not self.service_pids("keepalived"):
            return "STOPPED"
        return self.vrrp_log.latest(self.transport) or "INIT"

    def vrrp_poll(self, position: int | str | None, liveness: bool) -> VrrpPoll:
        """One look for the event recorder: the state changes after `position` (None: only where they
        end now), and, with liveness, whether Keepalived runs."""
        return self.vrrp_log.poll(self.transport, lambda: bool(self.service_pids("keepalived")), position, liveness)

    def degrade_link(self, interface: str, delay_ms: float = 0, loss_percent: float = 0) -> str:
        """Delay and/or drop the node's outgoing packets on an interface.

        tc netem does both where the kernel has it; without sch_netem, loss
        is emulated with iptables' statistic match and delay is refused."""
        interface = self.check_interface(interface)
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
        interface = self.check_interface(interface)
        undo_each(lambda: self._undo(["sh", "-c", DROP_NETEM, "sh", interface], f"remove the netem qdisc of {interface}"),
                  lambda: self._drop_chain(DEGRADE_CHAIN, ("OUTPUT",)))

    def block_vrrp(self, peers: Sequence[str], direction: str = "both", chain: str = PARTITION_CHAIN) -> None:
        """Drop VRRP (IP protocol 112) from the peers ("in"), to them ("out") or both; other traffic flows.
        The rules go in `chain`: PARTITION_CHAIN for partition_vrrp, VRRP_BLOCK_CHAIN for block_vrrp."""
        hooks = vrrp_hooks(direction)
        for hook in hooks:
            self._ensure_chain(chain, hook)
        for peer in peers:
            if "INPUT" in hooks:
                self.run(["iptables", "-w", "-A", chain, "-p", "vrrp", "-s", peer, "-j", "DROP"], check=True)
            if "OUTPUT" in hooks:
                self.run(["iptables", "-w", "-A", chain, "-p", "vrrp", "-d", peer, "-j", "DROP"], check=True)

    def unblock_vrrp(self, chain: str = PARTITION_CHAIN) -> bool:
        """Undo block_vrrp (the rules of `chain`); True if there was something to undo."""
        return bool(self._drop_chain(chain, FIREWALL_CHAINS[chain]))

    def block_from(self, addresses: Sequence[str]) -> None:
        """Drop every packet that reaches this node from those addresses (INPUT); what it sends flows."""
        self._ensure_chain(ONE_WAY_CHAIN, "INPUT")
        for address in addresses:
            self.run(["iptables", "-w", "-A", ONE_WAY_CHAIN, "-s", address, "-j", "DROP"], check=True)

    def unblock_from(self, addresses: Sequence[str] | None = None) -> list[str]:
        """Undo block_from for those addresses, or for every address (None). Returns the addresses
        whose packets were dropped and pass now; the chain goes once no rule is left in it."""
        if addresses is None:
            return dropped_sources(self._drop_chain(ONE_WAY_CHAIN, FIREWALL_CHAINS[ONE_WAY_CHAIN]))
        undone = []
        for address in addresses:
            while self.run(["iptables", "-w", "-D", ONE_WAY_CHAIN, "-s", address, "-j", "DROP"]).ok:
                if address not in undone:
                    undone.append(address)
        listed = self.run(["iptables", "-w", "-S", ONE_WAY_CHAIN])
        if listed.ok and not [line for line in listed.stdout.splitlines() if line.startswith("-A ")]:
            self._drop_chain(ONE_WAY_CHAIN, FIREWALL_CHAINS[ONE_WAY_CHAIN])
        return undone

    def clear_firewall(self) -> None:
        """Remove every iptables chain a VRRP or one-way fault set (each tried; fails naming each it could not)."""
        undo_each(*(lambda chain=chain, hooks=hooks: self._drop_chain(chain, hooks) and None
                    for chain, hooks in FIREWALL_CHAINS.items()))

    def _ensure_chain(self, chain: str, hook: str) -> None:
        self.run(["iptables", "-w", "-N", chain])  # exists already: fine
        if not self.run(["iptables", "-w", "-C", hook, "-j", chain]).ok:
            self.run(["iptables", "-w", "-I", hook, "-j", chain], check=True)

    def _drop_chain(self, chain: str, hooks: Sequence[str]) -> list[str]:
        """Unhook a chain from every hook, flush and delete it; harmless when it does not exist (one
        command: over ssh each costs a round trip). Returns its rules as `iptables -S` listed them
        (empty: there was no chain)."""
        result = self._undo(["sh", "-c", DROP_CHAIN, "sh", chain, *hooks],
                            f"remove the iptables chain {chain} from {' and '.join(hooks)}")
        return [line for line in result.stdout.splitlines() if line.startswith(("-N ", "-A "))]

    def _undo(self, argv: Sequence[str], what: str) -> CommandResult:
        result = self.run(argv)
        if not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ChaoslabError(f"could not {what} on {self.name}" + (f": {detail[-1]}" if detail else
                                                                       f" (exit {result.returncode})"))
        return result
