"""The stack on four Vagrant VMs (vagrant-libvirt), driven like any other lab.

The life cycle goes through python-vagrant and the project's Vagrantfile
(`vagrant up`, `destroy`), run inside the lab's own libvirt
(chaoslab.lab.libvirt_host); Vagrant's state (.vagrant) and boxes
(VAGRANT_HOME) live under /var/lib/chaoslab, never in the checkout or a home.
Every command on a VM goes through the ssh provider, with an inventory made
once from `vagrant ssh-config` (python-vagrant takes seconds a call: fine for
the life cycle, far too slow for probes).

Faults that belong to the machine, not to its services, act from the host
side, as on real hardware: halt pulls the plug (`virsh destroy`: the VM stops
at once, as a crashed host does), boot powers it on again without
provisioning (systemd starts the services), and a link fault sets the VM's
virtual NIC down (`virsh domif-setlink`). The sampler measures from the lab's
namespace, which sits on the VMs' public network at the topology's client address.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import vagrant

from chaoslab.commands import require_binaries
from chaoslab.errors import ChaoslabError
from chaoslab.lab import box
from chaoslab.lab.inventory import Host, write
from chaoslab.lab.libvirt_host import LibvirtHost
from chaoslab.lab.machine.libvirt import HaltedMarks, LibvirtMachine, set_clock
from chaoslab.lab.namespaces import call_in_namespace
from chaoslab.lab.node import Node
from chaoslab.lab.providers import Provider
from chaoslab.lab.providers.netns import flush_vip_neighbour
from chaoslab.lab.providers.ssh import SshHosts
from chaoslab.paths import PROJECT_DIR

T = TypeVar("T")

DOMAIN_PREFIX = "chaoslab-"  # the Vagrantfile's libvirt.default_prefix under this provider
FAILED_LOG_DIR = Path("/var/log/chaoslab")  # a failed vagrant command's log, kept after the lab is gone
# the head of a Ruby backtrace: "/path/file.rb:12:in `method': the message (Some::Error)"
RUBY_EXCEPTION = re.compile(r"^\S+:\d+:in [`'][^']*': (?P<message>.+) \((?P<type>[\w:]+)\)$")
BACKTRACE_LINE = re.compile(r"^\s*(from )?\S+:\d+:in [`']")


def vagrant_error(log: str) -> str:
    """The cause of a failed vagrant command, from its output: the exception at the head of a Ruby
    backtrace, or the paragraph Vagrant printed just before a backtrace (an unexpected error: the
    machine and the exception's message), else Vagrant's own error lines, else its last lines."""
    lines = [line.rstrip() for line in log.splitlines() if "Progress:" not in line]
    for line in lines:
        if match := RUBY_EXCEPTION.match(line.strip()):
            return f"{match['message']} ({match['type']})"
    first_trace = next((index for index, line in enumerate(lines) if BACKTRACE_LINE.match(line)), None)
    if first_trace:
        paragraphs = "\n".join(lines[:first_trace]).split("\n\n")
        message = " ".join(paragraphs[-1].split())
        machine = re.search(r"on the\s+'([^']+)' machine", "\n".join(lines[:first_trace]))
        return (f"{machine[1]}: " if machine else "") + message
    messages = [line.strip() for line in lines if line.strip() and not line.startswith("==> ")]
    errors = [line for line in messages if "error" in line.lower()]
    return " ".join(errors[:3] or messages[-3:]) or "vagrant printed nothing"


class NamespacedVagrant(vagrant.Vagrant):
    """python-vagrant, with every vagrant command run inside the lab's network namespace."""

    def __init__(self, host: LibvirtHost, **kwargs: object):
        super().__init__(**kwargs)
        self.host = host

    def _make_vagrant_command(self, args: Sequence[str | None]) -> list[str]:
        return self.host.enter(super()._make_vagrant_command(args))


class VagrantProvider(Provider):
    """Four VMs from the Vagrantfile, in the lab's own libvirt; commands over ssh."""

    name = "vagrant"
    # Four VMs under QEMU emulation share two host cores: 100 requests a second through
    # HAProxy and Apache there starve Keepalived's checks (FAULT flaps); 20 a second do not.
    sampler_interval = 0.05

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.host = LibvirtHost(self.prefix)
        self.inventory_path = self.state_dir / "inventory.ini"
        self.marks = HaltedMarks(self.state_dir)
        self.hosts = SshHosts(self.topology, self.inventory_path, self.state_dir / "ssh", wrapper=self.host.enter([]),
                              lab_hosts=True, halted=self.marks.marked)

    def node(self, name: str) -> Node:
        transport = self.hosts.transport(name)
        machine = LibvirtMachine(name, f"{DOMAIN_PREFIX}{name}", self.host, transport, self.marks,
                                 lambda: self.lab_info()["macs"][name])
        return self.hosts.node(name, self.profile, machine, transport)

    def destination(self, node: str) -> str | None:
        if not self.inventory_path.exists():
            return None  # not up yet: the inventory comes with the VMs
        return self.hosts.inventory.host(node).destination

    def after_heal(self) -> None:
        flush_vip_neighbour(self.client_command, self.topology.vip)

    # -- where things are ------------------------------------------------

    @property
    def vagrant_dir(self) -> Path:
        return self.host.data_dir / "vagrant"

    def environment(self) -> dict[str, str]:
        return {
            **box.vagrant_environment(),
            "VAGRANT_DOTFILE_PATH": str(self.vagrant_dir),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "CHAOSLAB_BOX": box.BOX_NAME,
            "CHAOSLAB_PROFILE": self.profile.name,
            "CHAOSLAB_VRRP_PASSWORD": self.settings.vrrp_password,
            "CHAOSLAB_LIBVIRT_URI": self.host.uri(),
            "CHAOSLAB_LIBVIRT_PREFIX": DOMAIN_PREFIX,
            "CHAOSLAB_LIBVIRT_DRIVER": os.environ.get("CHAOSLAB_LIBVIRT_DRIVER") or "qemu",
        }

    def vagrant(self, log: Path | None = None) -> NamespacedVagrant:
        output: Callable[[], AbstractContextManager] | None = vagrant.make_file_cm(log) if log else None
        return NamespacedVagrant(self.host, root=str(PROJECT_DIR), env=self.environment(),
                                 out_cm=output, err_cm=output)

    def call_vagrant(self, action: str, call: Callable[[NamespacedVagrant], object]) -> None:
        """A python-vagrant call, its output in the lab's vagrant.log. A failure says the log's error
        and keeps the log under /var/log/chaoslab: the lab's folder goes with the failed lab."""
        log = self.host.data_dir / "vagrant.log"
        try:
            call(self.vagrant(log))
        except subprocess.CalledProcessError:
            text = log.read_text(errors="replace") if log.exists() else ""
            FAILED_LOG_DIR.mkdir(parents=True, exist_ok=True)
            kept = FAILED_LOG_DIR / f"{self.prefix}-vagrant-{action}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.log"
            kept.write_text(text, encoding="utf-8")
            raise ChaoslabError(f"vagrant {action} failed: {vagrant_error(text)} (the whole log: {kept})") from None

    def fault_refusal(self) -> str | None:
        return None  # the VMs are the lab's own

    def client_command(self, argv: Sequence[str]) -> list[str]:
        return self.host.enter(argv)

    def in_client(self, function: Callable[[], T]) -> T:
        return call_in_namespace(self.host.namespace, function)

    # -- life cycle --------------------------------------------------------

    def is_up(self) -> bool:
        return bool(self.lab_info()) and self.host.is_running()

    def up(self) -> list[str]:
        if os.geteuid() != 0:
            raise ChaoslabError("the vagrant lab needs root (its libvirt runs in a network namespace)")
        require_binaries(("vagrant", "ssh"))
        if self.is_up():
            return [f"lab {self.prefix!r} is already up (profile {self.lab_info().get('profile')}); nothing changed"]
        done = [f"cleaned: {line}" for line in self.down()]
        try:
            done += box.build()
            done += self.host.start()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            self.call_vagrant("up", lambda machines: machines.up(provider="libvirt"))
            done.append(f"vagrant up: {len(self.topology.nodes)} VMs in {time.monotonic() - started:.0f} s")
            self._write_inventory()
            for spec in self.topology.nodes:
                set_clock(self.hosts.transport(spec.name))
            self._write_info()
        except BaseException:
            self.down()
            raise
        done.append(f"lab {self.prefix!r} up: {len(self.topology.nodes)} VMs, profile {self.profile.name}, "
                    f"inventory {self.inventory_path}")
        return done

    def _write_inventory(self) -> None:
        """The VMs as an inventory, from one `vagrant ssh-config` (all machines at once)."""
        text = self.vagrant().ssh_config()
        hosts, current = [], {}
        for line in [*text.splitlines(), "Host"]:
            key, _, value = line.strip().partition(" ")
            if key == "Host":
                if current:
                    name = current["Host"]
                    hosts.append(Host(name, "loadbalancers" if self.topology.node(name).role == "loadbalancer"
                                      else "webservers", current["HostName"], current.get("User"),
                                      int(current.get("Port", 22)), current.get("IdentityFile", "").strip('"')))
                current = {"Host": value.strip()} if value.strip() else {}
            elif key and current:
                current[key] = value.strip()
        write(hosts, {"chaoslab_lab_hosts": "true"}, self.inventory_path)
        self.hosts.forget()

    def _write_info(self) -> None:
        macs = {}
        for spec in self.topology.nodes:
            node = self.node(spec.name)
            macs[spec.name] = {
                interface.name: node.run(["cat", f"/sys/class/net/{interface.name}/address"], check=True).stdout.strip()
                for interface in spec.interfaces
            }
        self.write_info(inventory=str(self.inventory_path), macs=macs)

    def down(self) -> list[str]:
        """Destroy the VMs through Vagrant where it can, then remove everything whatever happened:
        the namespace's processes (libvirtd, QEMU, dnsmasq, ssh masters), disks and state."""
        removed = []
        try:
            if self.host.is_running() and self.host.domains():
                self.call_vagrant("destroy", lambda machines: machines.destroy())
                removed.append(f"vagrant destroy: {len(self.topology.nodes)} VMs")
        except ChaoslabError as error:
            removed.append(f"(vagrant destroy failed, the VMs are killed instead: {error})")
        finally:
            self.hosts.forget()  # the next VMs get new addresses and keys
            removed += self.host.stop()
            if self.state_dir.exists():
                shutil.rmtree(self.state_dir)
                removed.append(f"state directory {self.state_dir}")
        return removed
