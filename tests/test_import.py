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
    assert any("target.path" in note and note.startswith(f"{WEIGHTED}/alpha/haproxy/haproxy.cfg:13:") for note in notes)


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


def variant(tmp_path: Path, keepalived: dict[str, str] | None = None, haproxy: dict[str, str] | None = None,
            nodes: tuple[str, ...] = ("alpha", "bravo")) -> Path:
    """A copy of the weighted pair with texts replaced in the named nodes' files."""
    pair = shutil.copytree(WEIGHTED, tmp_path / "pair")
    for node in nodes:
        for path, edits in ((pair / node / "keepalived/keepalived.conf", keepalived or {}),
                            (pair / node / "haproxy/haproxy.cfg", haproxy or {})):
            text = path.read_text()
            for old, new in edits.items():
                assert old in text, old
                text = text.replace(old, new)
            path.write_text(text)
    return pair


def imported_variant(tmp_path: Path, **edits):
    return import_pair(sources.read_pair(variant(tmp_path, **edits)), ADDRESSES)


def test_a_positive_weight_moves_the_vip_when_its_loss_reorders_the_priorities(tmp_path):
    # +20 while the check passes: 130 and 120; the failing master falls back to 110, below 120
    moved = imported_variant(tmp_path, keepalived={"weight -20": "weight 20"})
    kill = {p.scenario: p for p in moved.predictions}["haproxy-kill"]
    assert "drops from 130 to 110, below the backup's 120" in kill.formula
    # (256-120)/256 s of skew: the master down interval 3.53 s
    assert (kill.low, kill.high) == pytest.approx((2 + 3 + 136 / 256 - 1, 4 + 3 + 136 / 256))
    stuck = theory.expected_outage("haproxy-kill", {"vrrp": {"version": 2, "advert_int": 1}, "track": {
        "mechanism": "script", "interval": 2, "fall": 2, "weight": 5}}, backup_priority=100, master_priority=110)
    assert stuck.never_recovers and "drops from 115 to 110, not below the backup's 105" in stuck.formula


def test_nopreempt_keepalived_clears_is_not_taken_for_nopreempt(tmp_path):
    """Keepalived ignores nopreempt with state MASTER: written there alone, the pair still preempts."""
    pair = variant(tmp_path, keepalived={"    state MASTER\n": "    state MASTER\n    nopreempt\n"}, nodes=("alpha",))
    assert import_pair(sources.read_pair(pair), ADDRESSES).topology["vrrp"]["preempt"] is True


def test_weights_keepalived_drops_in_a_sync_group_leave_haproxy_untracked(tmp_path):
    group = "vrrp_sync_group VG {\n    group {\n        VI_WEB\n    }\n}\n\nvrrp_instance VI_WEB {"
    result = imported_variant(tmp_path, keepalived={"vrrp_instance VI_WEB {": group})
    assert result.topology["settings"]["track"] == {"mechanism": "none"}
    assert {p.scenario: p for p in result.predictions}["haproxy-kill"].never_recovers
    assert any("ignores the weighted track script chk_haproxy" in str(note) for note in result.notes)


def test_haproxy_addresses_in_their_other_spellings(tmp_path):
    result = imported_variant(tmp_path, haproxy={
        "    bind 172.20.5.50:8080\n": "    bind 127.0.0.1:9000\n    bind ipv4@172.20.5.50:8080\n",
        "server shop1 172.20.5.21:80 check inter 3s": "server shop1 ipv4@172.20.5.21:80 inter 3s",
        "server shop2 172.20.5.22:80 check inter 3s": "server shop2 172.20.5.22:80 inter 3s",
        "    balance leastconn\n": "    balance leastconn\n    default-server check\n"})
    topology = Topology(result.topology)
    assert topology.port == 8080  # the VIP's bind, not the first
    assert [spec.address("vip") for spec in topology.webservers] == ["172.20.5.21", "172.20.5.22"]
    assert not any("checks none" in str(note) for note in result.notes)  # default-server check


def test_servers_that_are_sockets_or_names_are_named(tmp_path):
    with pytest.raises(ChaoslabError, match=r"servers shop1 are sockets \(unix@"):
        imported_variant(tmp_path, haproxy={"server shop1 172.20.5.21:80": "server shop1 unix@/run/shop.sock"})


def test_a_listen_section_without_servers_uses_its_default_backend(tmp_path):
    moved = "    default_backend shop\n\nbackend shop\n    cookie SRVID insert indirect nocache\n"
    result = imported_variant(tmp_path, haproxy={"    cookie SRVID insert indirect nocache\n": moved})
    assert [n["name"] for n in result.topology["nodes"] if n["role"] == "webserver"] == ["shop1", "shop2"]


def test_a_password_quoted_by_a_script_stays_out_of_the_topology(tmp_path):
    result = imported_variant(tmp_path, keepalived={'"/usr/bin/killall -0 haproxy"': '"/usr/local/bin/chk longsecret9"'})
    text = json.dumps(result.topology)
    assert "longsecret9" not in text and "/usr/local/bin/chk <auth_pass>" in text


def test_an_ipv6_vip_is_imported_without_walking_its_network(tmp_path):
    pair = variant(tmp_path, keepalived={"        172.20.5.50\n": "        fd00:20:5::50\n"},
                   haproxy={"bind 172.20.5.50:8080": "bind [fd00:20:5::50]:8080"})
    result = import_pair(sources.read_pair(pair), {"alpha": "fd00:20:5::11", "bravo": "fd00:20:5::12"})
    assert result.topology["networks"]["vip"] == {"subnet": "fd00:20:5::/64"}
    assert result.topology["client"]["interfaces"][0]["address"] == "fd00:20:5:0:ffff:ffff:ffff:ffff"
    assert result.topology["vip"] == {"address": "fd00:20:5::50", "network": "vip", "port": 8080}


def test_the_rehearsal_takes_no_address_a_config_names(tmp_path):
    result = imported_variant(tmp_path, keepalived={"        172.20.5.50\n": "        172.20.5.50\n        172.20.5.254\n"})
    assert result.topology["client"]["interfaces"][0]["address"] == "172.20.5.253"
