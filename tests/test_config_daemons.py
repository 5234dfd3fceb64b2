"""The daemons' own verdicts on corpus files (tests/data/configs): `keepalived --config-test` and
`haproxy -c`, each in a network namespace of its own (root, and the Debian 12 packages: Keepalived
2.2.7, HAProxy 2.6)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chaoslab.commands import run
from chaoslab.configs import daemons
from chaoslab.errors import ChaoslabError

CORPUS = Path(__file__).parent / "data" / "configs"
SYNTHETIC = CORPUS / "synthetic"
LB = SYNTHETIC / "keepalived" / "lb.conf"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the checks make network namespaces (unshare): root only")
needs_keepalived = pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")


def host_state() -> tuple[str, str]:
    """This machine's interfaces and mounts, to show that a check left them alone."""
    return run(["ip", "-o", "link", "show"]).stdout, Path("/proc/self/mountinfo").read_text()


@needs_root
@needs_keepalived
@pytest.mark.parametrize("config_id", ["lb1", "lb2"])
def test_keepalived_accepts_the_synthetic_pair_with_its_interface(config_id: str):
    before = host_state()
    verdict = daemons.keepalived_verdict(LB, ["eth1"], config_id=config_id)
    assert (verdict.exit_status, verdict.ok, verdict.warnings_only, verdict.messages) == (0, True, False, ())
    assert verdict.summary == "keepalived --config-test: no complaint"
    assert "keepalived --config-test --use-file \"$config\" --config-id \"$config_id\"" in verdict.command
    assert verdict.command.endswith(f"{LB.absolute()} {config_id} 1 0 eth1")
    assert host_state() == before


@needs_root
@needs_keepalived
def test_keepalived_without_the_interface_complains():
    verdict = daemons.keepalived_verdict(LB, [], config_id="lb1")
    assert (verdict.exit_status, verdict.ok, verdict.warnings_only) == (5, False, False)
    assert f"({LB.absolute()}: Line 25) WARNING - interface eth1 for vrrp_instance VI_1 doesn't exist" in verdict.messages
    assert "Non-existent interface specified in configuration" in verdict.messages
    assert verdict.summary.startswith("keepalived --config-test: exit 5: (")
    assert "a missing interface can also end here" in verdict.meaning


@needs_root
@needs_keepalived
def test_keepalived_exits_6_for_scripts_without_script_security_and_still_runs_them():
    verdict = daemons.keepalived_verdict(SYNTHETIC / "keepalived" / "script-without-security.conf", ["eth1"])
    assert (verdict.exit_status, verdict.ok, verdict.warnings_only) == (6, False, True)
    assert verdict.messages == ("SECURITY VIOLATION - scripts are being executed but script_security not enabled.",)
    assert "keepalived still runs them" in verdict.meaning
    assert verdict.summary == ("keepalived --config-test: exit 6, scripts run without script security (keepalived "
                               "still runs them): set enable_script_security in global_defs")


@needs_root
@needs_keepalived
def test_keepalived_net_namespace_is_the_checks_own():
    """Without a /var/run/netns/high, keepalived -t would stop silently with exit 0; in the check's
    namespace it reads on and finds the sample's script missing."""
    verdict = daemons.keepalived_verdict(CORPUS / "keepalived" / "keepalived.conf.conditional_conf",
                                         ["eth0", "eth2", "eth3"], config_id="high")
    assert (verdict.exit_status, verdict.messages) == (5, ("Disabling track script check_VI_0 since not found/accessible",))
    assert verdict.command.endswith("high 3 0 eth0 eth2 eth3 high")


def test_keepalived_verdict_refuses_bad_input(tmp_path: Path):
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed")
    with pytest.raises(ChaoslabError, match="cannot be a Linux interface name"):
        daemons.keepalived_verdict(LB, ["a/b"])
    with pytest.raises(ChaoslabError, match="is not a file: pass the path of a keepalived.conf"):
        daemons.keepalived_verdict(tmp_path / "missing.conf", [])


def test_no_verdict_without_the_daemon(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(daemons.shutil, "which", lambda name: None)
    assert daemons.keepalived_verdict(LB, ["eth1"]) is None
    assert daemons.haproxy_verdict(CORPUS / "haproxy" / "quick-test.cfg") is None


@needs_root
@needs_haproxy
@pytest.mark.parametrize("name", ["quick-test.cfg", "haproxy.cfg"])
def test_haproxy_accepts_valid_corpus_files(name: str):
    verdict = daemons.haproxy_verdict(CORPUS / "haproxy" / name)
    assert (verdict.exit_status, verdict.ok, verdict.warnings_only) == (0, True, False)
    assert verdict.messages == ("Configuration file is valid",)
    assert verdict.summary == "haproxy -c: valid"
    assert verdict.command.startswith("unshare --net --mount -- sh -c 'exec \"$@\"' haproxy-check env -i ")
    assert verdict.command.endswith(f" -c -f {CORPUS}/haproxy/{name}")


@needs_root
@needs_haproxy
def test_haproxy_refuses_a_1_5_frontend_line():
    path = SYNTHETIC / "haproxy" / "frontend-1.5-style.cfg"
    verdict = daemons.haproxy_verdict(path)
    assert (verdict.exit_status, verdict.ok, verdict.warnings_only) == (1, False, False)
    assert verdict.summary == (f"haproxy -c: invalid: config : parsing [{path}:9] : please use the 'bind' keyword for "
                               "listening addresses. (and 3 more)")
    assert verdict.meaning == "errors: haproxy refuses to start with it"


@needs_root
@needs_haproxy
def test_haproxy_refuses_a_missing_final_newline():
    path = SYNTHETIC / "haproxy" / "no-final-newline.cfg"
    verdict = daemons.haproxy_verdict(path)
    assert verdict.exit_status == 1
    assert any(message.endswith(f"parsing [{path}:11]: Missing LF on last line, file might have been truncated at "
                                "position 35.") for message in verdict.messages)


@needs_root
@needs_haproxy
def test_haproxy_runs_with_the_given_environment_only():
    path = SYNTHETIC / "haproxy" / "environment.cfg"
    assert daemons.haproxy_verdict(path, {"PORT": "8080", "NODE": "lb1", "BLOCKED": "192.0.2.1"}).ok
    verdict = daemons.haproxy_verdict(path)  # PORT unset: "bind 127.0.0.1:" has no port
    assert not verdict.ok
    assert "'bind' : missing port specification in '127.0.0.1:'" in verdict.summary


def test_the_checks_see_a_nodes_copies_in_place_of_its_etc(tmp_path):
    """An errorfile under /etc/haproxy exists only in the node's copy: haproxy -c finds it there."""
    copy = tmp_path / "lb1" / "haproxy"
    (copy / "errors").mkdir(parents=True)
    (copy / "errors" / "chaoslab-test-503.http").write_text("HTTP/1.0 503 Service Unavailable\r\n\r\nsorry\n")
    (copy / "haproxy.cfg").write_text("defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n"
                                      "    timeout server 1s\n    errorfile 503 /etc/haproxy/errors/chaoslab-test-503.http\n"
                                      "frontend web\n    bind 127.0.0.1:8080\n")
    alone = daemons.haproxy_verdict(copy / "haproxy.cfg")
    assert alone.refused and "chaoslab-test-503.http" in " ".join(alone.messages)
    in_place = daemons.haproxy_verdict(copy / "haproxy.cfg", folders={"/etc/haproxy": copy})
    assert (in_place.ok, in_place.refused) == (True, False), in_place.messages
    assert in_place.command.endswith(" -c -f /etc/haproxy/haproxy.cfg")
