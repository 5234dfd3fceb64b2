"""Packet captures during a run: an independent witness of a failover, beside the sampler
(what clients got) and the event recorder (what Keepalived said).

- At the client, ARP: a new VRRP master announces the VIP with gratuitous ARPs ("who-has
  VIP tell VIP", broadcast, so the client's network sees them), and clients reach it only
  once their ARP entry points at it.
- On each load balancer that is not the preferred master, VRRP: it hears the master's
  adverts until the fault, and sends its own once it takes over.

tcpdump time-stamps packets on the kernel's wall clock, the clock of the samples and events.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chaoslab.commands import stop
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.node import Node
from chaoslab.measure import analysis

READY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Announcement:
    """One gratuitous ARP for the VIP: when it was seen and which link address sent it."""

    t: float
    mac: str


@dataclass(frozen=True)
class Advert:
    """One VRRP advert: when it was seen, its source address and the priority it carried."""

    t: float
    source: str
    priority: int


def parse_announcement(line: str, vip: str) -> Announcement | None:
    """A `tcpdump -n -e -tt` line of a gratuitous ARP for the VIP, or None for any other line.

    '1795639415.260560 7e:fe:e9:30:ca:84 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42:
    Request who-has 192.168.1.10 (ff:ff:ff:ff:ff:ff) tell 192.168.1.10, length 28'"""
    fields = line.split()
    if "who-has" not in fields or f"tell {vip}," not in line:
        return None
    who_has = fields.index("who-has")
    if who_has + 1 >= len(fields) or fields[who_has + 1] != vip:
        return None
    try:
        return Announcement(float(fields[0]), fields[1].lower())
    except ValueError:
        return None


def parse_advert(line: str) -> Advert | None:
    """A `tcpdump -n -tt` line of a VRRP advert, or None for any other line.

    '1795640606.667819 IP 192.168.1.13 > 192.168.1.14: VRRPv3, Advertisement, vrid 51, prio 103,
    intvl 10cs, length 12'"""
    fields = line.replace(",", " ").split()
    if len(fields) < 4 or fields[1] != "IP" or "Advertisement" not in fields or "prio" not in fields:
        return None
    try:
        return Advert(float(fields[0]), fields[2], int(fields[fields.index("prio") + 1]))
    except (ValueError, IndexError):
        return None


def link_address(node: Node, interface: str) -> str:
    """The Ethernet address of a node's interface."""
    fields = node.run(["ip", "-o", "link", "show", interface], check=True).stdout.split()
    return fields[fields.index("link/ether") + 1].lower()


