"""The topology's validation: out-of-range or inconsistent values get one clear line."""

from __future__ import annotations

import copy
import json

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology
from chaoslab.paths import TOPOLOGY_FILE

BASE = json.loads(TOPOLOGY_FILE.read_text())


def broken(change) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def node(data: dict, name: str) -> dict:
    return next(each for each in data["nodes"] if each["name"] == name)


def test_the_shipped_topology_is_valid():
    topology = Topology.load()
    assert topology.node_names == ["haproxy-1", "haproxy-2", "httpd-1", "httpd-2"]
    assert topology.vip == "192.168.1.10"
    assert topology.profile("seed").settings["vrrp"] == {"version": 2, "advert_int": 2, "garp_master_delay": 1}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["vip"].update(address="192.168.2.10"),
     "VIP 192.168.2.10 is outside the public subnet 192.168.1.0/24"),
    (lambda d: node(d, "httpd-2")["interfaces"][0].update(address="192.168.50.11"),
     "address 192.168.50.11 of httpd-2 is also httpd-1"),
    (lambda d: d["networks"]["private"].update(subnet="192.168.0.0/16"),
     "networks public (192.168.1.0/24) and private (192.168.0.0/16) overlap"),
    (lambda d: node(d, "haproxy-1")["vrrp"].update(priority=256), "VRRP priority 256 is outside 1..255"),
    (lambda d: node(d, "haproxy-2")["vrrp"].update(priority=0), "VRRP priority 0 is outside 1..255"),
    (lambda d: d["vrrp"].update(virtual_router_id=256), "virtual_router_id 256 is outside 1..255"),
    (lambda d: d["vrrp"].update(virtual_router_id=0), "virtual_router_id 0 is outside 1..255"),
    (lambda d: node(d, "httpd-1")["interfaces"][0].update(name="enp0s31f6-uplink"), "is not 1 to 15 characters"),
    (lambda d: d.update(default_profile="nope"), "default_profile 'nope' is not one of the profiles"),
])
def test_inconsistent_topologies_are_refused(change, message):
    with pytest.raises(ChaoslabError) as error:
        Topology(broken(change))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_an_advert_interval_vrrpv2_cannot_carry():
    data = broken(lambda d: d["profiles"].update(half={"description": "x", "vrrp": {"advert_int": 0.5}}))
    with pytest.raises(ChaoslabError, match="VRRPv2 carries advert intervals in whole seconds 1..255, not 0.5; "
                                            "use vrrp version 3"):
        Topology(data).profile("half")


def test_an_advert_interval_vrrpv3_cannot_carry():
    data = broken(lambda d: d["profiles"].update(slow={"description": "x", "vrrp": {"version": 3, "advert_int": 50}}))
    with pytest.raises(ChaoslabError, match="VRRPv3 carries advert intervals in centiseconds 0.01..40.95, not 50"):
        Topology(data).profile("slow")


def test_unknown_profile_lists_the_known():
    with pytest.raises(ChaoslabError, match=r"unknown profile 'nope'; known profiles: .*seed"):
        Topology.load().profile("nope")


def test_unknown_node_lists_the_known():
    with pytest.raises(ChaoslabError, match="unknown node 'web-9'; known nodes: haproxy-1, haproxy-2, httpd-1, httpd-2"):
        Topology.load().node("web-9")


def test_malformed_topology_file(tmp_path):
    path = tmp_path / "topology.json"
    path.write_text("{ not json")
    with pytest.raises(ChaoslabError, match="is not valid JSON"):
        Topology.load(path)
