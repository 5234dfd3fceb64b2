"""chaoslab on a pair it did not build: four hosts with systemd (systemd-nspawn containers,
tests/owned_hosts.py) configured as their owner would: other addresses, names and NICs, both
Keepalived nodes BACKUP with nopreempt, a systemctl check, HAProxy naming the backend only in a
cookie, nginx for one web server. First what the fixture promises (ssh, one holder, the cookie,
the inventory), then the experiments themselves, run over ssh from a controller in the client
namespace while another client polls the VIP, judged against the theory of the owner's timers.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoslab.commands import stop
from chaoslab.lab import inventory as inventories
from chaoslab.lab.topology import Topology
from tests.helpers import needs_root
from tests.owned_hosts import (
    AUTH_PASS,
    CACHE_ROOT,
    COOKIES,
    USER,
    OwnedPair,
    leftovers,
    owned_pair_fixture,
    recipe_key,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PREFIX = "ctowned"
TOOLS = {"systemd-nspawn": "systemd-container", "mmdebstrap": "mmdebstrap", "nsenter": "util-linux",
         "curl": "curl", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnedPair]:
    needs_root()
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            pytest.skip(f"owned hosts need {tool}: apt-get install {package}")
    yield from owned_pair_fixture(tmp_path_factory.mktemp("owned"), PREFIX)
    left = leftovers(PREFIX)
    assert not any(left.values()), f"the owned hosts left behind: {left}"


def vip_holders(pair: OwnedPair) -> list[str]:
    holders = []
    for name, host in pair.hosts.items():
        if host.role == "loadbalancer":
            addresses = pair.exec(name, ["ip", "-o", "-4", "addr", "show", "dev", host.interface]).stdout
            if f" {pair.vip}/" in addresses:
                holders.append(name)
    return holders


def get(pair: OwnedPair, path: str = "/") -> tuple[int, dict[str, str], str]:
    """One HTTP GET to the VIP from the client namespace, on a new connection and without cookies."""
    result = pair.in_client(["curl", "-sS", "-i", "--max-time", "5", f"http://{pair.vip}{path}"])
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    status_line, *lines = head.splitlines()
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("host", ["ha01", "ha02", "web-a", "web-b"])
def test_ssh_as_ops_with_passwordless_sudo(pair: OwnedPair, host: str):
    result = pair.ssh(host, ["sh", "-c", "id -un; hostname; sudo -n id -un"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [USER, host, "root"]


def test_each_host_has_its_own_nic_time_zone_and_host_key(pair: OwnedPair):
    zones, keys = {}, set()
    for name, host in pair.hosts.items():
        addresses = pair.exec(name, ["ip", "-o", "-4", "addr", "show", "dev", host.interface]).stdout
        assert f" {host.address}/24 " in addresses, addresses
        assert pair.exec(name, ["readlink", "/etc/localtime"]).stdout.strip() == f"/usr/share/zoneinfo/{host.time_zone}"
        zones[name] = pair.exec(name, ["date", "+%Z"]).stdout.strip()
        keys.add(pair.exec(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout.split()[1])
    assert pair.hosts["ha02"].interface != pair.hosts["ha01"].interface
    assert "UTC" not in zones.values(), zones
    assert len(keys) == len(pair.hosts)
    print(f"time zones: {zones}")


def test_exactly_one_balancer_holds_the_vip(pair: OwnedPair):
    assert len(vip_holders(pair)) == 1


def test_the_vip_answers_and_names_the_backend_only_in_a_cookie(pair: OwnedPair):
    seen = []
    for _ in range(6):
        status, headers, body = get(pair)
        assert status == 200
        assert "<h1>Shop</h1>" in body
        assert not any(name in body for name in pair.hosts)
        assert "server" not in headers, headers  # HAProxy drops it: Apache and nginx would say who they are
        cookie = headers["set-cookie"]
        assert cookie.startswith("SRV="), cookie
        seen.append(cookie.split(";")[0].removeprefix("SRV="))
    assert set(seen) == set(COOKIES.values()), seen
    assert get(pair, "/ok.html")[0] == 200


def test_the_inventory_and_topology_are_what_chaoslab_reads(pair: OwnedPair):
    inventory = inventories.load(pair.inventory)
    assert sorted(inventory.hosts) == sorted(pair.hosts)
    assert {name: host.group for name, host in inventory.hosts.items()} == {
        "ha01": "loadbalancers", "ha02": "loadbalancers", "web-a": "webservers", "web-b": "webservers"}
    for name, host in inventory.hosts.items():
        assert (host.address, host.user, host.key_file) == (pair.hosts[name].address, USER, str(pair.key_file))
        assert f"UserKnownHostsFile={pair.known_hosts}" in host.ssh_args
    assert stat.S_IMODE(os.stat(pair.key_file).st_mode) == 0o600
    topology = inventory.topology()
    assert topology is not None and topology.vip == pair.vip
    inventory.check_against(topology)


def test_the_cached_root_file_system_stays_pristine(pair: OwnedPair):
    lower = CACHE_ROOT / recipe_key() / "root"
    assert f"\n{USER}:" not in "\n" + (lower / "etc/passwd").read_text()
    assert not (lower / "etc/keepalived/keepalived.conf").exists()
    assert not list((lower / "etc/ssh").glob("ssh_host_*"))
    assert (lower / "etc/hostname").read_text() == "localhost\n"
    assert os.readlink(lower / "etc/localtime") == "/usr/share/zoneinfo/Etc/UTC"


# ---------------------------------------------------------------------------- chaoslab on the pair

CHAOS = str(Path(sys.executable).parent / "chaos")
CHAOSLAB = str(Path(sys.executable).parent / "chaoslab")
EXPERIMENTS = Path(__file__).parent.parent / "experiments"
LAB = "ctssh"  # the prefix of chaoslab's state for the pair (its ssh connections)


def controller(pair: OwnedPair, argv: list[str], results: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """argv on the controller: this machine's chaoslab, in the client namespace, over ssh to the pair."""
    environment = {**os.environ, "CHAOSLAB_PROVIDER": "ssh", "CHAOSLAB_INVENTORY": str(pair.inventory),
                   "CHAOSLAB_CONFIRM_HOSTS": "yes", "CHAOSLAB_PREFIX": LAB, "CHAOSLAB_RESULTS": str(results)}
    return subprocess.run(["ip", "netns", "exec", pair.client_namespace, *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=results, env=environment)


def run_with_another_client(pair: OwnedPair, experiment: str, results: Path) -> tuple[dict, dict, list[dict], int]:
    """chaos run of an experiment, unchanged, while another client polls the VIP at its own pace, about 140
    times a second (a client in step with the sampler's 100 would take every other turn of HAProxy's round
    robin, and the sampler's share of a dead web server would be all or nothing): (journal, summary,
    events, answers the other client got)."""
    target = Topology.load(pair.topology).target()
    other = subprocess.Popen(
        ["ip", "netns", "exec", pair.client_namespace, sys.executable, "-m", "chaoslab.measure.sampler",
         "--output", str(results / "other-client.jsonl"), *target.arguments(), "--interval", "0.007",
         "--max-duration", "240"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = controller(pair, [CHAOS, "--log-file", str(results / "chaos.log"), "run", "--journal-path",
                                   str(results / "journal.json"), str(EXPERIMENTS / f"{experiment}.json")], results)
    finally:
        stop(other)
    assert (results / "journal.json").exists(), result.stderr[-3000:]
    journal = json.loads((results / "journal.json").read_text())
    [summary_file] = results.glob("*/summary.json")
    events = [json.loads(line) for line in (summary_file.parent / "events.jsonl").read_text().splitlines()]
    answered = sum('"status":200' in line for line in (results / "other-client.jsonl").read_text().splitlines())
    return journal, json.loads(summary_file.read_text()), events, answered


def states(events: list[dict]) -> list[tuple[str, str]]:
    return [(event["node"], event["state"]) for event in events if event["kind"] == "vrrp"]


def test_lab_up_status_and_down_over_ssh_read_the_owners_stack(pair: OwnedPair, tmp_path: Path):
    """Nothing of chaoslab's on the hosts: the services by their units (nginx is web-b's httpd), the
    VRRP states from Keepalived's journal, the VIP holder, answers known by their cookie."""
    up = controller(pair, [CHAOSLAB, "lab", "up"], tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        status = controller(pair, [CHAOSLAB, "lab", "status"], tmp_path)
    finally:
        down = controller(pair, [CHAOSLAB, "lab", "down"], tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[2:] if line.split()}
    assert rows["web-b"][3] == "httpd" and rows["web-a"][3] == "httpd", status.stdout
    assert {rows["ha01"][4], rows["ha02"][4]} == {"MASTER", "BACKUP"}, status.stdout
    assert [name for name in ("ha01", "ha02") if rows[name][5] == "holder"] == \
        [name for name in ("ha01", "ha02") if rows[name][4] == "MASTER"], status.stdout
    answers = status.stdout.rsplit("VIP answers: ", 1)[1].strip().split(", ")
    assert set(answers) <= {"web-a", "web-b"} and len(answers) == 4, status.stdout
    assert down.returncode == 0, down.stderr


def test_failover_on_the_owners_pair_is_measured_within_the_theory_of_its_timers(pair: OwnedPair, tmp_path: Path):
    journal, summary, events, answered = run_with_another_client(pair, "failover", tmp_path)
    assert (journal["status"], journal["deviated"]) == ("completed", False), (tmp_path / "chaos.log").read_text()[-3000:]
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    [before], [after] = summary["vip_holder_before"], summary["vip_holder_after"]
    assert before != after and summary["fault"]["node"] == before
    assert "track script every 1 s, fall 2" in summary["theory"]["formula"]
    assert summary["within_theory"] is True, (summary["downtime"], summary["theory"])
    assert (before, "FAULT") in states(events) and (after, "MASTER") in states(events)  # from their journals
    assert None not in (summary["phases"]["detection"], summary["phases"]["takeover"])
    clocks = {event["node"]: event for event in events if event["kind"] == "clock"}
    assert set(clocks) == {"ha01", "ha02"} and all(abs(clock["offset"]) < 0.1 for clock in clocks.values())
    assert answered > 200  # the other client was there all along (100 requests a second)
    assert (tmp_path / Path(summary["run"]["folder"]).name / "downtime.png").exists()


def test_keepalived_stop_on_the_owners_pair_costs_the_backups_skew(pair: OwnedPair, tmp_path: Path):
    journal, summary, events, _ = run_with_another_client(pair, "keepalived-stop", tmp_path)
    assert (journal["status"], journal["deviated"]) == ("completed", False), (tmp_path / "chaos.log").read_text()[-3000:]
    assert summary["theory"]["formula"].startswith("priority-0 advert")
    assert summary["within_theory"] is True, (summary["downtime"], summary["theory"])
    assert (summary["vip_holder_after"][0], "MASTER") in states(events)


def test_haproxy_killed_on_the_owners_pair_is_restarted_by_systemd_and_shown(pair: OwnedPair, tmp_path: Path):
    """Debian's haproxy.service has Restart=always: systemd brings HAProxy back in a fraction of a
    second, before the check (every 1 s, fall 2) can fail twice, so the VIP stays. The run says so:
    the restart in the summary, the log and the chart, and no judgement against failover theory."""
    journal, summary, _, _ = run_with_another_client(pair, "haproxy-crash", tmp_path)
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    [restart] = [each for each in summary["restarts"] if each["service"] == "haproxy"]
    assert restart["node"] == summary["fault"]["node"] and 0 < restart["after"] < 2, restart
    assert restart["text"].startswith(f"systemd restarted haproxy on {restart['node']} after ")
    assert restart["text"] in (tmp_path / "chaos.log").read_text()
    if summary["phases"]["takeover"] is None:  # the VIP stayed: the fault was undone by systemd
        assert summary["vip_holder_after"] == summary["vip_holder_before"] and summary["within_theory"] is None
        assert "the fault was undone before" in summary["theory_note"]
        assert summary["downtime"] < 2


def test_a_backend_down_on_the_owners_pair_fails_requests_within_its_check_window(pair: OwnedPair, tmp_path: Path):
    journal, summary, _, _ = run_with_another_client(pair, "backend-down", tmp_path)
    assert (journal["status"], journal["deviated"]) == ("completed", False), (tmp_path / "chaos.log").read_text()[-3000:]
    assert (summary["fault"]["node"], summary["fault"]["target"]) == ("web-a", "httpd")
    # no redispatch: requests sent to web-a fail until its check (inter 1 s, fall 2) marks it down
    assert "then 1 more every 1 s: after 1.00-2.00 s" in summary["theory"]["formula"]
    impact = summary["impact"]
    assert impact["kind"] == "partial" and "web-a" not in impact["by_backend"], impact
    assert summary["within_theory"] is True, (impact, summary["theory"])


def test_import_from_the_inventory_reads_the_owners_configs_over_ssh(pair: OwnedPair, tmp_path: Path):
    """chaoslab import --from-inventory copies /etc/keepalived and /etc/haproxy of both load balancers
    and writes the topology of what the owner configured; the VRRP password stays in the copies."""
    configs = tmp_path / "pair"
    result = controller(pair, [CHAOSLAB, "import", str(configs), "--from-inventory", str(pair.inventory)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(os.stat(configs).st_mode) == 0o700
    assert (configs / "ha01" / "keepalived" / "keepalived.conf").is_file()
    assert (configs / "ha02" / "haproxy" / "haproxy.cfg").is_file()
    imported = json.loads((configs / "topology.json").read_text())
    assert AUTH_PASS not in json.dumps(imported) and AUTH_PASS not in result.stdout
    topology = Topology(imported)
    assert topology.vip == pair.vip and topology.preferred_master is None and not topology.preempt
    assert {spec.name: topology.vip_interface_of(spec) for spec in topology.loadbalancers} == {
        name: pair.hosts[name].interface for name in ("ha01", "ha02")}
    assert {spec.name: spec.address("vip") for spec in topology.loadbalancers} == {
        name: pair.hosts[name].address for name in ("ha01", "ha02")}  # multicast: the inventory's addresses
    assert topology.target().backends == tuple(sorted(COOKIES.items()))
    assert topology.profile().settings["track"] == {"mechanism": "script", "interval": 1.0, "fall": 2, "rise": 2,
                                                    "weight": 0, "probe": "process"}
    predicted = {each["scenario"]: each for each in imported["imported"]["predictions"]}
    # every 1 s, fall 2: detected after 1-2 s, FAULT, then the backup's (priority 100) skew 0.61 s
    assert (predicted["haproxy-kill"]["low"], predicted["haproxy-kill"]["high"]) == pytest.approx((1.609375, 2.609375))
    assert "haproxy-kill" in result.stdout and "2.61 s" in result.stdout
