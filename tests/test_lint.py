"""The linter of a pair's keepalived.conf and haproxy.cfg: each rule on a minimal pair, written as
text, parsed by the real parsers and mapped by the model, as `chaoslab` reads a user's pair."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from chaoslab.configs import haproxy, keepalived
from chaoslab.configs.lint import Finding, exit_status, format_findings, lint
from chaoslab.configs.model import LoadBalancerConfig, haproxy_config, keepalived_config

SECRET = "s3cr3tpw"
NODES = ("lb1", "lb2")

KEEPALIVED = """\
global_defs {
    router_id NODE
    enable_script_security
    script_user root
    vrrp_garp_master_refresh 60
}

vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
    interval 1
    fall 2
    rise 2
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority PRIORITY
    advert_int 1
    unicast_src_ip SELF
    unicast_peer {
        PEER
    }
    authentication {
        auth_type PASS
        auth_pass SECRET
    }
    virtual_ipaddress {
        10.0.0.100/24 dev eth0
    }
    track_script {
        chk_haproxy
    }
}
"""

HAPROXY = """\
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout

frontend web
    bind *:80
    default_backend app

backend app
    balance roundrobin
    server web1 10.0.1.21:80 check inter 2s fall 3 rise 2
    server web2 10.0.1.22:80 check inter 2s fall 3 rise 2
"""

PROGRAMS = {"/usr/bin/killall": "/usr/bin/killall", "killall": "/usr/bin/killall", "bash": "/usr/bin/bash",
            "/bin/bash": "/bin/bash", "/bin/sh": "/bin/sh"}


def fake_which(name: str) -> str | None:
    """The programs the test pretends a node has: nothing on this machine is looked at."""
    return PROGRAMS.get(name)


class Pair:
    """Two load balancers' folders in DIR/<node>/keepalived and DIR/<node>/haproxy, as sources.py lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        addresses = {"lb1": ("10.0.0.11", "10.0.0.12", "150"), "lb2": ("10.0.0.12", "10.0.0.11", "100")}
        self.keepalived = {}
        for node, (own, peer, priority) in addresses.items():
            text = KEEPALIVED.replace("NODE", node).replace("SELF", own).replace("PEER", peer)
            self.keepalived[node] = text.replace("PRIORITY", priority).replace("SECRET", SECRET)
        self.haproxy = dict.fromkeys(NODES, HAPROXY)
        self.scripts: dict[tuple[str, str], tuple[str, int]] = {}

    def edit(self, old: str, new: str, nodes=NODES, daemon: str = "keepalived") -> None:
        texts = self.keepalived if daemon == "keepalived" else self.haproxy
        for node in nodes:
            assert old in texts[node], f"{old!r} is not in {node}'s {daemon} config"
            texts[node] = texts[node].replace(old, new, 1)

    def script(self, node: str, name: str, text: str = "#!/bin/sh\nexit 0\n", mode: int = 0o755) -> None:
        self.scripts[(node, name)] = (text, mode)

    def keepalived_path(self, node: str) -> Path:
        return self.root / node / "keepalived" / "keepalived.conf"

    def haproxy_path(self, node: str) -> Path:
        return self.root / node / "haproxy" / "haproxy.cfg"

    def where(self, node: str, needle: str, daemon: str = "keepalived", occurrence: int = 1) -> str:
        """file:line of the line holding needle (its nth occurrence) in a node's config."""
        text = (self.keepalived if daemon == "keepalived" else self.haproxy)[node]
        path = self.keepalived_path(node) if daemon == "keepalived" else self.haproxy_path(node)
        lines = [number for number, line in enumerate(text.splitlines(), start=1)
                 if line.strip().startswith(needle.strip())]
        return f"{path}:{lines[occurrence - 1]}"

    def read(self) -> list[LoadBalancerConfig]:
        configs = []
        for node in NODES:
            for path, text in ((self.keepalived_path(node), self.keepalived[node]),
                               (self.haproxy_path(node), self.haproxy[node])):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            for (owner, name), (text, mode) in self.scripts.items():
                if owner == node:
                    script = self.keepalived_path(node).parent / name
                    script.write_text(text)
                    os.chmod(script, mode)
            parsed = keepalived.parse(self.keepalived_path(node), config_id=node)
            configs.append(LoadBalancerConfig(node, keepalived_config(parsed),
                                              haproxy_config(haproxy.parse(self.haproxy_path(node)))))
        return configs

    def lint(self, **options) -> list[Finding]:
        options.setdefault("which", fake_which)
        options.setdefault("files", {node: self.root / node for node in NODES})
        return lint(self.read(), **options)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return Pair(tmp_path / "pair")


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [finding for finding in findings if finding.rule == rule]


