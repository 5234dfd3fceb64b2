"""Real hosts over SSH: the Node interface through OpenSSH, with sudo and systemd.

The hosts come from an inventory (chaoslab.inventory). Every command goes
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

import itertools
import shlex
import shutil
import signal as signals
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chaoslab import inventory as inventories
from chaoslab.commands import CommandResult, run
from chaoslab.errors import ChaoslabError
from chaoslab.inventory import Host, Inventory
from chaoslab.node import VRRP_STATE_LOG, Node, VrrpPoll
from chaoslab.providers import Provider
from chaoslab.topology import NodeSpec, Topology

T = TypeVar("T")

SSH_FAILED = 255  # ssh's own exit code: the host was not reached
WAIT_STEP = 0.1
# service -> (systemd unit, process name) per distribution family
UNITS = {
    "debian": {"httpd": ("apache2", "apache2"), "haproxy": ("haproxy", "haproxy"),
               "keepalived": ("keepalived", "keepalived"),
               "haproxy-health": ("chaoslab-haproxy-health", "haproxy-health")},
    "rhel": {"httpd": ("httpd", "httpd"), "haproxy": ("haproxy", "haproxy"),
             "keepalived": ("keepalived", "keepalived"),
             "haproxy-health": ("chaoslab-haproxy-health", "haproxy-health")},
}
# SIGKILL a service's processes as one (see chaoslab.providers.netns.kill_at_once): stop every
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
# run "$@" until it ends or the ssh connection that started it goes away (stdin closes)
# (a background job's stdin is /dev/null: the watcher reads the connection through fd 3)
TIED_TO_CONNECTION = (
    'exec 3<&0; "$@" </dev/null 3<&- & child=$!; '
    '{ cat <&3 >/dev/null 2>&1; kill "$child" 2>/dev/null; } & watcher=$!; exec 3<&-; '
    'wait "$child"; status=$?; pkill -P "$watcher" 2>/dev/null; exit $status'
)


# the VRRP state log's length, its lines after the first $1 (all if it is shorter), from one
# read of the file (a line appended between two reads would be counted twice), then whether
# Keepalived runs (see Node.vrrp_poll)
VRRP_POLL = (
    'if [ -r "$2" ]; then '
    'awk -v seen="$1" \'{ line[NR] = $0 } END { print NR; for (i = (NR < seen ? 1 : seen + 1); i <= NR; i++) '
    'print line[i] }\' "$2"; else echo 0; fi; '
    'if pgrep -x keepalived >/dev/null; then echo alive; else echo gone; fi'
)
# commands that need no root: whatever reads processes, files the lab writes world-readable, addresses
UNPRIVILEGED = {"cat", "pgrep", "ps", "test", "true"}


def needs_root(argv: Sequence[str]) -> bool:
    """False for commands that only read (sudo is not free on a small VM); `env NAME=value ... COMMAND`
    is judged by its COMMAND."""
    if argv[0] == "env":
        argv = list(itertools.dropwhile(lambda argument: "=" in argument, argv[1:])) or ["env"]
    if argv[0] == "ip":
        return not ({"show", "monitor"} & set(argv))
    if argv[0] == "date":
        return "-s" in argv
    return argv[0] not in UNPRIVILEGED


class NodeUnreachable(ChaoslabError):
    """The host did not answer over SSH."""


class SshConnection:
    """OpenSSH to one host, one shared connection for every command."""

    def __init__(self, host: Host, control_dir: Path, wrapper: Sequence[str] = (), lab_host: bool = False):
        self.host = host
        self.control_dir = control_dir
        self.wrapper = list(wrapper)
        self.lab_host = lab_host

    def options(self) -> list[str]:
        options = [*self.host.ssh_args, "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
                   "-o", f"ControlPath={self.control_dir}/%C", "-o", "ControlPersist=600",
                   "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3",
                   "-o", "LogLevel=ERROR"]
        if self.lab_host:  # machines made a minute ago have new host keys each time
            options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        if self.host.user:
            options += ["-l", self.host.user]
        if self.host.port:
            options += ["-p", str(self.host.port)]
        if self.host.key_file:
            options += ["-i", str(Path(self.host.key_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        return options

    def argv(self, remote: Sequence[str], privileged: bool = True) -> list[str]:
        """The local command that runs `remote` on the host, privileged as root (sudo where the user
        is not root: it costs the host a PAM session, 0.15 s on an emulated VM)."""
        if privileged and self.host.user not in (None, "root"):
            remote = ["sudo", "-n", *remote]
        return [*self.wrapper, "ssh", *self.options(), "--", self.host.address, shlex.join(remote)]

    def close(self) -> None:
        """End the shared connection, if any."""
        run([*self.wrapper, "ssh", *self.options(), "-O", "exit", "--", self.host.address], timeout=10)


class SshNode(Node):
    poll_interval = 0.5  # a look over ssh costs the host a session and a few processes

    def __init__(self, spec: NodeSpec, topology: Topology, provider: SshProvider, connection: SshConnection):
        super().__init__(spec, topology, provider.profile)
        self.provider = provider
        self.connection = connection
        self._family: str | None = None

    # -- commands ----------------------------------------------------------

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        return self.run_as(argv, needs_root(argv), timeout, check)

    def run_as(self, argv: Sequence[str], privileged: bool, timeout: float = 30.0,
               check: bool = False) -> CommandResult:
        result = run(self.connection.argv(argv, privileged), timeout=timeout)
        if result.returncode == SSH_FAILED and not result.stdout:
            raise NodeUnreachable(f"{self.name} ({self.connection.host.destination}) did not answer over ssh: "
                                  f"{result.stderr.strip() or 'no reason given'}")
        result = CommandResult(tuple(argv), result.returncode, result.stdout, result.stderr)
        return result.check() if check else result

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """A long-running command (a capture, a monitor); it ends on the host when this process ends."""
        return subprocess.Popen(
            self.connection.argv(["sh", "-c", TIED_TO_CONNECTION, "sh", *argv], needs_root(argv)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    def addresses(self, interface: str) -> list[str]:
        try:
            return super().addresses(interface)
        except NodeUnreachable:
            return []  # a host that does not answer holds nothing its clients could reach

    def read_file(self, relative: str) -> str | None:
        try:
            result = self.run(["cat", f"/{relative}"])
        except NodeUnreachable:
            return None
        return result.stdout if result.ok else None

    def vrrp_poll(self, seen: int, liveness: bool) -> VrrpPoll:
        """One unprivileged round trip: the log's new lines and whether Keepalived runs."""
        try:
            result = self.run_as(["sh", "-c", VRRP_POLL, "sh", str(seen), f"/{VRRP_STATE_LOG}"], privileged=False)
        except NodeUnreachable:
            return VrrpPoll([], seen, None, reachable=False)
        lines = result.stdout.splitlines()
        if not result.ok or len(lines) < 2 or not lines[0].isdigit():
            return VrrpPoll([], seen, None)  # cut off mid-answer (the host went down): look again
        count, *fresh, state = lines
        return VrrpPoll(fresh, int(count), state == "alive")

    # -- services through systemd ----------------------------------------

    @property
    def family(self) -> str:
        if self._family is None:
            self._family = "debian" if self.run(["test", "-d", "/etc/apt"]).ok else "rhel"
        return self._family

    def unit(self, service: str) -> str:
        return UNITS[self.family][service][0]

    def process(self, service: str) -> str:
        return UNITS[self.family][service][1]

    def service_pids(self, service: str) -> list[int]:
        try:
            result = self.run(["pgrep", "-x", self.process(service)])
        except NodeUnreachable:
            return []
        return [int(pid) for pid in result.stdout.split()]

    def signal_service(self, service: str, signal: signals.Signals) -> list[int]:
        process = self.process(service)
        if signal == signals.SIGKILL:
            return [int(pid) for pid in self.run(["sh", "-c", KILL_AT_ONCE, "sh", process], check=True).stdout.split()]
        pids = self.service_pids(service)
        if pids:
            self.run(["kill", f"-{signal.name.removeprefix('SIG')}", *map(str, pids)])
        if signal == signals.SIGSTOP:
            self._wait(lambda: self.is_service_frozen(service), 2, f"{service} to stop on {self.name}")
        return pids

    def is_service_frozen(self, service: str) -> bool:
        result = self.run(["ps", "-o", "stat=", "-C", self.process(self.check_service(service))])
        return any(state.startswith("T") for state in result.stdout.split())

    def start_service(self, service: str) -> None:
        self.check_service(service)
        unit = self.unit(service)
        self.run(["systemctl", "reset-failed", unit])
        self.run(["systemctl", "start", unit], timeout=60, check=True)
        self._wait(lambda: bool(self.service_pids(service)), 10, f"{service} to start on {self.name}")

    def stop_service(self, service: str) -> None:
        self.check_service(service)
        self.run(["systemctl", "stop", self.unit(service)], timeout=60, check=True)

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ChaoslabError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(WAIT_STEP)

    # -- what only the machine's owner can do ------------------------------

    def halt(self) -> None:
        raise ChaoslabError(f"the ssh provider cannot halt {self.name}: it could not boot it again; "
                            "halt and boot need a provider that owns the machine (vagrant)")

    def boot(self) -> None:
        raise ChaoslabError(f"the ssh provider cannot boot {self.name}; use the vagrant provider for halt/boot")

    def is_halted(self) -> bool:
        return False

    def link_down(self, interface: str) -> None:
        raise ChaoslabError(f"the ssh provider cannot pull {self.name}'s cable from outside; "
                            "use degrade_link or partition_vrrp, or the vagrant provider")

    def link_up(self, interface: str) -> None:
        self.check_interface(interface)  # nothing to plug back: link_down is refused


