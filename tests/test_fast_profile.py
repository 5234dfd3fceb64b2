"""The fast profile: what it renders, which services it runs, what theory predicts for it,
and for real: its lab comes up, its checker sees a frozen HAProxy, it fails over faster than the seed."""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.topology import Topology, renderer
from chaoslab.measure.theory import expected_outage
from chaoslab.paths import PROVISION_DIR, TOPOLOGY_FILE
from chaoslab.service import actions as service_actions
from chaoslab.stack import HEALTH_CHECKER
from chaoslab.tools import matrix
from tests.helpers import fresh_lab

KEEPALIVED_LOG = "var/log/chaoslab/keepalived.log"  # the netns lab's console log of Keepalived

TRACK_FILE = "run/chaoslab/haproxy-health"


def render(node: str, profile: str, root: Path) -> Path:
    result = subprocess.run([sys.executable, str(PROVISION_DIR / "render.py"), "--node", node, "--profile", profile,
                             "--root", str(root)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return root


# --- rendering -----------------------------------------------------------------------------------


def test_seed_renders_the_documents_stack_without_the_fast_additions(tmp_path: Path):
    root = render("haproxy-1", "seed", tmp_path)
    keepalived = (root / "etc/keepalived/keepalived.conf").read_text()
    haproxy = (root / "etc/haproxy/haproxy.cfg").read_text()
    assert "vrrp_version 2\n    vrrp_garp_master_delay 1\n    script_user root\n" in keepalived
    assert "vrrp_script chk_haproxy" in keepalived and "track_file" not in keepalived
    assert "    retries 3\n    no option redispatch\n\nfrontend www\n" in haproxy
    assert haproxy.endswith("    server httpd-2 192.168.50.12:80 check\n")
    assert not (root / "etc/keepalived/chaoslab/haproxy-health").exists()
    assert not (root / "etc/systemd/system/chaoslab-haproxy-health.service").exists()


def test_fast_renders_vrrp3_a_track_file_and_a_health_frontend(tmp_path: Path):
    root = render("haproxy-1", "fast", tmp_path)
    keepalived = (root / "etc/keepalived/keepalived.conf").read_text()
    haproxy = (root / "etc/haproxy/haproxy.cfg").read_text()
    assert "vrrp_version 3\n" in keepalived and "    advert_int 0.1\n" in keepalived
    assert "    vrrp_garp_master_refresh 1\n" in keepalived
    assert "auth_pass" not in keepalived
    assert (f'track_file chk_haproxy {{\n    file "{root}/{TRACK_FILE}"\n    weight 0\n    init_file 1\n}}'
            in keepalived)
    assert "    track_file {\n        chk_haproxy\n    }" in keepalived
    assert "    option redispatch 1\n    retry-on conn-failure empty-response\n" in haproxy
    assert "    timeout connect 200ms\n" in haproxy and "default-server inter 200ms fall 2 rise 2" in haproxy
    assert haproxy.endswith("frontend health\n    bind 127.0.0.1:8405\n    monitor-uri /health\n")


def test_the_checker_is_rendered_with_its_settings_and_compiles(tmp_path: Path):
    root = render("haproxy-2", "fast", tmp_path)
    checker = root / "etc/keepalived/chaoslab/haproxy-health"
    text = checker.read_text()
    assert checker.stat().st_mode & 0o111
    assert text.startswith("#!/usr/bin/python3\n")
    for line in ('PORT = int("8405")', f'TRACK_FILE = "{root}/{TRACK_FILE}"', 'CHECK_INTERVAL = int("100") / 1000',
                 'TIMEOUT = int("100") / 1000', 'FALL = int("2")', 'RISE = int("2")'):
        assert line in text
    compile(text, str(checker), "exec")
    unit = (root / "etc/systemd/system/chaoslab-haproxy-health.service").read_text()
    assert f"ExecStart={checker}\n" in unit and "Before=keepalived.service" in unit


def test_switching_back_to_seed_removes_the_checker(tmp_path: Path):
    render("haproxy-1", "fast", tmp_path)
    render("haproxy-1", "seed", tmp_path)
    assert not (tmp_path / "etc/keepalived/chaoslab/haproxy-health").exists()
    assert not (tmp_path / "etc/systemd/system/chaoslab-haproxy-health.service").exists()


@pytest.mark.parametrize(("redispatch", "line"), [
    (False, "    no option redispatch"), (True, "    option redispatch"), (1, "    option redispatch 1"),
    (-1, "    option redispatch -1"),
])
def test_redispatch_setting(redispatch, line):
    assert renderer()._retry_policy({"redispatch": redispatch}) == line


# --- topology: services and validation ------------------------------------------------------------


def test_services_depend_on_the_profile():
    topology = Topology.load()
    balancer, web = topology.node("haproxy-1"), topology.node("httpd-1")
    assert topology.profile("seed").services(balancer) == ("haproxy", "keepalived")
    assert topology.profile("fast").services(balancer) == ("haproxy", "keepalived", HEALTH_CHECKER)
    assert topology.profile("fast").services(web) == ("httpd",)


def with_fast_track(**changes) -> Topology:
    data = json.loads(TOPOLOGY_FILE.read_text())
    track = copy.deepcopy(data["profiles"]["fast"]["track"])
    track.update(changes)
    data["profiles"]["fast"]["track"] = {key: value for key, value in track.items() if value is not None}
    return Topology(data)


@pytest.mark.parametrize(("changes", "message"), [
    ({"mechanism": "process"}, "track mechanism 'process' is unknown; use script or file"),
    ({"fall": None}, "track mechanism file needs fall"),
    ({"timeout_ms": 150}, "track timeout_ms 150 must be above 0 and at most check_interval_ms 100"),
])
def test_a_bad_track_section_is_refused(changes, message):
    with pytest.raises(ChaoslabError, match=re.escape(message)):
        with_fast_track(**changes).profile("fast")


# --- theory ----------------------------------------------------------------------------------------


def test_theory_for_the_fast_profile():
    settings = Topology.load().profile("fast").settings
    halt = expected_outage("halt-master", settings, 100)
    assert (halt.low, halt.high) == pytest.approx((0.2609375, 0.3609375))
    killed = expected_outage("haproxy-kill", settings, 100)
    assert (killed.low, killed.high) == pytest.approx((0.1 + 0.0609375, 0.2609375))  # RFC 5798: skew 156 x 0.1/256
    frozen = expected_outage("haproxy-freeze", settings, 100)
    assert (frozen.low, frozen.high) == pytest.approx((0.2 + 0.0609375, 0.3609375))
    assert "each failed probe waits its 0.1 s timeout" in frozen.formula
    assert expected_outage("backend-down", settings, 100).high == 0.0
    assert math.isinf(expected_outage("haproxy-freeze", Topology.load().profile("seed").settings, 100).high)


# --- for real --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_lab():
    yield from fresh_lab("ctfast", "fast")


def track_value(lab: Lab, node: str) -> str | None:
    text = lab.node(node).read_file(TRACK_FILE)
    return None if text is None else text.strip()


def wait_for(condition, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.lab
def test_the_fast_lab_is_in_steady_state_with_vrrp3_adverts_every_100_ms(fast_lab: Lab):
    assert fast_lab.wait_ready(timeout=2) < 2
    assert fast_lab.vip_holders() == ["haproxy-1"] and fast_lab.balanced(count=4)
    for name in ("haproxy-1", "haproxy-2"):
        node = fast_lab.node(name)
        assert node.running_services() == ["haproxy", "keepalived", HEALTH_CHECKER]
        assert track_value(fast_lab, name) == "0"
    capture = fast_lab.node("haproxy-2").run(
        ["timeout", "5", "tcpdump", "-l", "-n", "-c", "11", "-i", "eth1", "vrrp"], timeout=10)
    lines = [line for line in capture.stdout.splitlines() if "VRRP" in line]
    assert len(lines) == 11, capture.stdout + capture.stderr
    assert all(re.search(r"192\.168\.1\.13 > 192\.168\.1\.14: VRRPv3, Advertisement, vrid 51, prio 103, "
                         r"intvl 10cs", line) for line in lines), lines[0]
    stamps = [float(line.split()[0].split(":")[-1]) for line in lines]
    assert 0.9 < (stamps[-1] - stamps[0]) % 60 < 1.1


@pytest.mark.lab
def test_the_checker_sees_a_frozen_haproxy_and_the_vip_moves(fast_lab: Lab):
    master = fast_lab.node("haproxy-1")
    try:
        master.freeze_service("haproxy")
        moved = wait_for(lambda: fast_lab.vip_holders() == ["haproxy-2"], timeout=1.0)
        assert track_value(fast_lab, "haproxy-1") == "1"
        assert master.vrrp_state() == "FAULT"
        assert fast_lab.request(count=2, timeout=0.5)[-1].ok
        assert moved < 1.0
    finally:
        master.thaw_service("haproxy")
    wait_for(lambda: track_value(fast_lab, "haproxy-1") == "0", timeout=1.0)
    assert fast_lab.wait_ready(timeout=5) < 5 and fast_lab.vip_holders() == ["haproxy-1"]


@pytest.mark.lab
def test_heal_restarts_a_dead_checker(fast_lab: Lab):
    node = fast_lab.node("haproxy-2")
    node.kill_service(HEALTH_CHECKER)
    wait_for(lambda: not node.service_running(HEALTH_CHECKER), timeout=3)
    assert f"started {HEALTH_CHECKER} on haproxy-2" in fast_lab.heal()
    assert node.service_running(HEALTH_CHECKER)


@pytest.mark.lab
def test_the_rollback_action_starts_a_profile_s_helper_where_it_is_missing(fast_lab: Lab):
    """start_service without a node acts on every node that runs the service under the lab's profile
    (the checker is the fast profile's, not a role's)."""
    node = fast_lab.node("haproxy-1")
    node.kill_service(HEALTH_CHECKER)
    wait_for(lambda: not node.service_running(HEALTH_CHECKER), timeout=3)
    assert service_actions.start_service(HEALTH_CHECKER, configuration={"chaoslab_prefix": fast_lab.prefix,
                                                                        "chaoslab_profile": "fast"}) == ["haproxy-1"]
    assert node.service_running(HEALTH_CHECKER)
    fast_lab.wait_ready(timeout=10)


@pytest.mark.lab
def test_a_halt_or_a_kill_9_gives_keepalived_no_chance_to_say_goodbye(fast_lab: Lab):
    """Killed one process after the other, Keepalived's VRRP child could get its parent-death
    SIGTERM first and send a priority-0 advert: a crash turned graceful. Keepalived logs
    each such advert ("sent 0 priority"), as it does on the graceful stop that ends this test."""
    master = fast_lab.node("haproxy-1")

    def goodbyes() -> int:
        return (master.read_file(KEEPALIVED_LOG) or "").count("sent 0 priority")

    before = goodbyes()
    for _ in range(3):
        master.halt()
        master.boot()
        fast_lab.wait_ready(timeout=5)
        master.kill_service("keepalived")
        master.start_service("keepalived")
        fast_lab.wait_ready(timeout=5)
    assert goodbyes() == before
    master.stop_service("keepalived")
    master.start_service("keepalived")
    fast_lab.wait_ready(timeout=5)
    assert goodbyes() == before + 1


@pytest.mark.lab
@pytest.mark.slow
def test_fast_fails_over_a_halted_master_far_faster_than_seed(fast_lab: Lab, healthy_lab: Lab, tmp_path: Path):
    """halt-master for real under both profiles in the same session: the fast profile's downtime is a
    fraction of the seed's (theory: 0.36 s against 7.22 s). The new master's first gratuitous ARP
    agrees with the event recorder's MASTER event in both; in the fast run the clients' first answer
    comes after it (how long after is a figure of `chaoslab bench matrix`, not a pass or fail here:
    it adds the stack's latency on a machine that may be busy)."""
    experiment = matrix.find_experiment("halt-master")
    runs = {}
    for lab in (fast_lab, healthy_lab):
        runs[lab.profile.name] = files = matrix.run_experiment(lab, experiment, tmp_path / lab.profile.name)
        assert files.summary["run"]["status"] == "completed", files.summary["run"]
        assert files.summary["within_theory"] is True, files.summary["theory"]
        check = files.cross_check
        assert check is not None and check.new_master == "haproxy-2"
        assert abs(check.announcement_after_master) <= matrix.CROSS_CHECK_TOLERANCE
        assert abs(check.advert_after_master) <= matrix.CROSS_CHECK_TOLERANCE
    fast, seed = runs["fast"].summary, runs["seed"].summary
    assert runs["fast"].cross_check.answer_after_announcement >= 0
    assert fast["downtime"] / seed["downtime"] < 0.2, (fast["downtime"], seed["downtime"])