def one(findings: list[Finding], rule: str, severity: str, where: str) -> Finding:
    """The single finding of that rule, checked for its severity and its file:line."""
    found = only(findings, rule)
    assert len(found) == 1, f"{rule}: {format_findings(findings)}"
    assert found[0].severity == severity, format_findings(found)
    assert str(found[0].place) == where, format_findings(found)
    assert found[0].consequence and found[0].fix
    return found[0]


def problems(findings: list[Finding]) -> list[str]:
    return [f"{f.severity} {f.rule} {f.place}" for f in findings if f.severity != "info"]


# ---- the clean pair, the output ------------------------------------------------------------------

def test_a_clean_pair_has_no_error_and_no_warning(pair):
    findings = pair.lint()
    assert problems(findings) == []
    assert exit_status(findings) == 0
    assert {f.rule for f in findings} == {"track-timing", "check-timing"}


def test_the_detection_windows_are_reported(pair):
    findings = pair.lint()
    track = next(f for f in only(findings, "track-timing") if f.node == "lb1")
    assert str(track.place) == pair.where("lb1", "        chk_haproxy")
    assert "every 1 s, fall 2" in track.message and "1-2 s" in track.message
    assert "lb2 (priority 100) is the backup" in track.consequence
    assert "the backup waits its skew (256-100)/256 s = 0.61 s: outage 1.61-2.61 s" in track.consequence  # VRRPv2
    check = next(f for f in only(findings, "check-timing") if f.node == "lb1")
    assert "3 x 2 s = 6.00 s" in check.message
    assert str(check.place) == pair.where("lb1", "server web1", "haproxy")


def test_format_findings_gives_one_block_per_finding_errors_first(pair):
    pair.edit("virtual_router_id 51", "virtual_router_id 52", nodes=["lb2"])
    pair.edit("    fall 2\n", "    fall 2\n    timeout 3\n")
    findings = pair.lint()
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=("error", "warning", "info").index)
    blocks = format_findings(findings)
    assert len(blocks) == len(findings)
    first = blocks[0].splitlines()
    assert first[0] == (f"ERROR {pair.where('lb1', 'virtual_router_id')} [vrid-mismatch] "
                        f"lb1's VI_1 has virtual_router_id 51, lb2's VI_1 ({pair.where('lb2', 'virtual_router_id')}) has 52")
    assert first[1].startswith("    consequence: ") and "split brain" in first[1]
    assert first[2].startswith("    fix: ")
    assert exit_status(findings) == 1


def test_the_password_never_appears(pair):
    """Mismatched, truncated and quoted by a script line: the value is in no finding."""
    long_one, other = "averylongpassword1", "averylongpassword2"
    pair.edit(f"auth_pass {SECRET}", f"auth_pass {long_one}", nodes=["lb1"])
    pair.edit(f"auth_pass {SECRET}", f"auth_pass {other}", nodes=["lb2"])
    pair.edit('script "/usr/bin/killall -0 haproxy"', f'script "/etc/keepalived/check.sh {long_one}"', nodes=["lb1"])
    pair.script("lb1", "check.sh", mode=0o757)
    findings = pair.lint()
    text = "\n".join(format_findings(findings))
    assert long_one not in text and other not in text and "averylong" not in text
    assert {"auth-pass-truncated", "auth-pass-match-truncated", "script-insecure"} <= {f.rule for f in findings}
    pair.edit(f"auth_pass {other}", f"auth_pass {SECRET}", nodes=["lb2"])
    text = "\n".join(format_findings(pair.lint()))
    assert SECRET not in text and long_one not in text
    assert "[auth-pass-mismatch]" in text and "differ" in text