class NodeCapture:
    """tcpdump on a node, read line by line into a file as it prints."""

    def __init__(self, node: Node, argv: list[str], output: Path):
        self.output = output
        self.lines: list[str] = []
        self.process = node.spawn(argv)
        self.reader = threading.Thread(target=self._read, name=f"capture-{node.name}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with open(self.output, "w", encoding="utf-8") as output:
            for line in self.process.stdout:
                self.lines.append(line)
                output.write(line)

    def stop(self) -> None:
        stop(self.process)
        self.reader.join(timeout=5)


class Capture:
    """ARP at the client and VRRP on the other load balancers, for the length of a `with` block."""

    def __init__(self, lab: Lab, folder: Path):
        self.lab = lab
        self.folder = folder
        self.client_output = folder / "arp.txt"
        self.client_log = folder / "tcpdump.log"
        self.client: subprocess.Popen | None = None
        self.nodes: list[NodeCapture] = []

    def __enter__(self) -> Capture:
        try:
            self._start_client()
            self._start_vrrp()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start_client(self) -> None:
        interface = self.lab.topology.client.interfaces[0].name
        command = self.lab.provider.client_command(["tcpdump", "-l", "-n", "-e", "-tt", "-i", interface, "arp"])
        with open(self.client_output, "wb") as output, open(self.client_log, "wb") as log:
            self.client = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT
        while "listening on" not in self.client_log.read_text(errors="replace"):
            if self.client.poll() is not None or time.monotonic() > deadline:
                raise ChaoslabError(f"tcpdump did not start at the client; see {self.client_log}")
            time.sleep(0.02)

    def _start_vrrp(self) -> None:
        """Capture VRRP on every load balancer but the preferred master, and wait until each has
        heard an advert: then the capture runs, and before the fault."""
        for node in self.lab.loadbalancers():
            if node.name != self.lab.topology.preferred_master:
                interface = self.lab.topology.vip_interface_of(node.spec)
                self.nodes.append(NodeCapture(node, ["tcpdump", "-l", "-n", "-tt", "-i", interface, "vrrp"],
                                              self.folder / f"vrrp-{node.name}.txt"))
        deadline = time.monotonic() + READY_TIMEOUT + 3 * self.lab.profile.advert_int
        while not all(any(map(parse_advert, capture.lines)) for capture in self.nodes):
            if time.monotonic() > deadline:
                raise ChaoslabError(f"no VRRP advert captured on the backups within {READY_TIMEOUT:g} s")
            time.sleep(0.02)

    def stop(self) -> None:
        for capture in self.nodes:
            capture.stop()
        if self.client is not None:
            stop(self.client)

    def announcements(self) -> list[Announcement]:
        """Every gratuitous ARP for the VIP the client's capture saw, in order."""
        lines = self.client_output.read_text(errors="replace").splitlines()
        return [each for each in (parse_announcement(line, self.lab.topology.vip) for line in lines) if each]

    def adverts(self) -> list[Advert]:
        """Every VRRP advert the load balancers' captures saw, in order (each once)."""
        seen = {advert for capture in self.nodes for advert in map(parse_advert, capture.lines) if advert}
        return sorted(seen, key=lambda advert: advert.t)


@dataclass(frozen=True)
class CrossCheck:
    """One failover seen by its witnesses, as unix times (None where a witness saw nothing):
    Keepalived's MASTER notification (event recorder), the new master's first gratuitous
    ARP and first advert (captures), the first answer that ended the clients' outage
    (sampler), and the old master's last advert before the fault."""

    new_master: str
    master_event: float
    announcement: float | None
    first_advert: float | None
    first_answer: float | None
    last_master_advert: float | None

    @property
    def announcement_after_master(self) -> float | None:
        """Client's capture minus event recorder, in seconds."""
        return None if self.announcement is None else self.announcement - self.master_event

    @property
    def advert_after_master(self) -> float | None:
        """Load balancers' capture minus event recorder, in seconds."""
        return None if self.first_advert is None else self.first_advert - self.master_event

    @property
    def answer_after_announcement(self) -> float | None:
        """Sampler minus client's capture, in seconds."""
        if self.announcement is None or self.first_answer is None:
            return None
        return self.first_answer - self.announcement


def cross_check(summary: dict, events: list[dict], announcements: list[Announcement], adverts: list[Advert],
                macs: dict[str, str], addresses: dict[str, str]) -> CrossCheck | None:
    """Line up the witnesses of a run's takeover; None if no other node became MASTER after the fault.

    summary and events are the run's (summary.json, events.jsonl); macs and addresses map
    each load balancer to the link and IP address of its VIP interface. The answer compared
    is the end of the outage that was running when the announcement came (None if none was)."""
    inject = summary["fault"]["inject"]
    if inject is None:
        return None
    masters = analysis.masters_at_start(events)
    takeover = next((event for event in events if event["t"] >= inject and event.get("kind") == "vrrp"
                     and event.get("state") == "MASTER" and event.get("node") not in masters), None)
    if takeover is None:
        return None
    new_master = takeover["node"]
    announcement = next((each.t for each in announcements if each.t >= inject and each.mac == macs[new_master]), None)
    first_advert = next((each.t for each in adverts
                         if each.t >= inject and each.source == addresses[new_master] and each.priority), None)
    old = {addresses[name] for name in masters}
    last_master_advert = max((each.t for each in adverts if each.t < inject and each.source in old and each.priority),
                             default=None)
    first_answer = None
    if announcement is not None:
        first_answer = next((outage["end"] for outage in summary["outages"]
                             if outage["start"] <= announcement and outage["end"] is not None
                             and outage["end"] >= announcement), None)
    return CrossCheck(new_master, takeover["t"], announcement, first_advert, first_answer, last_master_advert)
