"""A VM's machine in the lab's libvirt, as on real hardware: halt pulls the plug (`virsh destroy`:
the VM stops at once, as a crashed host does), power on boots it without provisioning, and a
cable is the VM's virtual NIC (`virsh domif-setlink`). A halted VM is halted to every caller
until sshd answers again and its clock is set from the host's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from chaoslab.errors import ChaoslabError
from chaoslab.lab.libvirt_host import LibvirtHost
from chaoslab.lab.machine import Machine
from chaoslab.lab.transport.ssh import SshTransport

BOOT_TIMEOUT = 300.0  # a VM under QEMU emulation takes about a minute to reach sshd
CLOCK_TOLERANCE = 0.02  # seconds: a VM's clock further off than this is set from the host's
WAIT_STEP = 0.1


class HaltedMarks:
    """Which VMs chaoslab pulled the plug of (a file each in the lab's state directory)."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir

    def _mark(self, name: str) -> Path:
        return self.state_dir / f"halted-{name}"

    def marked(self, name: str) -> bool:
        return self._mark(name).exists()

    def set(self, name: str, halted: bool) -> None:
        if halted:
            self._mark(name).touch()
        else:
            self._mark(name).unlink(missing_ok=True)


def set_clock(transport: SshTransport) -> None:
    """Set a VM's clock from the host's when it is off by more than CLOCK_TOLERANCE: the
    events on the VMs and the samples on the host share one time line. A VM boots with
    its clock from the emulated RTC, which has whole seconds."""
    sent = time.time()
    remote = float(transport.run(["date", "+%s.%N"], check=True).stdout)
    received = time.time()
    if abs(remote - (sent + received) / 2) > CLOCK_TOLERANCE + (received - sent) / 2:
        transport.run(["date", "-s", f"@{time.time() + (received - sent) / 2:.6f}"], check=True)


class LibvirtMachine(Machine):
    def __init__(self, name: str, domain: str, host: LibvirtHost, transport: SshTransport, marks: HaltedMarks,
                 macs: Callable[[], dict[str, str]]):
        self.name = name
        self.domain = domain
        self.host = host
        self.transport = transport
        self.marks = marks
        self.macs = macs  # interface -> the VM's MAC address on it

    def halt(self) -> None:
        self.host.virsh("destroy", self.domain, check=True)
        self.marks.set(self.name, True)
        self.transport.connection.close()

    def power_on(self) -> None:
        self.host.virsh("start", self.domain, check=True)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not self.transport.answers():  # past the halted mark, lifted only once it answers
            if time.monotonic() > deadline:
                raise ChaoslabError(f"timed out after {BOOT_TIMEOUT:g} s waiting for {self.name} to boot "
                                    "and answer over ssh")
            time.sleep(WAIT_STEP)
        self.marks.set(self.name, False)
        set_clock(self.transport)

    def is_halted(self) -> bool:
        if self.marks.marked(self.name):
            return True
        state = self.host.virsh("domstate", self.domain)
        return state.ok and state.stdout.strip() != "running"

    def link_down(self, interface: str) -> None:
        self._set_link(interface, "down")

    def link_up(self, interface: str) -> None:
        self._set_link(interface, "up")

    def _set_link(self, interface: str, state: str) -> None:
        self.host.virsh("domif-setlink", self.domain, self.macs()[interface], state, check=True)