class SshProvider(Provider):
    """The stack on hosts listed in an inventory; chaoslab brings nothing up or down there."""

    name = "ssh"
    owns_client = False  # the client is this machine: its network is not chaoslab's to change
    node_class: type[SshNode] = SshNode

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self._inventory: Inventory | None = None

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            if not self.inventory_path:
                raise ChaoslabError("the ssh provider needs an inventory: set chaoslab_inventory in the "
                                    "experiment's configuration or $CHAOSLAB_INVENTORY")
            self._inventory = inventories.load(self.inventory_path)
            self._inventory.check_against(self.topology)
        return self._inventory

    def connection(self, host: Host) -> SshConnection:
        return SshConnection(host, self.control_dir(), lab_host=self.inventory.lab_hosts)

    def control_dir(self) -> Path:
        directory = self.state_dir / "ssh"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory

    def node(self, name: str) -> SshNode:
        spec = self.topology.node(name)
        return self.node_class(spec, self.topology, self, self.connection(self.inventory.host(name)))

    def destination(self, node: str) -> str | None:
        if self.inventory_path and not Path(self.inventory_path).exists():
            return None  # a vagrant lab that is not up yet: its inventory comes with the VMs
        return self.inventory.host(node).destination

    def fault_refusal(self) -> str | None:
        if self.inventory.lab_hosts or self.confirm_hosts:
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
            node.run(["true"])  # unreachable: NodeUnreachable names the host and ssh's reason
            missing = [service for service in node.services if not node.service_pids(service)]
            done.append(f"{spec.name} ({node.connection.host.destination}) answers"
                        + (f"; not running: {', '.join(missing)}" if missing else ""))
        self.write_info(inventory=str(self.inventory.source))
        return done

    def down(self) -> list[str]:
        """Close the connections and forget the hosts; nothing on them changes."""
        removed = []
        if (self.state_dir / "ssh").exists():
            for host in self.inventory.hosts.values():
                self.connection(host).close()
            removed.append(f"ssh connections to {len(self.inventory.hosts)} hosts")
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
            removed.append(f"state directory {self.state_dir}")
        return removed