def test_lint_compares_two_nodes():
    with pytest.raises(ValueError, match="two load balancers"):
        lint([])


# ---- 1. what both nodes' adverts must agree on ----------------------------------------------------

def test_virtual_router_ids_that_differ(pair):
    pair.edit("virtual_router_id 51", "virtual_router_id 52", nodes=["lb2"])
    finding = one(pair.lint(), "vrid-mismatch", "error", pair.where("lb1", "virtual_router_id"))
    assert "51" in finding.message and "52" in finding.message and "both become MASTER" in finding.consequence


def test_auth_types_that_differ(pair):
    pair.edit("auth_type PASS", "auth_type AH", nodes=["lb2"])
    finding = one(pair.lint(), "auth-type-mismatch", "error", pair.where("lb1", "auth_type"))
    assert "auth_type PASS on lb1, AH on lb2" in finding.message


def test_passwords_that_differ(pair):
    pair.edit(f"auth_pass {SECRET}", "auth_pass other", nodes=["lb2"])
    finding = one(pair.lint(), "auth-pass-mismatch", "error", pair.where("lb1", "auth_pass"))
    assert "differ" in finding.message and "received an invalid passwd" in finding.message


def test_advert_intervals_that_differ_under_vrrp2(pair):
    pair.edit("advert_int 1", "advert_int 3", nodes=["lb2"])
    finding = one(pair.lint(), "advert-int-mismatch", "error", pair.where("lb1", "advert_int"))
    assert "advert_int 1 s on lb1" in finding.message and "3 s on lb2" in finding.message


def test_advert_intervals_that_differ_under_vrrp3_only_change_the_timing(pair):
    pair.edit("    router_id", "    vrrp_version 3\n    router_id")
    pair.edit("        auth_type PASS\n", "")
    pair.edit(f"        auth_pass {SECRET}\n", "")
    pair.edit("advert_int 1", "advert_int 0.5", nodes=["lb2"])
    finding = one(pair.lint(), "advert-int-mismatch", "warning", pair.where("lb1", "advert_int"))
    assert "0.5 s on lb2" in finding.message and "adopts the master's interval" in finding.consequence


def test_vrrp_versions_that_differ(pair):
    pair.edit("    router_id", "    vrrp_version 3\n    router_id", nodes=["lb2"])
    findings = pair.lint()
    finding = one(findings, "version-mismatch", "error", pair.where("lb2", "vrrp_version"))
    assert "VRRP version 2 on lb1 (the default), 3 on lb2" in finding.message


def test_vip_lists_that_differ(pair):
    pair.edit("10.0.0.100/24 dev eth0", "10.0.0.100/24 dev eth0\n        10.0.0.101/24 dev eth0", nodes=["lb2"])
    finding = one(pair.lint(), "vip-mismatch", "error", pair.where("lb1", "10.0.0.100/24"))
    assert "only lb2 has 10.0.0.101" in finding.message


def test_vip_prefixes_that_differ(pair):
    pair.edit("10.0.0.100/24", "10.0.0.100/32", nodes=["lb2"])
    finding = one(pair.lint(), "vip-prefix-mismatch", "warning", pair.where("lb1", "10.0.0.100/24"))
    assert "/24 on lb1, /32 on lb2" in finding.message


def test_a_vip_on_another_interface(pair):
    pair.edit("10.0.0.100/24 dev eth0", "10.0.0.100/24 dev eth1", nodes=["lb2"])
    finding = one(pair.lint(), "vip-interface-mismatch", "error", pair.where("lb1", "10.0.0.100/24"))
    assert "on eth0 on lb1" in finding.message and "on eth1 on lb2" in finding.message


def test_interface_names_may_differ_between_hosts(pair):
    pair.edit("interface eth0", "interface ens3", nodes=["lb2"])
    pair.edit("10.0.0.100/24 dev eth0", "10.0.0.100/24 dev ens3", nodes=["lb2"])
    assert problems(pair.lint()) == []


