"""A heal says what it could not undo: the link-heal commands run by a real shell, with `tc` and
`iptables` that refuse (as a refused sudo or a missing tool does) or that find nothing to undo."""

from __future__ import annotations

import os
import signal as signals
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from chaoslab.commands import CommandResult
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab, heal_node
from chaoslab.lab.machine.none import NoMachine
from chaoslab.lab.node import ONE_WAY_CHAIN, Node
from chaoslab.lab.services import ServiceManager
from chaoslab.lab.topology import Topology
from chaoslab.lab.transport import Transport
from chaoslab.lab.vrrp import NotifyLog
from chaoslab.measure.analysis import load_events, pair_faults
from chaoslab.measure.results import EVENTS
from chaoslab.network import actions as network_actions

REFUSING = "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n"
# nothing to undo: no netem qdisc, the hooks exist, chaoslab's chains do not
NOTHING_SET = """#!/bin/sh
case "$*" in
    *"qdisc show"*) echo "qdisc noqueue 0: root refcnt 2" ;;
    *"-L OUTPUT"*|*"-L INPUT"*) exit 0 ;;
    *"-L CHAOSLAB"*) echo "iptables: No chain/target/match by that name." >&2; exit 1 ;;
    *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"""


class ShellTransport(Transport):
    """Commands in a local shell with the test's tools first on PATH."""

    def __init__(self, tools: Path):
        self.tools = tools

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        completed = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                                   env={**os.environ, "PATH": f"{self.tools}:/usr/bin:/bin"})
        return CommandResult(tuple(argv), completed.returncode, completed.stdout, completed.stderr)

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        raise NotImplementedError

    def read_file(self, relative: str) -> str | None:
        return None


class RunningServices(ServiceManager):
    """Every service runs, none is frozen: the heal has only the links to undo."""

    def start(self, service: str) -> None: ...
    def stop(self, service: str) -> None: ...
    def reload(self, service: str) -> None: ...
    def pids(self, service: str) -> list[int]: return [1]
    def signal(self, service: str, signal: signals.Signals) -> list[int]: return [1]
    def is_frozen(self, service: str) -> bool: return False
    def after_boot(self, services: Sequence[str]) -> None: ...


def node_with(tmp_path: Path, script: str) -> Node:
    for tool in ("tc", "iptables"):
        (tmp_path / tool).write_text(script)
        (tmp_path / tool).chmod(0o755)
    topology = Topology.load()
    return Node(topology.node("haproxy-1"), topology, topology.profile(), ShellTransport(tmp_path), RunningServices(),
                NoMachine("haproxy-1"), NotifyLog())


def test_a_refused_link_heal_is_an_error_naming_what_stays(tmp_path: Path):
    node = node_with(tmp_path, REFUSING)
    with pytest.raises(ChaoslabError, match="could not remove the netem qdisc of eth1 on haproxy-1: sudo: a password"):
        node.restore_link("eth1")
    with pytest.raises(ChaoslabError, match="could not remove the iptables chain CHAOSLAB-PARTITION from INPUT and OUTPUT"):
        node.unblock_vrrp()


def test_heal_tries_every_step_and_reports_each_failure(tmp_path: Path):
    healed, failed = heal_node(node_with(tmp_path, REFUSING))
    assert healed == []
    text = "; ".join(failed)
    for undone in ("the netem qdisc of eth1", "the netem qdisc of eth2", "the iptables chain CHAOSLAB-DEGRADE from OUTPUT",
                   "the iptables chain CHAOSLAB-PARTITION from INPUT and OUTPUT"):
        assert f"could not remove {undone} on haproxy-1: sudo: a password is required" in text


def test_nothing_to_undo_is_no_failure(tmp_path: Path):
    assert heal_node(node_with(tmp_path, NOTHING_SET)) == ([], [])


