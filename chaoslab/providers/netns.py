"""The embedded default: the whole stack in Linux network namespaces on this machine.

Each node is a namespace named <prefix>-<node>, linked by veth pairs to Linux
bridges (one per network) inside a namespace of their own, <prefix>-switch;
the client that measures the VIP is <prefix>-client. Real haproxy, keepalived
and apache2 run inside (and, where the profile's Keepalived tracks a file, the
HAProxy health checker that writes it), each with its config, pid and log
files under the node's root directory in the lab's state directory; the
configs are rendered by provision/configure.sh, the step a VM runs. Nothing is
added to the root namespace, and `down` finds the lab from what the system shows.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal as signals
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chaoslab.commands import CommandResult, require_binaries, run
from chaoslab.errors import ChaoslabError
from chaoslab.node import Node
from chaoslab.paths import PROVISION_DIR
from chaoslab.providers import Provider
from chaoslab.topology import NodeSpec, Topology

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
SWITCH = "switch"
BINARIES = ("ip", "haproxy", "keepalived", "apache2", "pgrep", "iptables", "setsid")
# service -> (process name, pid file under the node's root)
SERVICES = {
    "httpd": ("apache2", "run/apache2.pid"),
    "haproxy": ("haproxy", "run/haproxy.pid"),
    "keepalived": ("keepalived", "run/keepalived.pid"),
    "haproxy-health": ("haproxy-health", "run/haproxy-health.pid"),
}
# the pid files a daemon's children write besides its own: Keepalived's VRRP and checker processes
CHILD_PID_FILES = {"keepalived": ("run/keepalived-vrrp.pid", "run/keepalived-checkers.pid")}
# the checker before Keepalived, which reads the file the checker writes
START_ORDER = ("httpd", "haproxy", "haproxy-health", "keepalived")
WAIT_STEP = 0.01


def require_root() -> None:
    if os.geteuid() != 0:
        raise ChaoslabError(
            "the netns lab needs root (it creates network namespaces and runs daemons in them); "
            "run it as root, e.g. with sudo"
        )


def namespace_inode(namespace: str) -> int | None:
    try:
        return (NETNS_DIR / namespace).stat().st_ino
    except FileNotFoundError:
        return None


def namespace_pids(namespace: str) -> list[int]:
    """Live processes whose network namespace is this one (what `ip netns pids` shows)."""
    inode = namespace_inode(namespace)
    if inode is None:
        return []
    marker = f"net:[{inode}]"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/net") == marker and process_state(int(entry.name)) != "Z":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def signal_pids(pids: Sequence[int], signal: signals.Signals) -> list[int]:
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal)
            signalled.append(pid)
        except ProcessLookupError:
            continue
    return signalled


def kill_at_once(pids_of: Callable[[], list[int]]) -> list[int]:
    """SIGKILL a group of processes as one: stop them all first (and whatever they forked
    meanwhile), then kill them, then wait until they are gone.

    Killed one after the other, a Keepalived child whose parent died first gets its
    parent-death signal, SIGTERM, and may say goodbye before its own SIGKILL lands: a
    priority-0 advert that turns a crash into a graceful stop."""
    stopped: list[int] = []
    while fresh := [pid for pid in pids_of() if pid not in stopped]:
        stopped += signal_pids(fresh, signals.SIGSTOP)
        wait_stopped(stopped, timeout=1)
    killed = signal_pids(stopped, signals.SIGKILL)
    wait_gone(killed, timeout=5)
    return killed


def wait_stopped(pids: Sequence[int], timeout: float) -> bool:
    """Wait until the processes are stopped (or dead)."""
    return wait_until(lambda: all(process_state(pid) in (None, "T", "t", "Z") for pid in pids), timeout)


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait until the processes are dead. A zombie counts as dead: this machine's
    init may take a second to reap it, and stale pid files are removed before a start."""
    return wait_until(lambda: all(process_state(pid) in (None, "Z") for pid in pids), timeout)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(WAIT_STEP)


