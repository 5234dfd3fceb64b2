"""Inventories, the ssh provider's commands, the dry run, and the confirmation faults need on foreign hosts."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab import inventory
from chaoslab.lab.inventory import Host
from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.lab.transport.ssh import TIED_TO_CONNECTION, SshConnection, needs_root
from chaoslab.lab.vrrp import VRRP_POLL
from chaoslab.paths import PROJECT_DIR
from chaoslab.tools import dryrun

INI = """
# staging
[loadbalancers]
haproxy-1 ansible_host=10.0.0.13 ansible_user=admin
haproxy-2 ansible_host=10.0.0.14 ansible_user=admin ansible_port=2222

[webservers]
httpd-1 ansible_host=10.0.1.11
httpd-2 ansible_host=10.0.1.12 ansible_ssh_private_key_file="/keys/web key" ansible_ssh_common_args='-o UserKnownHostsFile="/k h"'

[all:vars]
ansible_user=ops
ansible_ssh_private_key_file=~/.ssh/staging
"""

YAML = """
all:
  vars:
    ansible_user: ops
  children:
    loadbalancers:
      vars:
        ansible_ssh_private_key_file: ~/.ssh/staging
      hosts:
        haproxy-1: {ansible_host: 10.0.0.13, ansible_user: admin}
        haproxy-2: {ansible_host: 10.0.0.14, ansible_user: admin, ansible_port: 2222}
    webservers:
      vars:
        ansible_ssh_private_key_file: ~/.ssh/staging
      hosts:
        httpd-1: {ansible_host: 10.0.1.11}
        httpd-2: {ansible_host: 10.0.1.12, ansible_ssh_private_key_file: /keys/web key,
                  ansible_ssh_common_args: '-o UserKnownHostsFile="/k h"'}
