"""Rehearsal: a pair's own keepalived.conf and haproxy.cfg, as written, in the netns lab (real daemons).

tests/data/rehearsal is a user's pair, not the lab's: lb-east and lb-west, both BACKUP with nopreempt,
a track script `killall -0 haproxy`, Debian's haproxy.cfg with `pidfile /run/haproxy.pid` and the
stats socket /run/haproxy/admin.sock on both, app1/app2 on port 8080 checked at /healthz.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoslab.configs.sources import NodeFiles
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.namespaces import own_pid, process_state
from chaoslab.lab.rehearsal import CONSOLE_STATES, install_loadbalancer, vrrp_states_source
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.lab.vrrp import NotifyLog
from tests.helpers import REHEARSAL_CONFIGS, lab_leftovers, needs_root, rehearsal_lab, rehearsal_topology

PREFIX = "ctreh"
SECOND = "ctreh2"  # the labs each test brings up and down itself


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    needs_root()
    rehearsed = rehearsal_lab(PREFIX)
    rehearsed.down()
    started = time.monotonic()
    try:
        rehearsed.up()
        print(f"rehearsal lab up in {time.monotonic() - started:.2f} s")
        yield rehearsed
    finally:
        rehearsed.down()


def wait_for(condition, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until condition() held, None if it did not within timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(step)
    return None


def steady(lab: Lab) -> None:
    """One load balancer holds the VIP and answers, and the other is BACKUP again (its track rose)."""
    lab.wait_ready(any_holder=True)
    assert wait_for(lambda: sorted(lab.vrrp_states().values()) == ["BACKUP", "MASTER"], 10) is not None, \
        lab.vrrp_states()


def leftovers(prefix: str) -> dict[str, list[str]]:
    return {kind: [item for item in items if f"{prefix}-" in item or f"/{prefix}/" in item or item.endswith(f"/{prefix}")]
            for kind, items in lab_leftovers().items()}


def test_vip_answers_through_the_labs_client(lab: Lab):
    outcomes = lab.request(count=6)
    assert all(outcome.ok for outcome in outcomes), outcomes
    assert lab.topology.target().identity == "none"  # the pair's HAProxy names no server to its clients
    # the stand-ins answer the user's health check path, on the user's port, with a page naming them
    east = lab.node("lb-east")
    for spec in lab.topology.webservers:
        answer = east.run(["curl", "-s", "-w", " %{http_code}", f"http://{spec.address('servers')}:8080/healthz"])
        assert answer.stdout.endswith(" 200") and f"{spec.name}.{lab.topology.domain}" in answer.stdout, answer.stdout


def test_each_haproxy_has_its_own_run(lab: Lab):
    numbers, pids, namespaces, files = {}, {}, set(), set()
    for name in ("lb-east", "lb-west"):
        node = lab.node(name)
        root = lab.provider.node_root(name)
        pid_file = root / "run/haproxy.pid"
        numbers[name] = pid_file.read_text().split()[0]
        # the node sees the same file at the path its haproxy.cfg names, and its own stats socket
        assert node.run(["cat", "/run/haproxy.pid"], check=True).stdout.split()[0] == numbers[name]
        assert node.run(["test", "-S", "/run/haproxy/admin.sock"]).ok
        assert node.run(["ls", "/etc/keepalived"], check=True).stdout.split() == ["check_haproxy.sh", "keepalived.conf"]
        files.add(os.stat(pid_file).st_ino)
        pids[name] = node.manager.main_pid("haproxy")
        assert pids[name] in node.service_pids("haproxy")
        assert own_pid(pids[name]) == int(numbers[name])  # the file's number is the pid in the node's namespace
        namespaces.add(os.readlink(f"/proc/{pids[name]}/ns/pid"))
    assert len(files) == 2 and len(namespaces) == 2 and pids["lb-east"] != pids["lb-west"]
    # each namespace counts from 1: the same start gives the same number, in two files naming two processes
    print(f"/run/haproxy.pid: {numbers}; this machine's pids {pids}")


def test_lab_records_the_rehearsal(lab: Lab):
    info = lab.provider.lab_info()
    assert info["configs"] == str(REHEARSAL_CONFIGS.resolve())
    assert info["lab_sysctls"]["lb-east"] == {"net.ipv4.ip_nonlocal_bind": "1"}
    later = Lab(LabSettings(prefix=PREFIX))  # as an experiment's activities make it: no topology given
    assert later.topology.node_names == ["lb-east", "lb-west", "app1", "app2"]
    assert later.settings.configs == info["configs"]
    assert later.is_up() and later.vip_holders() == lab.vip_holders()


def test_vrrp_states_are_read_for_both_nodes(lab: Lab):
    states = lab.vrrp_states()
    assert sorted(states.values()) == ["BACKUP", "MASTER"], states
    for node in lab.loadbalancers():
        lines = NotifyLog().lines(node.transport)
        assert lines and all(len(line.split()) == 2 and float(line.split()[0]) > 0 for line in lines)
    # the user's configuration is untouched: the copy is theirs, byte for byte
    east = lab.provider.node_root("lb-east")
    assert (east / "etc/keepalived/keepalived.conf").read_bytes() == \
        (REHEARSAL_CONFIGS / "lb-east/keepalived/keepalived.conf").read_bytes()
    # it holds the VRRP password: readable by root alone in the lab's state; the check script stays a program
    assert stat.S_IMODE(os.stat(east / "etc/keepalived/keepalived.conf").st_mode) == 0o600
    assert os.access(east / "etc/keepalived/check_haproxy.sh", os.X_OK)


def test_a_dead_haproxy_is_seen_by_its_own_node_and_the_vip_moves(lab: Lab):
    master = lab.node("vip-holder")
    other = lab.node(next(name for name in ("lb-east", "lb-west") if name != master.name))
    track = lab.profile.settings["track"]
    bound = track["interval"] * (track["fall"] + 1) + 3 * lab.profile.advert_int + 1
    try:
        master.kill_service("haproxy")
        assert not master.run(["killall", "-0", "haproxy"]).ok  # its own processes only
        assert other.run(["killall", "-0", "haproxy"]).ok
        # in the shared PID namespace the same check sees the other node's HAProxy and passes
        shared = subprocess.run(["ip", "netns", "exec", lab.provider.namespace(master.name), "killall", "-0", "haproxy"])
        assert shared.returncode == 0
        moved = wait_for(lambda: lab.vip_holders() == [other.name], bound)
        assert moved is not None, f"VIP still on {lab.vip_holders()} after {bound} s"
        print(f"VIP moved from {master.name} to {other.name} {moved:.2f} s after HAProxy was killed (bound {bound} s)")
        assert lab.vrrp_states() == {master.name: "FAULT", other.name: "MASTER"}
    finally:
        lab.heal()
    steady(lab)


def test_a_halt_kills_the_holder_and_a_boot_makes_a_new_one(lab: Lab):
    node = lab.node("vrrp-backup")
    holder = node.manager.enclosure.holder()
    node.halt()
    assert process_state(holder) in (None, "Z") and node.manager.enclosure.holder() is None
    lab.heal()
    assert node.manager.enclosure.holder() not in (None, holder)
    assert node.running_services() == ["haproxy", "keepalived"]
    assert node.run(["killall", "-0", "haproxy"]).ok
    steady(lab)


def test_down_after_a_crash_leaves_nothing(tmp_path: Path):
    needs_root()
    lab = rehearsal_lab(SECOND)
    lab.down()
    lab.up()
    holders = [lab.node(name).manager.enclosure.holder() for name in ("lb-east", "lb-west")]
    assert all(holders)
    # a crash of the process that brought it up: a new Lab knows only the prefix
    Lab(LabSettings(prefix=SECOND)).down()
    assert all(process_state(pid) in (None, "Z") for pid in holders)
    assert leftovers(SECOND) == {"namespaces": [], "processes": [], "state": []}
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        assert f"/{SECOND}/" not in mounts.read()


BROKEN = {
    # a config written for HAProxy 1.5 / CentOS 7
    "frontend-address": (("\tbind 10.44.0.100:80\n", ""), ("frontend shop\n", "frontend main *:80\n"),
                         "please use the 'bind' keyword"),
    # on Debian /var/run/haproxy is a directory
    "stats-socket-directory": (("/run/haproxy/admin.sock", "/var/run/haproxy"), "/var/run/haproxy"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_config_haproxy_refuses_fails_lab_up_with_its_words(tmp_path: Path, case: str):
    needs_root()
    *edits, words = BROKEN[case]
    configs = tmp_path / "configs"
    shutil.copytree(REHEARSAL_CONFIGS, configs, symlinks=True)
    config = configs / "lb-east/haproxy/haproxy.cfg"
    text = config.read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    lab = rehearsal_lab(SECOND, configs)
    lab.down()
    with pytest.raises(ChaoslabError, match="haproxy on lb-east did not start") as failure:
        lab.up()
    assert words in str(failure.value) and "[ALERT]" in str(failure.value)
    print(failure.value)
    assert leftovers(SECOND) == {"namespaces": [], "processes": [], "state": []}


def test_the_states_come_from_keepalived_s_own_lines_when_both_fifos_are_the_user_s(tmp_path: Path):
    needs_root()  # the copy keeps /run/haproxy's owner
    source = tmp_path / "lb-east"
    shutil.copytree(REHEARSAL_CONFIGS / "lb-east", source)
    assert vrrp_states_source(NodeFiles("lb-east", source)) == "vrrp_notify_fifo"
    config = source / "keepalived/keepalived.conf"
    config.write_text(config.read_text().replace(
        "   enable_script_security\n", "   enable_script_security\n   vrrp_notify_fifo /run/theirs.fifo\n"))
    assert vrrp_states_source(NodeFiles("lb-east", source)) == "notify_fifo"
    (source / "keepalived/fifo.conf").write_text("global_defs {\n    notify_fifo /run/all.fifo\n}\n")
    config.write_text(config.read_text() + "include /etc/keepalived/fifo.conf\n")  # read as Keepalived reads it
    root = tmp_path / "root"
    topology = rehearsal_topology()
    assert install_loadbalancer(root, source, topology.node("lb-east"), topology) == "console"
    # the stamper, through a real shell, on what Keepalived prints
    printed = "Wed Dec  2 04:05:42 2026: (VI_2) Entering MASTER STATE\nWed Dec  2 04:05:43 2026: (VI_1) Entering MASTER STATE"
    result = subprocess.run([str(root / CONSOLE_STATES), "printf", "%s\\n", *printed.splitlines()],
                            capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == printed.splitlines()  # passed on to the log
    lines = (root / "run/chaoslab/vrrp-state.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].split()[1] == "MASTER"  # the topology's instance only


def test_a_web_server_port_is_validated():
    data = rehearsal_topology().data
    assert Topology(data).node("app1").port == 8080
    assert Topology.load().node("httpd-1").port == 80
    broken = {**data, "nodes": [{**node, "port": 0} if node["name"] == "app2" else node for node in data["nodes"]]}
    with pytest.raises(ChaoslabError, match="node app2: port 0 is not a TCP port"):
        Topology(broken)
