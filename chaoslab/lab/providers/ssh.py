"""Real hosts over SSH: nodes whose transport is OpenSSH, whose services are systemd units, and whose
machines are not chaoslab's.

The hosts come from an inventory (chaoslab.lab.inventory). Every command goes
through one shared connection per host (ControlMaster), so a probe costs a
round trip, not a handshake; commands are argument lists, quoted once for the
remote shell with shlex. Services are systemd units. The client that measures
the VIP is this machine (the vagrant provider puts it in the VMs' network).

Hosts chaoslab did not make itself are someone's: a run's faults need an
explicit confirmation there (configuration chaoslab_confirm_hosts, or
$CHAOSLAB_CONFIRM_HOSTS), and `chaoslab plan` prints what each fault would do
on which host without doing it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chaoslab.errors import ChaoslabError
from chaoslab.lab import inventory as inventories
from chaoslab.lab.inventory import Host, Inventory
from chaoslab.lab.machine import Machine
from chaoslab.lab.machine.none import NoMachine
from chaoslab.lab.node import Node
from chaoslab.lab.providers import Provider
from chaoslab.lab.services.systemd import SystemdServices
from chaoslab.lab.topology import Profile, Topology
from chaoslab.lab.transport.ssh import SshConnection, SshTransport
from chaoslab.lab.vrrp import JournalLog, NotifyLogOverSsh, VrrpLog

T = TypeVar("T")


class SshHosts:
    """The hosts of an inventory as nodes: OpenSSH to each (one shared connection), systemd for
    their services; the machine is the provider's to give."""

    def __init__(self, topology: Topology, inventory_path: Path, control_dir: Path, wrapper: Sequence[str] = (),
                 lab_hosts: bool | None = None, halted: Callable[[str], bool] = lambda name: False):
        self.topology = topology
        self.inventory_path = inventory_path
        self.control_dir = control_dir
        self.wrapper = list(wrapper)  # how ssh reaches the hosts' network (the VMs' namespace)
        self.lab_hosts = lab_hosts  # None: as the inventory says
        self.halted = halted
        self._inventory: Inventory | None = None

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = inventories.load(self.inventory_path)
            self._inventory.check_against(self.topology)
        return self._inventory

    def forget(self) -> None:
        """Read the inventory again next time (the VMs come with new addresses and keys)."""
        self._inventory = None

    def connection(self, host: Host) -> SshConnection:
        self.control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lab_host = self.inventory.lab_hosts if self.lab_hosts is None else self.lab_hosts
        return SshConnection(host, self.control_dir, wrapper=self.wrapper, lab_host=lab_host)

    def transport(self, name: str) -> SshTransport:
        return SshTransport(name, self.connection(self.inventory.host(name)), lambda: self.halted(name))

    def node(self, name: str, profile: Profile, machine: Machine, transport: SshTransport | None = None) -> Node:
        host = self.inventory.host(name)
        transport = transport or self.transport(name)
        services = SystemdServices(name, transport, host.units)
        return Node(self.topology.node(name), self.topology, profile, transport, services, machine,
                    self.vrrp_log(host, services))

    def vrrp_log(self, host: Host, services: SystemdServices) -> VrrpLog:
        """Where the host's Keepalived state changes are read: the lab's notify log on machines chaoslab
        made, the journal of the host's own Keepalived elsewhere (or as the inventory says)."""
        lab_host = self.inventory.lab_hosts if self.lab_hosts is None else self.lab_hosts
        if (host.vrrp_states or ("notify" if lab_host else "journal")) == "notify":
            return NotifyLogOverSsh()
        return JournalLog(host.name, lambda: services.unit("keepalived"), self.topology.vrrp_instance)

    def close(self) -> list[str]:
        """End the shared connections, if any were opened."""
        if not self.control_dir.exists():
            return []
        for host in self.inventory.hosts.values():
            self.connection(host).close()
        return [f"ssh connections to {len(self.inventory.hosts)} hosts"]


class SshProvider(Provider):
    """The stack on hosts listed in an inventory; chaoslab brings nothing up or down there."""

    name = "ssh"

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        if not self.settings.inventory:
            raise ChaoslabError("the ssh provider needs an inventory: set chaoslab_inventory in the "
                                "experiment's configuration or $CHAOSLAB_INVENTORY")
        self.hosts = SshHosts(self.topology, Path(self.settings.inventory), self.state_dir / "ssh")

    @property
    def inventory(self) -> Inventory:
        return self.hosts.inventory

    def node(self, name: str) -> Node:
        return self.hosts.node(name, self.profile, NoMachine(name))

    def destination(self, node: str) -> str | None:
        return self.inventory.host(node).destination

    def fault_refusal(self) -> str | None:
        if self.inventory.lab_hosts or self.settings.confirm_hosts:
            return None
        hosts = ", ".join(f"{host.name} ({host.destination})" for host in self.inventory.hosts.values())
        return (f"the inventory {self.inventory.source} lists hosts chaoslab did not make ({hosts}); "
                "faults there need confirmation: look at `chaoslab plan EXPERIMENT` first, then set "
                "chaoslab_confirm_hosts: true in the configuration or CHAOSLAB_CONFIRM_HOSTS=yes")

    def client_command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def in_client(self, function: Callable[[], T]) -> T:
        return function()

    def is_up(self) -> bool:
        return (self.state_dir / "lab.json").exists()

    def up(self) -> list[str]:
        done = []
        for spec in self.topology.nodes:
            node = self.node(spec.name)
            node.run(["true"])  # unreachable: Unreachable names the host and ssh's reason
            missing = [service for service in node.services if not node.service_pids(service)]
            done.append(f"{spec.name} ({self.destination(spec.name)}) answers"
                        + (f"; not running: {', '.join(missing)}" if missing else ""))
        self.write_info(inventory=str(self.inventory.source))
        return done

    def down(self) -> list[str]:
        """Close the connections and forget the hosts; nothing on them changes."""
        removed = self.hosts.close()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            removed.append(f"state directory {self.state_dir}")
        return removed
