"""The lab for real: the document's stack in network namespaces, checked from outside."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from chaoslab.lab.lab import Lab

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