"""


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    path = tmp_path / "staging.ini"
    path.write_text(INI)
    return path


def test_ini_and_yaml_inventories_give_the_same_hosts(tmp_path: Path):
    (tmp_path / "hosts.ini").write_text(INI)
    (tmp_path / "hosts.yml").write_text(YAML)
    hosts = inventory.load(tmp_path / "hosts.ini").hosts
    assert inventory.load(tmp_path / "hosts.yml").hosts == hosts
    assert hosts["haproxy-1"] == Host("haproxy-1", "loadbalancers", "10.0.0.13", "admin", None, "~/.ssh/staging")
    assert (hosts["haproxy-2"].port, hosts["haproxy-2"].user) == (2222, "admin")
    assert hosts["httpd-1"].user == "ops" and hosts["httpd-1"].group == "webservers"
    assert hosts["httpd-2"].key_file == "/keys/web key"
    assert hosts["httpd-2"].ssh_args == ("-o", "UserKnownHostsFile=/k h")
    # the user's options first: ssh takes the first value of an option
    assert SshConnection(hosts["httpd-2"], tmp_path).options()[:2] == ["-o", "UserKnownHostsFile=/k h"]
    inventory.load(tmp_path / "hosts.yml").check_against(Topology.load())


@pytest.mark.parametrize("text, message", [
    ("[databases]\ndb-1 ansible_host=1.2.3.4\n", "unknown section [databases]; chaoslab reads [loadbalancers], [webservers]"),
    ("haproxy-1 ansible_host=1.2.3.4\n", "a host outside any group"),
    ("[loadbalancers]\nhaproxy-1 ansible_user=x\n", "host haproxy-1 has no ansible_host"),
    ("[loadbalancers]\nhaproxy-1 ansible_host=1.2.3.4 ansible_port=ssh\n", "ansible_port 'ssh' is not a number"),
    ("[loadbalancers]\n\n[webservers]\n", "has no host in the groups loadbalancers, webservers"),
    ("[loadbalancers]\nhaproxy-1 ansible_host='1.2.3.4\n", "line 2: No closing quotation"),
    ("[loadbalancers]\nhaproxy-1 ansible_host=-oProxyCommand=x\n", "is not a host name or address"),
])
def test_a_bad_inventory_is_one_clear_line(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(ChaoslabError, match=message.replace("[", r"\[").replace("]", r"\]")):
        inventory.load(path)


def test_hosts_must_play_the_topologys_nodes_in_the_right_group(tmp_path: Path):
    path = tmp_path / "wrong.ini"
    path.write_text("[loadbalancers]\nhaproxy-1 ansible_host=a\nhttpd-1 ansible_host=b\nlb-9 ansible_host=c\n"
                    "[webservers]\nhttpd-2 ansible_host=d\n")
    with pytest.raises(ChaoslabError) as caught:
        inventory.load(path).check_against(Topology.load())
    message = str(caught.value)
    assert "node haproxy-2 is missing" in message
    assert "httpd-1 is a webserver; put it in the group webservers, not loadbalancers" in message
    assert "host 'lb-9' is no node of the topology (nodes: haproxy-1, haproxy-2, httpd-1, httpd-2)" in message


def test_written_inventory_reads_back(tmp_path: Path):
    hosts = [Host("haproxy-1", "loadbalancers", "192.168.121.5", "vagrant", 22, "/var/lib/x y/private_key"),
             Host("httpd-1", "webservers", "192.168.121.6", "vagrant", 22, None, ("-o", "A=b c"))]
    path = inventory.write(hosts, {"chaoslab_lab_hosts": "true"}, tmp_path / "lab.ini")
    loaded = inventory.load(path)
    assert list(loaded.hosts.values()) == hosts and loaded.lab_hosts


def test_the_remote_command_reaches_the_host_as_the_same_arguments(tmp_path: Path):
    """ssh hands the remote shell one string: arguments with spaces, quotes and $ survive it unchanged."""
    connection = SshConnection(Host("h", "webservers", "10.0.0.1", "admin", 2222, "~/k"), tmp_path)
    argv = ["printf", "%s\\n", "two words", "it's", "$HOME", "; rm -rf /", "a\"b"]
    command = connection.argv(argv)
    assert command[:1] == ["ssh"] and command[-3:-1] == ["--", "10.0.0.1"]
    assert command[command.index("-l"):command.index("-l") + 2] == ["-l", "admin"]
    assert command[command.index("-p"):command.index("-p") + 2] == ["-p", "2222"]
    remote = shlex.split(command[-1])
    assert remote[:2] == ["sudo", "-n"] and remote[2:] == argv
    # what the remote shell makes of the string, checked with a real shell (sudo left out)
    echoed = subprocess.run(["sh", "-c", shlex.join(remote[2:])], capture_output=True, text=True, check=True)
    assert echoed.stdout.splitlines() == argv[2:]


def test_root_needs_no_sudo_and_lab_hosts_skip_host_keys(tmp_path: Path):
    command = SshConnection(Host("h", "webservers", "10.0.0.1", "root"), tmp_path, lab_host=True).argv(["true"])
    assert command[-1] == "true" and "StrictHostKeyChecking=no" in command
    own = SshConnection(Host("h", "webservers", "10.0.0.1"), tmp_path).argv(["true"])
    assert "StrictHostKeyChecking=no" not in own


def test_a_spawned_command_ends_when_its_connection_does_and_by_itself():
    """The wrapper a long-running remote command gets: killed when stdin (the connection) closes,
    and ended, with its exit status, when the command ends first."""
    process = subprocess.Popen(["sh", "-c", TIED_TO_CONNECTION, "sh", "sleep", "30"], stdin=subprocess.PIPE)
    process.stdin.close()
    process.wait(timeout=5)
    ended = subprocess.Popen(["sh", "-c", TIED_TO_CONNECTION, "sh", "sh", "-c", "exit 3"], stdin=subprocess.PIPE)
    assert ended.wait(timeout=5) == 3  # stdin still open
    ended.stdin.close()
    leftover = subprocess.run(["pgrep", "-f", "^sleep 30$"], capture_output=True, text=True)
    assert leftover.stdout == ""


@pytest.mark.parametrize("argv, root", [
    (["cat", "/run/chaoslab/vrrp-state.log"], False), (["ip", "-o", "-4", "addr", "show", "dev", "eth1"], False),
    (["ip", "-ts", "-o", "monitor", "address"], False), (["date", "+%s.%N"], False), (["pgrep", "-x", "haproxy"], False),
    (["date", "-s", "@1"], True), (["ip", "link", "set", "eth1", "down"], True), (["systemctl", "stop", "haproxy"], True),
    (["tcpdump", "-i", "eth1"], True), (["iptables", "-w", "-N", "X"], True),
])
def test_only_commands_that_change_something_get_sudo(argv: list[str], root: bool):
    assert needs_root(argv) is root


def test_the_dry_run_names_each_fault_and_its_hosts_and_touches_nothing(staging: Path):
    lines = dryrun.dry_run(PROJECT_DIR / "experiments/failover.json",
                          {"provider": "ssh", "inventory": str(staging), "prefix": "ctplan"})
    text = "\n".join(lines)
    assert "[ACTION] stop-haproxy-on-master: chaoslab.service.stop_service(service=haproxy, node=vrrp-master) on " \
           "vrrp-master: the load balancer in VRRP state MASTER now when it runs, one of haproxy-1 (admin@10.0.0.13), " \
           "haproxy-2 (admin@10.0.0.14)" in text
    assert "Stop `service` on `node` gracefully" in text
    assert lines[-1].startswith("not confirmed: the inventory") and "CHAOSLAB_CONFIRM_HOSTS=yes" in lines[-1]
    assert not Lab(LabSettings(provider="ssh", prefix="ctplan", inventory=str(staging))).state_dir.exists()


def test_a_run_on_foreign_hosts_is_refused_before_anything_without_confirmation(staging: Path, tmp_path: Path):
    """chaos run with the ssh provider and a user's inventory: refused by the control, no rollback, no host
    contacted (the inventory's addresses are not the lab's and nothing may be sent there)."""
    environment = {**os.environ, "CHAOSLAB_PROVIDER": "ssh", "CHAOSLAB_INVENTORY": str(staging),
                   "CHAOSLAB_PREFIX": "ctplan", "CHAOSLAB_RESULTS": str(tmp_path)}
    environment.pop("CHAOSLAB_CONFIRM_HOSTS", None)
    chaos = str(Path(sys.executable).parent / "chaos")
    result = subprocess.run([chaos, "--log-file", str(tmp_path / "chaos.log"), "run", "--journal-path",
                             str(tmp_path / "journal.json"), str(PROJECT_DIR / "experiments/failover.json")],
                            capture_output=True, text=True, env=environment, timeout=120, cwd=tmp_path)
    log = (tmp_path / "chaos.log").read_text()
    assert result.returncode != 0
    assert "faults there need confirmation" in log and "chaoslab plan EXPERIMENT" in log
    assert "Rollback" not in log.split("faults there need confirmation")[1]
    assert "answers" not in log  # the ssh provider's up() never ran: no host was asked anything
    journal = json.loads((tmp_path / "journal.json").read_text()) if (tmp_path / "journal.json").exists() else None
    assert journal is None or journal["status"] != "completed"


@pytest.mark.parametrize("seen, fresh", [(0, ["1 BACKUP", "2 MASTER", "3 BACKUP"]), (1, ["2 MASTER", "3 BACKUP"]),
                                         (3, []), (5, ["1 BACKUP", "2 MASTER", "3 BACKUP"])])
def test_the_vrrp_poll_reads_the_state_log_once(tmp_path: Path, seen: int, fresh: list[str]):
    """The ssh nodes' look at the VRRP state log, run by a real shell: the length and the new lines,
    all of them when the log is shorter than what was seen (a reboot emptied /run), then liveness."""
    log = tmp_path / "vrrp-state.log"
    log.write_text("1 BACKUP\n2 MASTER\n3 BACKUP\n")
    output = subprocess.run(["sh", "-c", VRRP_POLL, "sh", str(seen), str(log)], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert output[0] == "3" and output[1:-1] == fresh and output[-1] in ("alive", "gone")
    missing = subprocess.run(["sh", "-c", VRRP_POLL, "sh", "0", str(tmp_path / "none")], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert missing[:1] == ["0"] and len(missing) == 2
