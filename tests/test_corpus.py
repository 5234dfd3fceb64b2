"""Real configs written by others (tests/data/configs, see its SOURCES.md), read as chaoslab reads a
user's: every Keepalived sample linted as if copied to both nodes of a pair (a common way to start),
and imported with one of HAProxy's examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaoslab.configs import haproxy, keepalived, lint
from chaoslab.configs.importer import import_pair
from chaoslab.configs.model import LoadBalancerConfig, haproxy_config, keepalived_config
from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology

CORPUS = Path(__file__).parent / "data" / "configs"
DEBIAN_HAPROXY = CORPUS / "haproxy" / "haproxy.cfg"
EDGE_HAPROXY = CORPUS / "haproxy" / "basic-config-edge.cfg"
# on both nodes, each sample's VRRP instances mirror each other: same state and priority twice
SAME_ON_BOTH = {"garp-refresh-none", "priority-equal", "state-master-both", "track-none"}
EXPECTED_RULES = {
    "keepalived.conf.SSL_GET": SAME_ON_BOTH,
    "keepalived.conf.conditional_conf": {"garp-refresh-none", "priority-equal", "script-security-off",
                                         "track-timeout-long", "track-timing"},
    "keepalived.conf.sample": {"garp-refresh-none", "track-none"},
    "keepalived.conf.track_interface": SAME_ON_BOTH,
    "keepalived.conf.vrrp": SAME_ON_BOTH,
    # `script "</dev/tcp/127.0.0.1/22"` is run by dash, which has no /dev/tcp; /usr/local/bin scripts are not here
    "keepalived.conf.vrrp.localcheck": SAME_ON_BOTH | {"script-dev-tcp-sh", "script-not-found", "script-security-off",
                                                       "track-timing"},
    "keepalived.conf.vrrp.lvs_syncd": SAME_ON_BOTH,
    "keepalived.conf.vrrp.routes": SAME_ON_BOTH,
    "keepalived.conf.vrrp.rules": SAME_ON_BOTH,
    "keepalived.conf.vrrp.scripts": SAME_ON_BOTH | {"script-security-off"},
    "keepalived.conf.vrrp.static_ipaddress": SAME_ON_BOTH,
    "keepalived.conf.vrrp.sync": SAME_ON_BOTH,
}
SAMPLES = sorted(path.name for path in (CORPUS / "keepalived").iterdir())


def same_on_both(sample: str, haproxy_cfg: Path = DEBIAN_HAPROXY) -> list[LoadBalancerConfig]:
    config = keepalived_config(keepalived.parse(CORPUS / "keepalived" / sample, config_id="lb"))
    proxy = haproxy_config(haproxy.parse(haproxy_cfg))
    return [LoadBalancerConfig("lb1", config, proxy), LoadBalancerConfig("lb2", config, proxy)]


def test_the_corpus_holds_every_keepalived_sample():
    assert len(SAMPLES) == 25 and set(EXPECTED_RULES) <= set(SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES)
def test_each_keepalived_sample_linted_on_both_nodes(sample: str):
    findings = lint.lint(same_on_both(sample), which=lambda program: None)
    assert {finding.rule for finding in findings} == EXPECTED_RULES.get(sample, set())
    for finding in findings:
        assert finding.place is None or finding.place.file.name in (sample, DEBIAN_HAPROXY.name), finding
        assert finding.consequence and finding.fix


def test_a_sample_without_vrrp_cannot_be_imported_and_says_why():
    with pytest.raises(ChaoslabError, match="no vrrp_instance with a virtual_ipaddress"):
        import_pair(same_on_both("keepalived.conf.HTTP_GET.port", EDGE_HAPROXY), {"lb1": "192.168.200.2"})


def test_the_vrrp_sample_imports_with_haproxys_edge_example():
    """keepalived.conf.vrrp (three instances) with basic-config-edge.cfg (bind :80, four servers on
    192.0.2.0/24, cookies): the first instance is measured, the others are named."""
    pair = same_on_both("keepalived.conf.vrrp", EDGE_HAPROXY)
    imported = import_pair(pair, {"lb1": "192.168.200.2", "lb2": "192.168.200.3"})
    topology = Topology(imported.topology)
    assert topology.vip == "192.168.200.16" and topology.port == 80 and topology.vrrp_instance == "VI_1"
    assert [spec.name for spec in topology.webservers] == ["srv1", "srv2", "srv3", "srv4"]
    assert {name: str(subnet) for name, subnet in topology.networks.items()} == {
        "vip": "192.168.200.0/24", "servers": "192.0.2.0/24"}
    assert topology.target().backends == (("srv1", "s1"), ("srv2", "s2"), ("srv3", "s3"), ("srv4", "s4"))
    notes = [str(note) for note in imported.notes]
    assert any("VI_2" in note and "not measured" in note for note in notes)
    assert any("VI_3" in note and "not measured" in note for note in notes)
    assert any("frontend stats is not measured" in note for note in notes)
