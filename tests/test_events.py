"""The event recorder's records are what happened: no stop invented, none missed, no monitor left
running, and time stamps right whatever the node's time zone."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chaoslab.lab.inventory import Host
from chaoslab.lab.topology import Topology
from chaoslab.lab.transport import ClockOffset
from chaoslab.lab.transport.ssh import SshConnection, SshTransport
from chaoslab.lab.vrrp import NotifyLogOverSsh
from chaoslab.measure.analysis import load_events
from chaoslab.measure.events import VIP_MONITOR, EventRecorder, VrrpPoll, parse_monitor_line
from tests.helpers import needs_root

VIP = Topology.load().vip


class ScriptedNode:
    """A load balancer whose looks at Keepalived give what the test scripts (the recorder's logic alone)."""

    name = "haproxy-1"
    poll_interval = 0.01

    def __init__(self, polls: list[VrrpPoll], spawn: Callable[[int], None] | None = None, clock_ahead: float = 0.0):
        self.polls = [VrrpPoll([], 0, None), *polls]  # the first look counts what the log has
        self.spawned: list[subprocess.Popen] = []
        self.spawn_hook = spawn
        self.clock = ClockOffset(clock_ahead, 0.001)

    def service_pids(self, service: str) -> list[int]:
        return [1]

    def holds_vip(self) -> bool:
        return False

    def vrrp_poll(self, position: int | str | None, liveness: bool) -> VrrpPoll:
        return self.polls.pop(0) if self.polls else VrrpPoll([], position, None)

    def spawn(self, argv: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, text=True)
        self.spawned.append(process)
        if self.spawn_hook:
            self.spawn_hook(len(self.spawned))
        return process


class ScriptedLab:
    def __init__(self, node: ScriptedNode):
        self.node = node

    def loadbalancers(self) -> list[ScriptedNode]:
        return [self.node]

    def vip_holders(self) -> list[str]:
        return []

    def service_restarts(self, since: float) -> list[dict]:
        return []

    def vrrp_states(self) -> dict[str, str]:
        return {}


def test_a_node_clock_ahead_of_ours_has_its_stamps_moved_onto_ours(tmp_path: Path):
    """A host whose clock runs 100 s ahead stamps its MASTER at 1000.5: it happened at 900.5 here,
    and the offset measured is in the events."""
    events = record(ScriptedNode([VrrpPoll(["1000.5 MASTER"], 1, None)], clock_ahead=100.0),
                    tmp_path / "events.jsonl", 0.3)
    assert [(event["t"], event["state"]) for event in events if event["kind"] == "vrrp"] == [(900.5, "MASTER")]
    [clock] = [event for event in events if event["kind"] == "clock"]
    assert (clock["node"], clock["offset"], clock["applied"]) == ("haproxy-1", 100.0, 100.0)


def test_an_offset_within_its_uncertainty_is_not_applied(tmp_path: Path):
    """5 ms ahead, give or take 10 ms (half the round trip): no telling it from the same clock."""
    node = ScriptedNode([VrrpPoll(["1000.5 MASTER"], 1, None)])
    node.clock = ClockOffset(0.005, 0.01)
    events = record(node, tmp_path / "events.jsonl", 0.3)
    assert [event["t"] for event in events if event["kind"] == "vrrp"] == [1000.5]
    assert [event["applied"] for event in events if event["kind"] == "clock"] == [0.0]


def record(node: ScriptedNode, path: Path, seconds: float) -> list[dict]:
    recorder = EventRecorder(ScriptedLab(node), VIP, path)
    recorder.start()
    time.sleep(seconds)
    recorder.stop()
    for process in node.spawned:
        process.kill()
        process.wait()
    return load_events(path)


def test_an_unreachable_node_is_recorded_as_such_not_as_keepalived_stopped(tmp_path: Path):
    node = ScriptedNode([VrrpPoll([], 0, None, reachable=False), VrrpPoll([], 0, True)])
    events = record(node, tmp_path / "events.jsonl", 0.3)
    assert [(e["kind"], e["reachable"]) for e in events if e["kind"] == "reach"] == [("reach", False), ("reach", True)]
    assert not [event for event in events if event.get("state") == "STOPPED"]


def test_a_malformed_state_line_is_skipped_and_recording_goes_on(tmp_path: Path):
    node = ScriptedNode([VrrpPoll(["1795639415.26 BACKUP", "garbage", ""], 3, None),
                         VrrpPoll(["1795639416.5 MASTER"], 4, None)])
    events = record(node, tmp_path / "events.jsonl", 0.3)
    assert [(e["t"], e["state"]) for e in events if e["kind"] == "vrrp"] == [(1795639415.26, "BACKUP"),
                                                                              (1795639416.5, "MASTER")]


def test_no_monitor_outlives_the_recorder_even_when_one_is_respawned_as_it_stops(tmp_path: Path):
    """The second monitor is spawned while stop() runs (the first died just then): it must be ended too."""
    recorder: list[EventRecorder] = []
    stopper: list[threading.Thread] = []

    def stop_during_respawn(count: int) -> None:
        if count == 1:
            threading.Timer(0.2, node.spawned[0].kill).start()  # the first monitor dies
        elif count == 2:
            stopper.append(threading.Thread(target=recorder[0].stop))
            stopper[0].start()
            time.sleep(0.3)  # stop() runs while this monitor is being spawned

    node = ScriptedNode([], spawn=stop_during_respawn)
    recorder.append(EventRecorder(ScriptedLab(node), VIP, tmp_path / "events.jsonl"))
    recorder[0].start()
    deadline = time.monotonic() + 10
    while not stopper and time.monotonic() < deadline:
        time.sleep(0.05)
    stopper[0].join(timeout=15)
    try:
        assert len(node.spawned) == 2
        assert all(process.poll() is not None for process in node.spawned), "a monitor still runs after stop()"
        assert not any(thread.is_alive() for thread in recorder[0].threads)
    finally:
        for process in node.spawned:
            process.kill()
            process.wait()


def test_an_unreachable_ssh_host_gives_no_keepalived_state(tmp_path: Path):
    """A real ssh to a port of this machine's loopback where nothing listens: refused, so unreachable."""
    host = Host("haproxy-1", "loadbalancers", "127.0.0.1", "nobody", 1)
    transport = SshTransport("haproxy-1", SshConnection(host, tmp_path))
    poll = NotifyLogOverSsh().poll(transport, lambda: True, 0, liveness=True)
    assert (poll.reachable, poll.alive, poll.lines) == (False, None, [])


@pytest.fixture
def namespace() -> Iterator[str]:
    needs_root()
    name = "ctzone-host"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_vip_moves_are_stamped_right_on_a_node_in_another_time_zone(namespace: str):
    """The real `ip -ts monitor` on a 'host' whose zone is UTC+9, the VIP added there: the recorded time is
    now, not nine hours off."""
    monitor = subprocess.Popen(["ip", "netns", "exec", namespace, "env", "TZ=JST-9", *VIP_MONITOR],
                               stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        subprocess.run(["ip", "-n", namespace, "addr", "add", f"{VIP}/32", "dev", "lo"], check=True)
        added = time.time()
        line = monitor.stdout.readline()
    finally:
        monitor.kill()
        monitor.wait()
    when, change = parse_monitor_line(line, VIP)
    assert change == "acquired" and abs(when - added) < 5, line
