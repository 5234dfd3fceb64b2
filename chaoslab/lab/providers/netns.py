"""The embedded default: the whole stack in Linux network namespaces on this machine.

Each node is a namespace named <prefix>-<node>, linked by veth pairs to Linux
bridges (one per network) inside a namespace of their own, <prefix>-switch;
the client that measures the VIP is <prefix>-client. Real haproxy, keepalived
and apache2 run inside (and, where the profile's Keepalived tracks a file, the
HAProxy health checker that writes it), each with its config, pid and log
files under the node's root directory in the lab's state directory; the
configs are rendered by provision/configure.sh, the step a VM runs. Nothing is
added to the root namespace, and `down` finds the lab from what the system shows.

With settings.configs the lab is a rehearsal (chaoslab.lab.rehearsal): the load balancers run
the user's own keepalived.conf and haproxy.cfg, as written, each in mount and PID namespaces of
its own; the web servers are the lab's Apache on the topology's addresses and ports; no lab
helper runs; lab.json records the configs and the topology, which later Labs of the prefix use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal as signals
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chaoslab.commands import require_binaries, run
from chaoslab.errors import ChaoslabError
from chaoslab.lab.machine.switch import SwitchMachine
from chaoslab.lab.namespaces import (
    NETNS_DIR,
    call_in_namespace,
    namespace_inode,
    namespace_pids,
    require_root,
    signal_pids,
    wait_gone,
)
from chaoslab.lab.node import Node
from chaoslab.lab.providers import Provider
from chaoslab.lab.rehearsal import (
    Enclosure,
    RehearsalTransport,
    check_configs,
    install_loadbalancer,
    install_webserver,
)
from chaoslab.lab.services.direct import START_ORDER, DirectServices
from chaoslab.lab.topology import IFNAMSIZ
from chaoslab.lab.transport.netns import NetnsTransport
from chaoslab.lab.vrrp import NotifyLog
from chaoslab.paths import PROVISION_DIR
from chaoslab.stack import SERVICES

T = TypeVar("T")

SWITCH = "switch"
BINARIES = ("ip", "haproxy", "keepalived", "apache2", "pgrep", "iptables", "setsid")
REHEARSAL_BINARIES = ("unshare", "nsenter")
# what the lab sets in a load balancer's namespace (HAProxy binds the VIP on the backup too); a
# rehearsal records it: the user's own hosts may not have it
LOADBALANCER_SYSCTLS = {"net.ipv4.ip_nonlocal_bind": "1"}


class NetnsProvider(Provider):
    name = "netns"

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        if self.topology.client is None:
            raise ChaoslabError(f"the netns lab needs a client in the topology {self.topology.source} "
                                "(\"client\": its name and interface on the VIP's network), where it measures from")

    def namespace(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def node_root(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    @property
    def configs(self) -> Path | None:
        """A rehearsal's configs directory (DIR/<node>/keepalived|haproxy), None in the lab's own mode."""
        return Path(self.settings.configs).resolve() if self.settings.configs else None

    @staticmethod
    def port_name(node: str, interface: str) -> str:
        """The switch-side end of a node's cable: NODE-NIC, or where that exceeds a Linux interface
        name's 15 characters (a user's host names), the node's first letters and a digest of both."""
        name = f"{node}-{interface}"
        if len(name) <= IFNAMSIZ:
            return name
        return f"{node[:7]}-{hashlib.sha1(name.encode()).hexdigest()[:7]}"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab makes, switch first."""
        members = [*self.topology.node_names, self.topology.client.name]
        return [self.namespace(SWITCH), *(self.namespace(name) for name in members)]

    def existing_namespaces(self) -> list[str]:
        return [name for name in self.namespaces if namespace_inode(name) is not None]

    def prefixed_namespaces(self) -> list[str]:
        """Every namespace named <prefix>-*, whatever topology made it (a prefix has no dash: exactly
        this lab's), so that down removes a lab whose topology is not the one known now."""
        try:
            names = sorted(entry.name for entry in os.scandir(NETNS_DIR))
        except FileNotFoundError:
            return []
        return [name for name in names if name.split("-", 1)[0] == self.prefix and "-" in name]

    def is_up(self) -> bool:
        return len(self.existing_namespaces()) == len(self.namespaces) and (self.state_dir / "lab.json").exists()

    def node(self, name: str) -> Node:
        spec = self.topology.node(name)
        namespace, root = self.namespace(name), self.node_root(name)
        enclosure = Enclosure(namespace, root) if self.configs and spec.role == "loadbalancer" else None
        transport = RehearsalTransport(namespace, root, enclosure) if enclosure else NetnsTransport(namespace, root)
        vip = (self.topology.vip, self.topology.vip_interface_of(spec)) if spec.role == "loadbalancer" else None
        machine = SwitchMachine(namespace, root, [interface.name for interface in spec.interfaces],
                                self.namespace(SWITCH),
                                {interface.name: self.port_name(name, interface.name) for interface in spec.interfaces},
                                vip)
        return Node(spec, self.topology, self.profile, transport, DirectServices(name, transport, enclosure), machine,
                    NotifyLog())

    def destination(self, node: str) -> str:
        return f"namespace {self.namespace(node)}"

    def client_command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(self.topology.client.name), *argv]

    def in_client(self, function: Callable[[], T]) -> T:
        return call_in_namespace(self.namespace(self.topology.client.name), function)

    def after_heal(self) -> None:
        flush_vip_neighbour(self.client_command, self.topology.vip)

    def up(self) -> list[str]:
        require_root()
        require_binaries((*BINARIES, *(REHEARSAL_BINARIES if self.configs else ())))
        if self.is_up():
            info = self.lab_info()
            return [f"lab {self.prefix!r} is already up (profile {info.get('profile')}); nothing changed"]
        if self.configs:
            check_configs(self.configs, self.topology)
        done = [f"cleaned: {line}" for line in self.down()]
        try:
            self._build_network()
            if self.configs:
                facts = self._install_rehearsal()
                done.append(f"rehearsal of {self.configs}: VRRP states from "
                            + ", ".join(f"{node} {source}" for node, source in facts["vrrp_states"].items()))
            else:
                facts = {}
                self._configure_nodes()
            self.write_info(**facts)
            for service in START_ORDER:
                for spec in self.topology.nodes:
                    if service in self.profile.services(spec) and not (self.configs and SERVICES[service].helper):
                        self.node(spec.name).start_service(service)
        except BaseException:
            self.down()
            raise
        done.append(
            f"lab {self.prefix!r} up: {len(self.namespaces)} namespaces, profile {self.profile.name}, "
            f"state in {self.state_dir}"
        )
        return done

    def _install_rehearsal(self) -> dict:
        """The user's files on the load balancers, the lab's stand-ins on the web servers, each load
        balancer's own namespaces; what lab.json records of the rehearsal."""
        states = {}
        for spec in self.topology.nodes:
            root = self.node_root(spec.name)
            root.mkdir(parents=True, exist_ok=True)
            if spec.role == "loadbalancer":
                states[spec.name] = install_loadbalancer(root, self.configs / spec.name, spec, self.topology)
                Enclosure(self.namespace(spec.name), root).ensure()
            else:
                install_webserver(root, spec, self.topology)
        return {"configs": str(self.configs), "topology": self.topology.data, "vrrp_states": states,
                "lab_sysctls": {spec.name: LOADBALANCER_SYSCTLS for spec in self.topology.loadbalancers}}

    def _build_network(self) -> None:
        switch = self.namespace(SWITCH)
        for namespace in self.namespaces:
            run(["ip", "netns", "add", namespace], check=True)
            run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        for network in self.topology.networks:
            run(["ip", "-n", switch, "link", "add", f"br-{network}", "type", "bridge"], check=True)
            run(["ip", "-n", switch, "link", "set", f"br-{network}", "up"], check=True)
        prefixlen = {name: net.prefixlen for name, net in self.topology.networks.items()}
        for spec in (*self.topology.nodes, self.topology.client):
            namespace = self.namespace(spec.name)
            for interface in spec.interfaces:
                port = self.port_name(spec.name, interface.name)
                run(["ip", "link", "add", "name", interface.name, "netns", namespace, "type", "veth",
                     "peer", "name", port, "netns", switch], check=True)
                run(["ip", "-n", switch, "link", "set", port, "master", f"br-{interface.network}", "up"], check=True)
                run(["ip", "-n", namespace, "addr", "add",
                     f"{interface.address}/{prefixlen[interface.network]}", "dev", interface.name], check=True)
                run(["ip", "-n", namespace, "link", "set", interface.name, "up"], check=True)
        for spec in self.topology.loadbalancers:
            # HAProxy binds the VIP on the backup too (a per-namespace setting)
            for key, value in LOADBALANCER_SYSCTLS.items():
                run(["ip", "netns", "exec", self.namespace(spec.name), "sysctl", "-q", "-w", f"{key}={value}"],
                    check=True)

    def _configure_nodes(self) -> None:
        """Render every node's files with the provisioners' own configure step."""
        environment = {**os.environ, "CHAOSLAB_VRRP_PASSWORD": self.settings.vrrp_password}
        steps = [
            subprocess.Popen(
                ["bash", str(PROVISION_DIR / "configure.sh"), "--node", spec.name,
                 "--profile", self.profile.name, "--root", str(self.node_root(spec.name))],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment,
            )
            for spec in self.topology.nodes
        ]
        for spec, step in zip(self.topology.nodes, steps):
            _, errors = step.communicate(timeout=60)
            if step.returncode != 0:
                raise ChaoslabError(f"configuring {spec.name} failed: {errors.strip()}")

    def down(self) -> list[str]:
        require_root()
        removed = []
        for namespace in sorted({*self.existing_namespaces(), *self.prefixed_namespaces()}):
            pids = signal_pids(namespace_pids(namespace), signals.SIGKILL)
            wait_gone(pids, timeout=5)
            run(["ip", "netns", "del", namespace], check=True)
            removed.append(f"namespace {namespace}" + (f" and {len(pids)} processes" if pids else ""))
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            removed.append(f"state directory {self.state_dir}")
        return removed


def flush_vip_neighbour(client_command: Callable[[Sequence[str]], list[str]], vip: str) -> None:
    """After a split brain the lab's client may still send to the backup's link address: the master
    never left MASTER, so it sends no new gratuitous ARP. The lab's own client asks again."""
    run(client_command(["ip", "neigh", "flush", "to", vip]))
