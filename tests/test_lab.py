"""The lab for real: the document's stack in network namespaces, checked from outside."""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from chaoslab.lab.lab import Lab
from chaoslab.lab.namespaces import listens, wait_gone
from chaoslab.lab.node import VRRP_BLOCK_CHAIN
from chaoslab.measure.client import Outcome, request_vip
from chaoslab.network import actions as network_actions
from chaoslab.service import actions as service_actions

pytestmark = pytest.mark.lab


def test_steady_state_alternates_between_both_pages(shared_lab: Lab):
    outcomes = shared_lab.request(count=6)
    assert all(outcome.status == 200 for outcome in outcomes)
    backends = [outcome.backend for outcome in outcomes]
    assert set(backends) == {"httpd-1", "httpd-2"}
    assert all(a != b for a, b in zip(backends, backends[1:], strict=False))


def test_pages_name_their_server(shared_lab: Lab):
    page = shared_lab.node("haproxy-1").run(["curl", "-s", "-m", "2", "http://192.168.50.11/"], check=True).stdout
    assert page.strip() == "192.168.50.11 httpd-1.lab.example.com"


def test_ip_a_s_eth1_on_haproxy_1_shows_the_vip(shared_lab: Lab):
    output = shared_lab.node("haproxy-1").run(["ip", "a", "s", "eth1"], check=True).stdout
    assert "inet 192.168.1.13/24" in output
    assert "inet 192.168.1.10/24" in output
    assert "192.168.1.10" not in shared_lab.node("haproxy-2").run(["ip", "a", "s", "eth1"], check=True).stdout


def test_vrrp_adverts_as_in_the_document(shared_lab: Lab):
    """tcpdump on haproxy-2's eth1: VRRPv2 from .13 to .14, vrid 51, prio 103, simple auth, 2 s."""
    capture = shared_lab.node("haproxy-2").run(
        ["timeout", "5", "tcpdump", "-l", "-n", "-c", "2", "-i", "eth1", "vrrp"], timeout=10
    )
    lines = [line for line in capture.stdout.splitlines() if "VRRP" in line]
    assert len(lines) == 2, capture.stdout + capture.stderr
    for line in lines:
        assert re.search(r"192\.168\.1\.13 > 192\.168\.1\.14: VRRPv2, Advertisement, vrid 51, prio 103, "
                         r"authtype simple, intvl 2s", line), line
    first, second = (float(line.split()[0].split(":")[-1]) for line in lines)
    assert 1.8 < (second - first) % 60 < 2.2


