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
from chaoslab.lab.lab import heal_node
from chaoslab.lab.machine.none import NoMachine
from chaoslab.lab.node import Node
from chaoslab.lab.services import ServiceManager
from chaoslab.lab.topology import Topology
from chaoslab.lab.transport import Transport
from chaoslab.lab.vrrp import NotifyLog

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
