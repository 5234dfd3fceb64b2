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
    """What one look at a node's VRRP states found: lines "<unix time> <state>" on the node's clock;
    position: where the next look starts (a line count of the lab's log, a journal cursor); alive:
    whether Keepalived runs, None when that was not asked or could not be told; reachable: False when
    the node did not answer (then nothing is known of its Keepalived, which is not knowing it stopped)."""

    lines: list[str]
    position: int | str | None
    alive: bool | None
    reachable: bool = True


class ClockReading(Protocol):
    """A node's clock against the recorder's (chaoslab.lab.transport.ClockOffset is one)."""

    offset: float
    uncertainty: float

    @property
    def applied(self) -> float: ...


class WatchedNode(Protocol):
    """A load balancer as the recorder watches it (chaoslab.lab.node.Node is one)."""

    name: str
    poll_interval: float

    @property
    def clock(self) -> ClockReading: ...
    def spawn(self, argv: list[str]) -> subprocess.Popen: ...
    def holds_vip(self) -> bool: ...
    def service_pids(self, service: str) -> list[int]: ...
    def vrrp_poll(self, position: int | str | None, liveness: bool) -> VrrpPoll: ...


class WatchedLab(Protocol):
    """The stack as the recorder watches it (chaoslab.lab.lab.Lab is one)."""

    def loadbalancers(self) -> list[WatchedNode]: ...
    def service_restarts(self, since: float) -> list[dict]: ...
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


def latest_fault_node(path: Path) -> str | None:
    """The node of the latest fault injected on a node, in a run's events; None before the first."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if event.get("kind") == "fault" and event.get("phase") == "inject" and event.get("node"):
            return event["node"]
    return None


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
        self.started = 0.0
        self.offsets: dict[str, float] = {}  # how far each node's clock is ahead: its stamps, moved onto ours

    def _clock(self, node: WatchedNode) -> float:
        """Measure the node's clock once and record it; the offset its stamps are moved by, 0 if it cannot
        be read (said in the log)."""
        try:
            clock = node.clock
        except Exception as error:  # the node cannot tell its time now: its stamps are taken as they are
            logger.warning(f"chaoslab: the clock of {node.name} could not be read ({error}); its times are "
                           "taken as this machine's")
            return 0.0
        applied = clock.applied
        self.record({"t": time.time(), "kind": "clock", "node": node.name, "offset": round(clock.offset, 6),
                     "uncertainty": round(clock.uncertainty, 6), "applied": round(applied, 6)})
        return applied

    def record(self, event: dict) -> None:
        with self.lock:
            append_event(self.path, event)

    def snapshot(self, phase: str) -> None:
        self.record({
            "t": time.time(), "kind": "run", "phase": phase,
            "holders": self.lab.vip_holders(), "states": self.lab.vrrp_states(),
        })

    def start(self) -> None:
        self.started = time.time()
        self.snapshot("start")
        for node in self.lab.loadbalancers():
            self.offsets[node.name] = self._clock(node)
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
        for event in self.lab.service_restarts(self.started):  # the service manager's own, from its journal
            self.record(event)
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
                    self._vip_change(node.name, parsed[0] - self.offsets.get(node.name, 0.0), parsed[1])
            monitor.wait()
            self.stopping.wait(0.05)

    def _watch_vrrp(self, node: WatchedNode) -> None:
        """Follow Keepalived's state changes, and notice when Keepalived is gone."""
        position = node.vrrp_poll(None, liveness=False).position
        alive = bool(node.service_pids("keepalived"))
        reachable = True
        next_liveness = time.monotonic() + LIVENESS_POLL
        while not self.stopping.wait(node.poll_interval):
            liveness = time.monotonic() >= next_liveness
            if liveness:
                next_liveness += LIVENESS_POLL
            poll = node.vrrp_poll(position, liveness)
            position = poll.position
            for line in poll.lines:
                parsed = parse_state_line(line)
                if parsed is None:
                    logger.warning(f"chaoslab: {node.name}: a line of the VRRP state log is not '<unix time> "
                                   f"<state>', skipped: {line!r}")
                    continue
                self.record({"t": parsed[0] - self.offsets.get(node.name, 0.0), "kind": "vrrp", "node": node.name,
                             "state": parsed[1]})
            if poll.reachable != reachable:  # not knowing Keepalived's state is not knowing it stopped
                reachable = poll.reachable
                self.record({"t": time.time(), "kind": "reach", "node": node.name, "reachable": reachable})
            if poll.alive is not None:
                if alive and not poll.alive:
                    self.record({"t": time.time(), "kind": "vrrp", "node": node.name, "state": "STOPPED"})
                alive = poll.alive