def test_stopping_haproxy_moves_the_vip_and_starting_it_restores(healthy_lab: Lab):
    lab = healthy_lab
    master = lab.node("haproxy-1")
    master.stop_service("haproxy")
    deadline = time.monotonic() + 15
    while lab.vip_holders() != ["haproxy-2"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.vip_holders() == ["haproxy-2"]
    assert lab.vrrp_states() == {"haproxy-1": "FAULT", "haproxy-2": "MASTER"}
    assert lab.balanced(count=4)
    master.start_service("haproxy")
    lab.wait_ready()
    deadline = time.monotonic() + 15
    while lab.vip_holders() != ["haproxy-1"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab.vip_holders() == ["haproxy-1"]
    assert lab.balanced(count=4)


@pytest.mark.parametrize("name", ["haproxy-1", "haproxy-2", "httpd-1", "httpd-2"])
def test_halt_and_boot(healthy_lab: Lab, name: str):
    lab = healthy_lab
    node = lab.node(name)
    peer_address = node.spec.interfaces[0].address
    witness = lab.node("haproxy-2" if name == "haproxy-1" else "haproxy-1")
    node.halt()
    assert node.is_halted()
    assert node.running_services() == []
    assert not witness.run(["ping", "-c", "1", "-W", "1", peer_address]).ok
    node.boot()
    assert not node.is_halted()
    assert set(node.running_services()) == set(node.spec.services)
    assert witness.run(["ping", "-c", "1", "-W", "2", peer_address]).ok
    lab.wait_ready()


def test_freeze_and_thaw_haproxy(healthy_lab: Lab):
    """A frozen HAProxy on the master: alive to a pid check, silent to clients."""
    node = healthy_lab.node("haproxy-1")
    node.freeze_service("haproxy")
    assert node.is_service_frozen("haproxy")
    assert node.service_running("haproxy")
    outcomes = healthy_lab.request(count=2, timeout=0.5)
    assert [outcome.error for outcome in outcomes] == ["timeout", "timeout"]
    node.thaw_service("haproxy")
    assert not node.is_service_frozen("haproxy")
    assert all(outcome.ok for outcome in healthy_lab.request(count=2, timeout=1.0))


def test_a_reload_of_haproxy_hands_its_listeners_over(healthy_lab: Lab):
    """Two reloads (haproxy -sf) on the master while a client asks the VIP all the time: a new process
    each time, which the pid file names; the old one gone; every request answered; the VIP stays."""
    lab = healthy_lab
    node = lab.node("haproxy-1")
    old = node.service_pids("haproxy")
    outcomes: list[Outcome] = []
    done = threading.Event()

    def ask() -> None:
        target = lab.topology.target()
        for _ in range(2000):  # about 10 s at most; the reloads take well under one
            outcomes.append(request_vip(target, timeout=1.0))
            if done.is_set():
                return

    client = threading.Thread(target=lambda: lab.provider.in_client(ask))
    client.start()
    try:
        time.sleep(0.3)
        for _ in range(2):
            service_actions.reload_service("haproxy", "vrrp-master", configuration={"chaoslab_prefix": lab.prefix})
            time.sleep(0.3)
    finally:
        done.set()
        client.join(timeout=15)
    new = node.service_pids("haproxy")
    assert len(new) == 1 and not set(new) & set(old)
    assert node.read_file("run/haproxy.pid").split() == [str(new[0])]
    assert wait_gone(old, timeout=5) and not any(listens(pid) for pid in old)
    assert len(outcomes) > 20 and [o.error for o in outcomes if not o.ok] == []
    assert lab.vip_holders() == ["haproxy-1"]


def test_vrrp_blocked_in_on_the_backup_makes_it_master_and_unblocking_restores_one_holder(healthy_lab: Lab):
    """The backup's firewall drops the VRRP it receives: only its INPUT is hooked, the master's rules are
    untouched; the backup hears no adverts and becomes MASTER within the seed's master down interval
    (3 x 2 s + skew = 6.61 s) and a margin; unblocked, it hears the master again and gives the VIP up."""
    lab = healthy_lab
    configuration = {"chaoslab_prefix": lab.prefix}
    assert network_actions.block_vrrp("vrrp-backup", "in", configuration=configuration) == "haproxy-2"
    started = time.monotonic()
    rules = lab.node("haproxy-2").run(["iptables", "-S"], check=True).stdout.splitlines()
    master = lab.topology.node("haproxy-1").address(lab.topology.vip_network)
    assert f"-A INPUT -j {VRRP_BLOCK_CHAIN}" in rules and f"-A OUTPUT -j {VRRP_BLOCK_CHAIN}" not in rules
    assert f"-A {VRRP_BLOCK_CHAIN} -s {master}/32 -p vrrp -j DROP" in rules
    assert "CHAOSLAB" not in lab.node("haproxy-1").run(["iptables", "-S"], check=True).stdout
    while lab.vip_holders() != ["haproxy-1", "haproxy-2"] and time.monotonic() - started < 6.61 + 1.5:
        time.sleep(0.1)
    assert lab.vip_holders() == ["haproxy-1", "haproxy-2"]
    assert lab.vrrp_states() == {"haproxy-1": "MASTER", "haproxy-2": "MASTER"}
    assert network_actions.unblock_vrrp(configuration=configuration) == ["haproxy-2"]
    healed = time.monotonic()
    while lab.vip_holders() != ["haproxy-1"] and time.monotonic() - healed < 2 + 1.5:  # the next advert
        time.sleep(0.1)
    assert lab.vip_holders() == ["haproxy-1"]
    assert network_actions.unblock_vrrp(configuration=configuration) == []  # nothing left to undo


def test_link_down_and_up(healthy_lab: Lab):
    node = healthy_lab.node("httpd-1")
    witness = healthy_lab.node("haproxy-1")
    node.link_down("eth1")
    assert not witness.run(["ping", "-c", "1", "-W", "1", "192.168.50.11"]).ok
    assert not node.is_halted()
    node.link_up("eth1")
    assert witness.run(["ping", "-c", "1", "-W", "2", "192.168.50.11"]).ok


def test_status_shows_the_lab(shared_lab: Lab, cli):
    result = cli("lab", "status", env={"CHAOSLAB_PREFIX": shared_lab.prefix})
    assert result.returncode == 0, result.stderr
    assert re.search(r"haproxy-1\s+loadbalancer\s+\S+\s+haproxy,keepalived\s+MASTER\s+holder", result.stdout)
    assert "VIP answers: httpd-" in result.stdout


def test_exec_runs_on_the_node(shared_lab: Lab, cli):
    result = cli("lab", "exec", "httpd-2", "--", "ip", "-4", "-o", "addr", "show", "eth1",
                              env={"CHAOSLAB_PREFIX": shared_lab.prefix})
    assert result.returncode == 0 and "192.168.50.12" in result.stdout


def test_up_on_a_running_lab_changes_nothing(shared_lab: Lab, cli):
    pids = shared_lab.node("haproxy-1").service_pids("haproxy")
    result = cli("lab", "up", env={"CHAOSLAB_PREFIX": shared_lab.prefix})
    assert result.returncode == 0 and "already up" in result.stdout
    assert shared_lab.node("haproxy-1").service_pids("haproxy") == pids


def test_nothing_in_the_root_namespace(shared_lab: Lab):
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    assert "br-public" not in links and "haproxy-1" not in links
    assert "192.168.1." not in addresses and "192.168.50." not in addresses