@pytest.mark.lab
def test_partition_and_degradation_are_undone_for_real(healthy_lab):
    """On a real node: the partition chain hooked into INPUT and OUTPUT, the degrade chain or a netem
    qdisc; each heal leaves no chain of chaoslab's behind and fails on nothing."""
    node = healthy_lab.node("haproxy-1")
    node.block_vrrp([healthy_lab.topology.node("haproxy-2").address("public")])
    node.degrade_link("eth1", loss_percent=5)
    assert "CHAOSLAB-PARTITION" in node.run(["iptables", "-S"], check=True).stdout
    node.unblock_vrrp()
    node.restore_link("eth1")
    rules = node.run(["iptables", "-S"], check=True).stdout
    assert "CHAOSLAB" not in rules and "netem" not in node.run(["tc", "qdisc", "show", "dev", "eth1"]).stdout
    assert heal_node(node) == ([], [])


@pytest.mark.lab
def test_a_one_way_partition_drops_on_arrival_and_the_lab_heal_removes_it(healthy_lab: Lab):
    """From haproxy-1 to haproxy-2: haproxy-2 drops what arrives from each of haproxy-1's addresses
    (INPUT only); haproxy-1's firewall is untouched, so haproxy-2's packets still reach it. Lab.heal
    removes the chain."""
    lab = healthy_lab
    assert network_actions.partition_one_way("haproxy-1", "haproxy-2",
                                             configuration={"chaoslab_prefix": lab.prefix}) == ["haproxy-1", "haproxy-2"]
    rules = lab.node("haproxy-2").run(["iptables", "-S"], check=True).stdout.splitlines()
    assert f"-A INPUT -j {ONE_WAY_CHAIN}" in rules and f"-A OUTPUT -j {ONE_WAY_CHAIN}" not in rules
    assert [rule for rule in rules if rule.startswith(f"-A {ONE_WAY_CHAIN} ")] == [
        f"-A {ONE_WAY_CHAIN} -s {interface.address}/32 -j DROP" for interface in lab.topology.node("haproxy-1").interfaces]
    assert "CHAOSLAB" not in lab.node("haproxy-1").run(["iptables", "-S"], check=True).stdout
    lab.heal()
    assert all("CHAOSLAB" not in node.run(["iptables", "-S"], check=True).stdout for node in lab.nodes())


@pytest.mark.lab
def test_undoing_faults_without_arguments_records_a_heal_for_each_fault_undone(healthy_lab: Lab, tmp_path: Path):
    """link_up(), restore_link(), unblock_vrrp() and heal_one_way() name no node: each records a heal
    per (node, target) it undid, the pair its fault recorded, so the analysis closes every fault; and
    partition_vrrp's (no node, vrrp) pair closes as before. No heal names no node but the partition's."""
    lab = healthy_lab
    configuration = {"chaoslab_prefix": lab.prefix}
    private = next(i.name for i in lab.topology.node("haproxy-2").interfaces if i.network != lab.topology.vip_network)
    with lab.measured_into(tmp_path):
        network_actions.link_down("haproxy-2", private, configuration=configuration)
        network_actions.degrade_link("httpd-2", "eth1", loss_percent=5, configuration=configuration)
        network_actions.block_vrrp("haproxy-2", "out", configuration=configuration)
        network_actions.partition_one_way("haproxy-2", "haproxy-1", configuration=configuration)
        network_actions.partition_vrrp(configuration=configuration)
        network_actions.link_up(configuration=configuration)
        network_actions.restore_link(configuration=configuration)
        network_actions.unblock_vrrp(configuration=configuration)
        assert network_actions.heal_one_way(configuration=configuration) == ["haproxy-2 -> haproxy-1"]
        network_actions.heal_partition(configuration=configuration)
    events = load_events(tmp_path / EVENTS)
    faults = pair_faults(events)
    assert [(fault.action, fault.node, fault.target) for fault in faults] == [
        ("link_down", "haproxy-2", private), ("degrade_link", "httpd-2", "eth1"), ("block_vrrp", "haproxy-2", "vrrp"),
        ("partition_one_way", "haproxy-2", "haproxy-1"), ("partition_vrrp", None, "vrrp")]
    assert all(fault.heal is not None for fault in faults), faults
    heals = [event for event in events if event.get("phase") == "heal"]
    assert [event["action"] for event in heals if event["node"] is None] == ["partition_vrrp"]
    assert all("CHAOSLAB" not in node.run(["iptables", "-S"], check=True).stdout for node in lab.nodes())
