"""chaoslab import: a pair's own keepalived.conf and haproxy.cfg to the topology and what they promise."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from chaoslab.configs import sources
from chaoslab.configs.importer import import_pair, prediction_rows
from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology
from chaoslab.measure import theory

WEIGHTED = Path(__file__).parent / "data" / "pairs" / "weighted"
ADDRESSES = {"alpha": "172.20.5.11", "bravo": "172.20.5.12"}


@pytest.fixture(scope="module")
def weighted():
    return import_pair(sources.read_pair(WEIGHTED), ADDRESSES)


def test_the_pair_becomes_a_valid_topology_of_their_names_and_addresses(weighted):
    topology = Topology(weighted.topology, WEIGHTED / "topology.json")
    assert [(n.name, n.role) for n in topology.nodes] == [
        ("alpha", "loadbalancer"), ("bravo", "loadbalancer"), ("shop1", "webserver"), ("shop2", "webserver")]
    assert topology.vip == "172.20.5.50" and topology.port == 8080
    assert {name: str(subnet) for name, subnet in topology.networks.items()} == {"vip": "172.20.5.0/24"}
    assert [topology.vip_interface_of(spec) for spec in topology.loadbalancers] == ["bond0", "bond0"]
    assert [spec.address("vip") for spec in topology.loadbalancers] == ["172.20.5.11", "172.20.5.12"]
    assert [spec.vrrp_priority for spec in topology.loadbalancers] == [110, 100]
    assert topology.virtual_router_id == 60 and topology.vrrp_instance == "VI_WEB" and topology.preempt
    assert topology.preferred_master == "alpha"
    assert [node["port"] for node in weighted.topology["nodes"] if node["role"] == "webserver"] == [80, 80]


def test_their_timers_become_the_profile(weighted):
    settings = Topology(weighted.topology).profile().settings
    assert settings["vrrp"] == {"version": 2, "advert_int": 1.0, "garp_master_delay": 5.0}
    assert settings["track"] == {"mechanism": "script", "interval": 2.0, "fall": 2, "rise": 2, "weight": -20,
                                 "probe": "process"}
    assert settings["haproxy"] == {"balance": "leastconn", "check_inter_ms": 3000.0, "check_fall": 3, "check_rise": 2,
                                   "retries": 2, "redispatch": False, "timeout_connect_ms": 5000.0,
                                   "timeout_client_ms": 60000.0, "timeout_server_ms": 60000.0}


def test_answers_are_told_apart_by_the_persistence_cookie(weighted):
    target = Topology(weighted.topology).target()
    assert target.identity == "cookie" and target.field == "SRVID"
    assert target.backends == (("shop1", "s1"), ("shop2", "s2"))
    assert target.url == "http://172.20.5.50:8080/"


def test_the_vrrp_password_is_not_copied(weighted):
    assert "longsecret9" not in json.dumps(weighted.topology)
    assert all("longsecret9" not in str(note) for note in weighted.notes)


def test_what_was_assumed_is_named_with_its_place(weighted):
    notes = [str(note) for note in weighted.notes]
    assert any("172.20.5.0/24 assumed" in note and "keepalived.conf:26" in note for note in notes), notes
    assert any("target.path" in note for note in notes)


def test_their_timers_promise_a_weighted_failover(weighted):
    predictions = {p.scenario: p for p in weighted.predictions}
    # killall -0 every 2 s, fall 2: 2-4 s; 110 - 20 = 90 < 100: the backup takes over after its skew
    # discards the lower adverts: its master down interval 3 x 1 + 0.61 = 3.61 s after the last advert before
    assert (predictions["haproxy-kill"].low, predictions["haproxy-kill"].high) == pytest.approx((4.609375, 7.609375))
    assert (predictions["halt-master"].low, predictions["halt-master"].high) == pytest.approx((2.609375, 3.609375))
    assert predictions["keepalived-stop"].high == pytest.approx(0.609375)
    assert predictions["haproxy-freeze"].never_recovers  # killall -0 passes a frozen HAProxy
    assert predictions["backend-down"].high == pytest.approx(9.0)  # 3 x 3000 ms
    assert weighted.topology["imported"]["predictions"][0]["scenario"] == "halt-master"
    rows = dict((scenario, window) for scenario, window, _ in prediction_rows(weighted.predictions))
    assert rows["haproxy-kill"] == "4.61-7.61 s" and rows["haproxy-freeze"] == "never recovers"


def test_a_weight_that_cannot_reorder_the_priorities_never_moves_the_vip():
    settings = {"vrrp": {"version": 2, "advert_int": 1}, "track": {"mechanism": "script", "interval": 2, "fall": 2,
                                                                   "rise": 2, "weight": -5}}
    stuck = theory.expected_outage("haproxy-kill", settings, backup_priority=100, master_priority=110)
    assert stuck.never_recovers and "105" in stuck.formula
    held = theory.expected_outage("haproxy-kill", {**settings, "track": {**settings["track"], "weight": -20}},
                                  backup_priority=100, master_priority=110, preempt=False)
    assert held.never_recovers and "nopreempt" in held.formula
    untracked = theory.expected_outage("haproxy-kill", {**settings, "track": {"mechanism": "none"}}, 100, 110)
    assert untracked.never_recovers
    external = theory.expected_outage("haproxy-kill", {**settings, "track": {"mechanism": "external"}}, 100, 110)
    assert math.isnan(external.high)


def test_a_node_whose_address_is_in_no_config_is_asked_for(tmp_path):
    with pytest.raises(ChaoslabError, match=r"--address alpha=ADDRESS"):
        import_pair(sources.read_pair(WEIGHTED))


def test_a_folder_not_laid_out_as_a_pair_says_the_layout(tmp_path):
    shutil.copytree(WEIGHTED / "alpha", tmp_path / "alpha")
    (tmp_path / "alpha" / "haproxy" / "haproxy.cfg").unlink()
    with pytest.raises(ChaoslabError, match=r"holds 1 .*alpha/haproxy/haproxy.cfg is missing.*DIR/<node>/keepalived"):
        sources.node_files(tmp_path)


def test_what_each_node_configures_is_kept_with_the_topology(weighted):
    alpha = weighted.topology["imported"]["configured"]["alpha"]
    assert alpha["keepalived"]["adverts"] == "multicast" and alpha["keepalived"]["auth_type"] == "PASS"
    assert alpha["keepalived"]["vips"] == [{"address": "172.20.5.50/32", "interface": "bond0"}]
    assert alpha["keepalived"]["track_scripts"] == [{"name": "chk_haproxy", "script": "/usr/bin/killall -0 haproxy",
                                                     "interval": 2, "fall": 2, "rise": 2, "weight": -20}]
    assert alpha["keepalived"]["track_interfaces"] == ["bond0"]
    assert alpha["haproxy"]["frontends"] == [{"name": "web", "kind": "listen", "mode": "http",
                                              "binds": [{"address": "172.20.5.50", "port": 8080, "tls": False}]}]
    assert [server["inter_ms"] for server in alpha["haproxy"]["backend"]["servers"]] == [3000.0, 3000.0]
    assert weighted.topology["imported"]["configured"]["bravo"]["keepalived"]["state"] == "BACKUP"