# ---- 2. auth_pass longer than 8 characters ----------------------------------------------------------

def test_a_password_longer_than_8_characters(pair):
    pair.edit(f"auth_pass {SECRET}", "auth_pass 12345678901")
    findings = pair.lint()
    finding = one([f for f in findings if f.node == "lb1"], "auth-pass-truncated", "warning",
                  pair.where("lb1", "auth_pass"))
    assert "is 11 characters" in finding.message and "Truncating auth_pass to 8 characters" in finding.message
    assert not only(findings, "auth-pass-mismatch")


def test_passwords_differing_after_the_8th_character_match_on_the_wire(pair):
    pair.edit(f"auth_pass {SECRET}", "auth_pass 12345678AAA", nodes=["lb1"])
    pair.edit(f"auth_pass {SECRET}", "auth_pass 12345678BBB", nodes=["lb2"])
    findings = pair.lint()
    finding = one(findings, "auth-pass-match-truncated", "info", pair.where("lb1", "auth_pass"))
    assert "match on the wire" in finding.message
    assert not only(findings, "auth-pass-mismatch")


def test_authentication_under_vrrp3_is_ignored(pair):
    pair.edit("    router_id", "    vrrp_version 3\n    router_id")
    findings = pair.lint()
    finding = one([f for f in findings if f.node == "lb1"], "auth-ignored-v3", "warning", pair.where("lb1", "auth_type"))
    assert "VRRP version 3 does not support authentication" in finding.message


def test_an_auth_type_keepalived_does_not_know(pair):
    pair.edit("auth_type PASS", "auth_type pass", nodes=["lb2"])
    findings = pair.lint()
    finding = one(findings, "auth-type-unknown", "warning", pair.where("lb2", "auth_type"))
    assert "`auth_type pass`" in finding.message and finding.fix == "write `auth_type PASS`"
    assert "auth_type PASS on lb1, none on lb2" in one(findings, "auth-type-mismatch", "error",
                                                       pair.where("lb1", "auth_type")).message


# ---- 3. unicast -----------------------------------------------------------------------------------

def test_unicast_peers_that_do_not_list_the_other_node(pair):
    pair.edit("        10.0.0.12\n", "        10.0.0.13\n", nodes=["lb1"])
    finding = one(pair.lint(), "unicast-peer-asymmetric", "error", pair.where("lb1", "10.0.0.13"))
    assert "(10.0.0.13) does not list lb2's unicast_src_ip 10.0.0.12" in finding.message


def test_one_node_unicast_the_other_multicast(pair):
    pair.edit("    unicast_src_ip 10.0.0.12\n    unicast_peer {\n        10.0.0.11\n    }\n", "", nodes=["lb2"])
    finding = one(pair.lint(), "unicast-mismatch", "error", pair.where("lb1", "        10.0.0.12"))
    assert "lb1 sends its adverts unicast" in finding.message and "lb2 multicast" in finding.message


# ---- 4. tracking ------------------------------------------------------------------------------------

def test_a_negative_weight_too_small_to_reorder_the_priorities(pair):
    pair.edit("    rise 2\n", "    rise 2\n    weight -20\n")
    finding = one(pair.lint(), "track-weight-too-small", "error", pair.where("lb1", "        chk_haproxy"))
    assert "from 150 to 130, not below lb2's 100" in finding.message
    assert "`weight -51`" in finding.fix


def test_a_negative_weight_large_enough_is_fine(pair):
    pair.edit("    rise 2\n", "    rise 2\n    weight -60\n")
    assert problems(pair.lint()) == []


def test_a_positive_weight_that_cannot_reorder_the_priorities(pair):
    pair.edit("        chk_haproxy\n", "        chk_haproxy weight 20\n")
    finding = one(pair.lint(), "track-weight-too-small", "error", pair.where("lb1", "        chk_haproxy"))
    assert "adds 20 while it succeeds" in finding.message and "from 170 to 150, not below lb2's 120" in finding.message
    assert "`weight 51`" in finding.fix


