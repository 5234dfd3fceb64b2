"""The history of a run besides the client's samples: faults, VRRP states, VIP holders.

Faults are data (Jepsen's habit): every fault action records what it did,
where and when, on the same clock as the samples, so the analysis and the
charts line them up. The recorder watches Keepalived's state notifications
and each load balancer's addresses while a run is active.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from chaoslab.commands import stop as stop_process
from chaoslab.measure.results import EVENTS

logger = logging.getLogger("chaostoolkit")

LIVENESS_POLL = 0.25


@dataclass(frozen=True)
class VrrpPoll:
    """What one look at a node's VRRP state log found. alive: whether Keepalived runs, None when
    that was not asked or could not be told; reachable: False when the node did not answer (then
    nothing is known of its Keepalived, which is not the same as knowing it stopped)."""

    lines: list[str]
    count: int
    alive: bool | None
    reachable: bool = True


class WatchedNode(Protocol):
    """A load balancer as the recorder watches it (chaoslab.lab.node.Node is one)."""

    name: str
    poll_interval: float

    def spawn(self, argv: list[str]) -> subprocess.Popen: ...
    def holds_vip(self) -> bool: ...
    def service_pids(self, service: str) -> list[int]: ...
    def vrrp_poll(self, seen: int, liveness: bool) -> VrrpPoll: ...


class WatchedLab(Protocol):
    """The stack as the recorder watches it (chaoslab.lab.lab.Lab is one)."""

    def loadbalancers(self) -> list[WatchedNode]: ...
    def vip_holders(self) -> list[str]: ...
    def vrrp_states(self) -> dict[str, str]: ...


def record_fault(run: Path | None, phase: str, action: str, node: str | None, target: str | None = None,
                 **detail: object) -> None:
    """Record a fault injected ("inject") or undone ("heal") in the events of the run measuring the lab
    (its folder), if any. One line appended at once: the recorder appends to the same file."""
    event = {"t": time.time(), "kind": "fault", "phase": phase, "action": action, "node": node, "target": target}
    event.update(detail)
    logger.info(f"chaoslab {phase}: {action} on {node}" + (f" ({target})" if target else ""))
    if run is not None:
        append_event(run / EVENTS, event)


def append_event(path: Path, event: dict) -> None:
    """One JSON line, written with one write(): appends of other writers never cut into it."""
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


# `ip -ts` stamps its lines in the local time of the node, without a zone: run it in UTC wherever the
# node is, and read its stamps as UTC, so that a host in another zone is not hours off
VIP_MONITOR = ["env", "TZ=UTC0", "ip", "-ts", "-o", "monitor", "address"]


def parse_monitor_line(line: str, vip: str) -> tuple[float, str] | None:
    """'[2026-11-25T20:13:08.378281] Deleted 2: eth1 inet 192.168.1.10/24 ...' (a UTC stamp, see
    VIP_MONITOR) -> (unix time, 'released')."""
    if not line.startswith("[") or f" {vip}/" not in line:
        return None
    stamp, _, rest = line[1:].partition("] ")
    try:
        when = datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return when, "released" if rest.startswith("Deleted") else "acquired"


def parse_state_line(line: str) -> tuple[float, str] | None:
    """'1795639415.260560 MASTER' (a line of the VRRP state log) -> (unix time, 'MASTER'); None if malformed."""
    stamp, _, state = line.strip().partition(" ")
    try:
        when = float(stamp)
    except ValueError:
        return None
    return (when, state.strip()) if state.strip() and math.isfinite(when) else None


class EventRecorder:
    """Appends events to events.jsonl as they happen (nothing lost if the run dies)."""

    def __init__(self, lab: WatchedLab, vip: str, path: Path):
        self.lab = lab
        self.vip = vip
        self.path = path
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.monitors: dict[str, subprocess.Popen] = {}
        self.monitors_lock = threading.Lock()  # no monitor is spawned once stop() has begun ending them
        self.holders: dict[str, bool] = {}

    def record(self, event: dict) -> None:
        with self.lock:
            append_event(self.path, event)

    def snapshot(self, phase: str) -> None:
        self.record({
            "t": time.time(), "kind": "run", "phase": phase,
            "holders": self.lab.vip_holders(), "states": self.lab.vrrp_states(),
        })

    def start(self) -> None:
        self.snapshot("start")
        for node in self.lab.loadbalancers():
            self.holders[node.name] = node.holds_vip()
            for target in (self._watch_vip, self._watch_vrrp):
                thread = threading.Thread(target=target, args=(node,), daemon=True,
                                          name=f"{target.__name__}-{node.name}")
                thread.start()
                self.threads.append(thread)

    def stop(self) -> None:
        with self.monitors_lock:
            self.stopping.set()
            monitors = list(self.monitors.values())
        for monitor in monitors:
            stop_process(monitor)
        for thread in self.threads:
            thread.join(timeout=5)
        self.snapshot("end")

    def _vip_change(self, node: str, when: float, change: str) -> None:
        held = change == "acquired"
        if self.holders.get(node) != held:
            self.holders[node] = held
            self.record({"t": when, "kind": "vip", "node": node, "change": change})

    def _watch_vip(self, node: WatchedNode) -> None:
        """Follow `ip monitor address` on the node; restart it when a halt kills it."""
        vip = self.vip
        while True:
            with self.monitors_lock:
                if self.stopping.is_set():
                    return
                monitor = node.spawn(VIP_MONITOR)
                self.monitors[node.name] = monitor
            time.sleep(0.05)  # let the monitor subscribe before the resync below
            self._vip_change(node.name, time.time(), "acquired" if node.holds_vip() else "released")
            for line in monitor.stdout:
                parsed = parse_monitor_line(line, vip)
                if parsed:
                    self._vip_change(node.name, *parsed)
            monitor.wait()
            self.stopping.wait(0.05)

    def _watch_vrrp(self, node: WatchedNode) -> None:
        """Follow Keepalived's notify log, and notice when Keepalived is gone."""
        seen = node.vrrp_poll(0, liveness=False).count
        alive = bool(node.service_pids("keepalived"))
        reachable = True
        next_liveness = time.monotonic() + LIVENESS_POLL
        while not self.stopping.wait(node.poll_interval):
            liveness = time.monotonic() >= next_liveness
            if liveness:
                next_liveness += LIVENESS_POLL
            poll = node.vrrp_poll(seen, liveness)
            seen = poll.count
            for line in poll.lines:
                parsed = parse_state_line(line)
                if parsed is None:
                    logger.warning(f"chaoslab: {node.name}: a line of the VRRP state log is not '<unix time> "
                                   f"<state>', skipped: {line!r}")
                    continue
                self.record({"t": parsed[0], "kind": "vrrp", "node": node.name, "state": parsed[1]})
            if poll.reachable != reachable:  # not knowing Keepalived's state is not knowing it stopped
                reachable = poll.reachable
                self.record({"t": time.time(), "kind": "reach", "node": node.name, "reachable": reachable})
            if poll.alive is not None:
                if alive and not poll.alive:
                    self.record({"t": time.time(), "kind": "vrrp", "node": node.name, "state": "STOPPED"})
                alive = poll.alive