def call_in_namespace(namespace: str, function: Callable[[], T]) -> T:
    """Call function on a thread that has joined the namespace: its sockets live there.

    A network namespace is a property of the thread, so the rest of the
    process (and the root namespace) is untouched."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(NETNS_DIR / namespace, "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({namespace}) failed")
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class NetnsNode(Node):
    def __init__(self, spec: NodeSpec, topology: Topology, provider: NetnsProvider):
        super().__init__(spec, topology, provider.profile)
        self.provider = provider
        self.namespace = provider.namespace(spec.name)
        self.root = provider.node_root(spec.name)

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        return run(["ip", "netns", "exec", self.namespace, *argv], timeout=timeout, check=check)

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    def read_file(self, relative: str) -> str | None:
        try:
            return (self.root / relative).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def service_pids(self, service: str) -> list[int]:
        process, _ = SERVICES[service]
        return [pid for pid in namespace_pids(self.namespace) if process_name(pid) == process]

    def main_pid(self, service: str) -> int | None:
        text = self.read_file(SERVICES[service][1])
        pid = int(text.split()[0]) if text and text.split() and text.split()[0].isdigit() else None
        return pid if pid in self.service_pids(service) else None

    def signal_service(self, service: str, signal: signals.Signals) -> list[int]:
        if signal == signals.SIGKILL:  # a crash of the whole service, not one process after the other
            return kill_at_once(lambda: self.service_pids(service))
        signalled = signal_pids(self.service_pids(service), signal)
        if signal == signals.SIGSTOP:  # frozen when this returns, as a crash is over when kill_at_once returns
            wait_stopped(signalled, timeout=1)
        return signalled

    def is_service_frozen(self, service: str) -> bool:
        return any(process_state(pid) == "T" for pid in self.service_pids(self.check_service(service)))

    def start_service(self, service: str) -> None:
        self.check_service(service)
        if self.is_halted():
            raise ChaoslabError(f"{self.name} is halted; boot it before starting {service}")
        if self.main_pid(service):
            return
        # pid files left by a crash name no live process of ours (or a zombie not yet reaped,
        # which Keepalived takes for itself still running): a daemon must not trust them
        for pid_file in (SERVICES[service][1], *CHILD_PID_FILES.get(service, ())):
            (self.root / pid_file).unlink(missing_ok=True)
        if service == "httpd":
            self.run(["apache2", "-f", str(self.root / "etc/chaoslab/httpd-lab.conf"), "-k", "start"], check=True)
        elif service == "haproxy":
            self.run(["haproxy", "-D", "-f", str(self.root / "etc/haproxy/haproxy.cfg")], check=True)
        elif service == "haproxy-health":
            self._start_detached([str(self.root / "etc/keepalived/chaoslab/haproxy-health")], service)
        else:
            vrrp_pid, checkers_pid = CHILD_PID_FILES["keepalived"]
            self._start_detached(
                ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
                 "--use-file", str(self.root / "etc/keepalived/keepalived.conf"),
                 "--pid", str(self.root / SERVICES["keepalived"][1]),
                 "--vrrp_pid", str(self.root / vrrp_pid),
                 "--checkers_pid", str(self.root / checkers_pid)],
                service,
            )
        if not wait_until(lambda: self.main_pid(service) is not None, timeout=10):
            raise ChaoslabError(
                f"{service} did not start on {self.name}; see the logs under {self.root / 'var/log/chaoslab'}"
            )

    def _start_detached(self, argv: Sequence[str], service: str) -> None:
        """Start a foreground daemon in the namespace, its output in var/log/chaoslab/<service>.log."""
        log = self.root / f"var/log/chaoslab/{service}.log"
        with open(log, "ab") as output:
            # setsid --fork: the daemon is nobody's child here and survives this process
            subprocess.run(
                ["ip", "netns", "exec", self.namespace, "setsid", "--fork", *argv],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=True,
            )

    def stop_service(self, service: str) -> None:
        self.check_service(service)
        main = self.main_pid(service)
        every = self.service_pids(service)
        targets = [main] if main else every
        signal_pids(targets, signals.SIGTERM)
        signal_pids(every, signals.SIGCONT)  # a frozen process must wake to die, as systemd does
        if not wait_gone(every, timeout=5):
            wait_gone(signal_pids(self.service_pids(service), signals.SIGKILL), timeout=2)

    def halt(self) -> None:
        kill_at_once(lambda: namespace_pids(self.namespace))
        for pid_file in (self.root / "run").glob("*.pid"):  # /run is lost with the RAM
            pid_file.unlink()
        for interface in self.spec.interfaces:
            run(["ip", "-n", self.namespace, "link", "set", interface.name, "down"], check=True)
        if self.spec.role == "loadbalancer":  # what was in RAM is gone: the VIP too
            run(["ip", "-n", self.namespace, "addr", "del", f"{self.topology.vip}/32",
                 "dev", self.topology.vip_interface])

    def boot(self) -> None:
        for interface in self.spec.interfaces:
            self.restore_link(interface.name)
            run(["ip", "-n", self.namespace, "link", "set", interface.name, "up"], check=True)
        self.unblock_vrrp()
        for service in START_ORDER:
            if service in self.services:
                self.start_service(service)

    def is_halted(self) -> bool:
        first = self.spec.interfaces[0].name
        result = run(["ip", "-n", self.namespace, "-o", "link", "show", first])
        flags = result.stdout.split("<", 1)[-1].split(">", 1)[0].split(",")
        return result.ok and "UP" not in flags

    def link_down(self, interface: str) -> None:
        self.check_interface(interface)
        run(["ip", "-n", self.provider.namespace(SWITCH), "link", "set",
             self.provider.port_name(self.name, interface), "down"], check=True)

    def link_up(self, interface: str) -> None:
        self.check_interface(interface)
        run(["ip", "-n", self.provider.namespace(SWITCH), "link", "set",
             self.provider.port_name(self.name, interface), "up"], check=True)


class NetnsProvider(Provider):
    name = "netns"

    def namespace(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def node_root(self, node: str) -> Path:
        return self.state_dir / "nodes" / node

    @staticmethod
    def port_name(node: str, interface: str) -> str:
        """The switch-side end of a node's cable."""
        return f"{node}-{interface}"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab makes, switch first."""
        members = [*self.topology.node_names, self.topology.client.name]
        return [self.namespace(SWITCH), *(self.namespace(name) for name in members)]

    def existing_namespaces(self) -> list[str]:
        return [name for name in self.namespaces if namespace_inode(name) is not None]

    def is_up(self) -> bool:
        return len(self.existing_namespaces()) == len(self.namespaces) and (self.state_dir / "lab.json").exists()

    def node(self, name: str) -> NetnsNode:
        return NetnsNode(self.topology.node(name), self.topology, self)

    def destination(self, node: str) -> str:
        return f"namespace {self.namespace(node)}"

    def client_command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(self.topology.client.name), *argv]

    def in_client(self, function: Callable[[], T]) -> T:
        return call_in_namespace(self.namespace(self.topology.client.name), function)

    def up(self) -> list[str]:
        require_root()
        require_binaries(BINARIES)
        if self.is_up():
            info = self.lab_info()
            return [f"lab {self.prefix!r} is already up (profile {info.get('profile')}); nothing changed"]
        done = [f"cleaned: {line}" for line in self.down()]
        try:
            self._build_network()
            self._configure_nodes()
            self.write_info()
            for service in START_ORDER:
                for spec in self.topology.nodes:
                    if service in self.profile.services(spec):
                        self.node(spec.name).start_service(service)
        except BaseException:
            self.down()
            raise
        done.append(
            f"lab {self.prefix!r} up: {len(self.namespaces)} namespaces, profile {self.profile.name}, "
            f"state in {self.state_dir}"
        )
        return done

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
            run(["ip", "netns", "exec", self.namespace(spec.name),
                 "sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1"], check=True)

    def _configure_nodes(self) -> None:
        """Render every node's files with the provisioners' own configure step."""
        environment = {**os.environ, "CHAOSLAB_VRRP_PASSWORD": self.vrrp_password}
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
        for namespace in self.existing_namespaces():
            pids = signal_pids(namespace_pids(namespace), signals.SIGKILL)
            wait_gone(pids, timeout=5)
            run(["ip", "netns", "del", namespace], check=True)
            removed.append(f"namespace {namespace}" + (f" and {len(pids)} processes" if pids else ""))
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            removed.append(f"state directory {self.state_dir}")
        return removed