def test_a_weight_with_nopreempt(pair):
    pair.edit("    rise 2\n", "    rise 2\n    weight -60\n")
    pair.edit("    advert_int 1\n", "    advert_int 1\n    nopreempt\n")
    findings = pair.lint()
    finding = one([f for f in findings if f.node == "lb1"], "track-weight-nopreempt", "error",
                  pair.where("lb1", "        chk_haproxy"))
    assert "lb2's VI_1 has nopreempt" in finding.message and "never takes the VIP" in finding.consequence


def test_nopreempt_without_weight_is_fine(pair):
    pair.edit("    advert_int 1\n", "    advert_int 1\n    nopreempt\n")
    assert problems(pair.lint()) == []


def test_an_instance_that_tracks_nothing(pair):
    pair.edit("    track_script {\n        chk_haproxy\n    }\n", "", nodes=["lb2"])
    finding = one(pair.lint(), "track-none", "warning", pair.where("lb2", "vrrp_instance"))
    assert "a dead HAProxy on the master never moves the VIP" in finding.consequence


def test_a_tracked_script_nobody_defines(pair):
    pair.edit("        chk_haproxy\n", "        chk_haproxy\n        chk_nginx\n", nodes=["lb1"])
    finding = one(pair.lint(), "track-script-undefined", "error", pair.where("lb1", "chk_nginx"))
    assert "track script chk_nginx not found" in finding.message


def test_weights_in_a_sync_group_are_dropped(pair):
    pair.edit("    rise 2\n", "    rise 2\n    weight -60\n", nodes=["lb1"])
    pair.keepalived["lb1"] += "\nvrrp_sync_group G1 {\n    group {\n        VI_1\n    }\n}\n"
    finding = one(pair.lint(), "track-weight-ignored", "error", pair.where("lb1", "        chk_haproxy"))
    assert "vrrp_sync_group G1" in finding.message and "sync_group_tracking_weight" in finding.fix


def test_a_track_timeout_longer_than_the_interval(pair):
    pair.edit("    fall 2\n", "    fall 2\n    timeout 3\n", nodes=["lb1"])
    finding = one(pair.lint(), "track-timeout-long", "warning", pair.where("lb1", "vrrp_script"))
    assert "timeout 3 s is longer than its interval 1 s" in finding.message


# ---- 5., 6. what Keepalived clears or rounds -----------------------------------------------------------

def test_nopreempt_with_state_master(pair):
    pair.edit("state BACKUP", "state MASTER\n    nopreempt", nodes=["lb1"])
    finding = one(pair.lint(), "nopreempt-state-master", "error", pair.where("lb1", "nopreempt"))
    assert "nopreempt will not work with initial state MASTER - clearing" in finding.message
    assert "state BACKUP" in finding.fix


def test_a_fractional_advert_int_under_vrrp2(pair):
    pair.edit("advert_int 1", "advert_int 0.5")
    findings = pair.lint()
    finding = one([f for f in findings if f.node == "lb1"], "advert-int-fraction", "warning",
                  pair.where("lb1", "advert_int"))
    assert "advert_int 0.5 under VRRPv2" in finding.message and "uses 1 s" in finding.message
    assert "lb1 declares the master dead after 3.41 s" in finding.consequence  # 3 x 1 + (256 - 150)/256
    assert not only(findings, "advert-int-mismatch")


def test_fractional_advert_ints_that_round_alike_match(pair):
    pair.edit("advert_int 1", "advert_int 1.4", nodes=["lb2"])
    findings = pair.lint()
    assert not only(findings, "advert-int-mismatch")
    one(findings, "advert-int-fraction", "warning", pair.where("lb2", "advert_int"))


def test_a_fractional_script_interval(pair):
    pair.edit("interval 1", "interval 0.5", nodes=["lb1"])
    finding = one(pair.lint(), "script-interval-fraction", "warning", pair.where("lb1", "vrrp_script"))
    assert "interval 0.5" in finding.message and "uses interval 1 s" in finding.message


# ---- 7. check scripts ------------------------------------------------------------------------------

def test_shell_syntax_keepalived_cannot_run(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "< /dev/tcp/127.0.0.1/80"', nodes=["lb1"])
    finding = one(pair.lint(), "script-shell-syntax", "error", pair.where("lb1", "vrrp_script"))
    assert "Cannot find script < in path - disabling" in finding.message
    assert "/bin/bash -c '< /dev/tcp/127.0.0.1/80'" in finding.fix
    assert not [f for f in only(pair.lint(), "track-timing") if f.node == "lb1"]  # a disabled script times nothing


def test_shell_operators_passed_as_arguments(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "/usr/bin/killall -0 haproxy && echo ok"', nodes=["lb1"])
    finding = one(pair.lint(), "script-shell-syntax", "error", pair.where("lb1", "vrrp_script"))
    assert "passing && to /usr/bin/killall as plain arguments" in finding.message


def test_shell_syntax_under_sh_c_is_fine(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', """script "/bin/bash -c '</dev/tcp/127.0.0.1/80'\"""")
    assert problems(pair.lint()) == []


def test_dev_tcp_left_to_bin_sh(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "</dev/tcp/127.0.0.1/80"', nodes=["lb1"])
    finding = one(pair.lint(), "script-dev-tcp-sh", "warning", pair.where("lb1", "vrrp_script"))
    assert "/bin/sh -c" in finding.message


def test_an_unquoted_script_loses_its_arguments(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', "script /usr/bin/killall -0 haproxy", nodes=["lb1"])
    finding = one(pair.lint(), "script-unquoted", "error", pair.where("lb1", "script /usr/bin/killall"))
    assert "runs `/usr/bin/killall` without -0 haproxy" in finding.message


def test_a_script_missing_from_the_imported_files(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "/etc/keepalived/check_haproxy.sh"', nodes=["lb1"])
    finding = one(pair.lint(), "script-not-found", "error", pair.where("lb1", "vrrp_script"))
    assert "/etc/keepalived/check_haproxy.sh, which is not among lb1's files imported" in finding.message


def test_a_script_found_among_the_imported_files(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "/etc/keepalived/check_haproxy.sh"')
    for node in NODES:
        pair.script(node, "check_haproxy.sh")
    assert problems(pair.lint()) == []


def test_a_program_elsewhere_that_this_machine_lacks(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "/usr/local/bin/check-lb"', nodes=["lb1"])
    finding = one(pair.lint(), "script-not-found", "warning", pair.where("lb1", "vrrp_script"))
    assert "not among the files imported and not on this machine" in finding.message


def test_a_bare_name_looked_up_in_path(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "killall -0 haproxy"', nodes=["lb1"])
    finding = one(pair.lint(), "script-path-search", "info", pair.where("lb1", "vrrp_script"))
    assert "resolved by path search to `/usr/bin/killall`" in finding.message
    pair.edit('script "killall -0 haproxy"', 'script "pidof haproxy"', nodes=["lb1"])
    finding = one(pair.lint(), "script-not-found", "warning", pair.where("lb1", "vrrp_script"))
    assert "Cannot find script pidof in path - disabling" in finding.message


def test_scripts_without_script_security(pair):
    pair.edit("    enable_script_security\n", "", nodes=["lb2"])
    finding = one(pair.lint(), "script-security-off", "warning", pair.where("lb2", "global_defs"))
    assert "SECURITY VIOLATION - scripts are being executed but script_security not enabled." in finding.message


def test_a_script_anyone_may_write_under_script_security(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "/etc/keepalived/check_haproxy.sh"')
    for node in NODES:
        pair.script(node, "check_haproxy.sh", mode=0o757 if node == "lb1" else 0o755)
    finding = one(pair.lint(), "script-insecure", "error", pair.where("lb1", "vrrp_script"))
    assert "writable by anyone (mode -rwxr-xrwx)" in finding.message
    assert "Unsafe permissions found for script '/etc/keepalived/check_haproxy.sh' - disabling." in finding.message


def test_a_script_that_is_not_executable(pair):
    pair.edit('script "/usr/bin/killall -0 haproxy"', 'script "/etc/keepalived/check_haproxy.sh"')
    for node in NODES:
        pair.script(node, "check_haproxy.sh", mode=0o644 if node == "lb2" else 0o755)
    finding = one(pair.lint(), "script-not-executable", "error", pair.where("lb2", "vrrp_script"))
    assert "is not executable (mode -rw-r--r--)" in finding.message


# ---- 8. binding the VIP -------------------------------------------------------------------------------

def test_a_frontend_binding_the_vip(pair):
    pair.edit("bind *:80", "bind 10.0.0.100:80", daemon="haproxy")
    findings = pair.lint()
    finding = one([f for f in findings if f.node == "lb2"], "bind-nonlocal", "warning",
                  pair.where("lb2", "bind", "haproxy"))
    assert "binds the VIP 10.0.0.100:80 explicitly" in finding.message
    assert "net.ipv4.ip_nonlocal_bind=1" in finding.fix


def test_a_frontend_binding_the_vip_where_nonlocal_bind_is_off(pair):
    pair.edit("bind *:80", "bind 10.0.0.100:80", daemon="haproxy")
    sysctls = {"lb1": {"net.ipv4.ip_nonlocal_bind": "1"}, "lb2": {"net.ipv4.ip_nonlocal_bind": "0"}}
    finding = one(pair.lint(sysctls=sysctls), "bind-nonlocal", "error", pair.where("lb2", "bind", "haproxy"))
    assert "net.ipv4.ip_nonlocal_bind is 0 on lb2" in finding.message


def test_a_frontend_binding_the_vip_with_freebind(pair):
    pair.edit("bind *:80", "bind 10.0.0.100:80 freebind", daemon="haproxy")
    assert problems(pair.lint()) == []


# ---- 9. gratuitous ARP -------------------------------------------------------------------------------

def test_no_gratuitous_arp_refresh(pair):
    pair.edit("    vrrp_garp_master_refresh 60\n", "", nodes=["lb1"])
    finding = one(pair.lint(), "garp-refresh-none", "warning", pair.where("lb1", "vrrp_instance"))
    assert "split brain" in finding.consequence and "vrrp_garp_master_refresh 60" in finding.fix


def test_higher_prio_send_advert_also_reannounces(pair):
    pair.edit("    vrrp_garp_master_refresh 60\n", "    vrrp_higher_prio_send_advert\n")
    assert problems(pair.lint()) == []


# ---- 10., 11. HAProxy --------------------------------------------------------------------------------

def test_a_backend_without_checks(pair):
    pair.edit(" check inter 2s fall 3 rise 2\n    server web2", "\n    server web2", nodes=["lb1"], daemon="haproxy")
    pair.edit("10.0.1.22:80 check inter 2s fall 3 rise 2", "10.0.1.22:80", nodes=["lb1"], daemon="haproxy")
    finding = one(pair.lint(), "server-no-check", "warning", pair.where("lb1", "backend app", "haproxy"))
    assert "none of its servers (web1, web2) has `check`" in finding.message


def test_a_backend_without_redispatch_and_retry_on(pair):
    pair.edit("    option redispatch\n    retry-on conn-failure empty-response response-timeout\n", "",
              nodes=["lb2"], daemon="haproxy")
    finding = one(pair.lint(), "backend-no-redispatch", "warning", pair.where("lb2", "backend app", "haproxy"))
    assert "has no option redispatch and no retry-on" in finding.message
    assert "fall x inter = 6.00 s" in finding.consequence
    assert "`option redispatch` and `retry-on conn-failure empty-response response-timeout`" in finding.fix


# ---- 12. and the rest ----------------------------------------------------------------------------------

def test_one_virtual_router_id_twice_on_one_interface(pair):
    """Unicast and multicast instances are separate VRID spaces (vrrp.c check_vrid_conflicts)."""
    second = ("\nvrrp_instance VI_2 {\n    interface eth0\n    virtual_router_id 51\n    priority 100\n"
              "    virtual_ipaddress {\n        10.0.0.200/24\n    }\n}\n")
    pair.keepalived["lb1"] += second
    assert not only(pair.lint(), "vrid-duplicate")
    pair.edit("    unicast_src_ip 10.0.0.11\n    unicast_peer {\n        10.0.0.12\n    }\n", "", nodes=["lb1"])
    pair.edit("    unicast_src_ip 10.0.0.12\n    unicast_peer {\n        10.0.0.11\n    }\n", "", nodes=["lb2"])
    finding = one(pair.lint(), "vrid-duplicate", "error", pair.where("lb1", "virtual_router_id", occurrence=2))
    assert "VI_1 and VI_2 both use VRID 51 with IPv4 on interface eth0" in finding.message
    assert "refuses the configuration" in finding.consequence


def test_equal_priorities(pair):
    pair.edit("priority 150", "priority 100", nodes=["lb1"])
    finding = one(pair.lint(), "priority-equal", "warning", pair.where("lb1", "priority"))
    assert "same priority 100" in finding.message and "start order" in finding.consequence


def test_state_master_on_both_nodes(pair):
    pair.edit("state BACKUP", "state MASTER")
    finding = one(pair.lint(), "state-master-both", "warning", pair.where("lb1", "state"))
    assert "state MASTER on both lb1 and lb2" in finding.message


def test_a_state_keepalived_does_not_know(pair):
    pair.edit("state BACKUP", "state master", nodes=["lb1"])
    finding = one(pair.lint(), "state-unknown", "warning", pair.where("lb1", "state"))
    assert "unknown state 'master', defaulting to BACKUP" in finding.message and finding.fix == "write `state MASTER`"


def test_an_instance_on_one_node_only(pair):
    pair.keepalived["lb1"] += ("\nvrrp_instance VI_9 {\n    interface eth1\n    virtual_router_id 9\n"
                               "    track_script {\n        chk_haproxy\n    }\n"
                               "    virtual_ipaddress {\n        10.0.9.1/24\n    }\n}\n")
    finding = one(pair.lint(), "instance-unpaired", "warning", pair.where("lb1", "vrrp_instance VI_9"))
    assert "VIP 10.0.9.1/24" in finding.message


def test_every_rule_id_is_kebab_case_and_every_severity_known(pair):
    pair.edit("virtual_router_id 51", "virtual_router_id 52", nodes=["lb2"])
    pair.edit("    vrrp_garp_master_refresh 60\n", "")
    for finding in pair.lint():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", finding.rule)
        assert finding.severity in ("error", "warning", "info")


# ---- Keepalived's defaults, as the model gives them ----------------------------------------------------

def test_state_master_without_priority_is_the_address_owner(pair):
    """vrrp.c: no priority and state MASTER is priority 255; two owners are a configuration error."""
    pair.edit("state BACKUP", "state MASTER")
    pair.edit("    priority 150\n", "", nodes=["lb1"])
    pair.edit("    priority 100\n", "", nodes=["lb2"])
    findings = pair.lint()
    finding = one(findings, "priority-owner-both", "error", pair.where("lb1", "vrrp_instance"))
    assert "priority 255 (the address owner) on both nodes" in finding.message
    assert only(findings, "state-master-both")


def test_an_ipv6_instance_is_vrrp3_whatever_vrrp_version_says(pair):
    for node, own, peer in (("lb1", "10.0.0.11", "10.0.0.12"), ("lb2", "10.0.0.12", "10.0.0.11")):
        pair.edit(f"    unicast_src_ip {own}\n    unicast_peer {{\n        {peer}\n    }}\n", "", nodes=[node])
    pair.edit("10.0.0.100/24 dev eth0", "fd00::100/64 dev eth0")
    pair.edit("    router_id", "    vrrp_version 2\n    router_id")
    findings = pair.lint()
    assert {f.node for f in only(findings, "auth-ignored-v3")} == {"lb1", "lb2"}
    assert not only(findings, "version-mismatch")


def test_preempt_after_nopreempt_undoes_it(pair):
    pair.edit("state BACKUP", "state MASTER\n    nopreempt\n    preempt", nodes=["lb1"])
    assert not only(pair.lint(), "nopreempt-state-master")
