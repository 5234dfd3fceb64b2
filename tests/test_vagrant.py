"""The Vagrant path for real: the local box, four VMs under QEMU, the experiments over ssh, and nothing left.

One lab of VMs for the whole module (it takes minutes to boot under emulation), in the
order a user goes: `chaoslab lab up --provider vagrant` (which builds the box if it is not
cached: tests/test_box.py tests the box itself), the steady state, the
VRRP adverts on the wire, `chaos run` with the vagrant provider chosen by configuration,
the same experiment over ssh from an inventory of the same VMs, `chaoslab lab down`.
Run only these with `pytest -m vagrant`, or leave them out with `-m "not vagrant"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from chaoslab.lab import inventory
from chaoslab.lab.lab import Lab
from chaoslab.lab.libvirt_host import LibvirtHost
from chaoslab.lab.namespaces import namespace_inode
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.paths import PROJECT_DIR, STATE_ROOT
from tests.helpers import chaoslab_command

pytestmark = [pytest.mark.vagrant, pytest.mark.slow]

PREFIX = "ctvm"
SSH_PREFIX = "ctvmssh"
CHAOS = str(Path(sys.executable).parent / "chaos")


def chaos_run(results: Path, variables: dict[str, str], wrapper: list[str] | None = None,
              environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    options = [argument for key, value in variables.items() for argument in ("--var", f"{key}={value}")]
    return subprocess.run(
        [*(wrapper or []), CHAOS, "--log-file", str(results / "chaos.log"), "run", *options,
         "--journal-path", str(results / "journal.json"), str(PROJECT_DIR / "experiments/failover.json")],
        capture_output=True, text=True, timeout=900, cwd=results,
        env={**os.environ, "CHAOSLAB_RESULTS": str(results), **(environment or {})},
    )


def assert_the_tracked_path(summary: dict) -> None:
    """The failover went the way theory says (the pid check noticed, FAULT's priority-0 advert, the backup's
    skew): the old master left no sooner than fall - 1 checks after the stop, and the backup took over; the
    downtime no slower than theory by more than one check interval, which four emulated VMs on two busy
    cores can cost in slow transitions. On a VM, `systemctl stop haproxy` takes its time: the check can see
    the pid gone while HAProxy still answers, so the clients' outage may start up to one check interval
    after the check's (how close the VMs come to theory is a figure of `chaoslab bench vagrant`). A backup
    that waited out the master-down interval instead (no priority-0 advert) would be seconds later still."""
    theory, phases, downtime = summary["theory"], summary["phases"], summary["downtime"]
    slack = 2 * summary["interval"]
    track = Topology.load().profile(summary["run"]["profile"]).settings["track"]
    check_interval = track["interval"]
    assert phases["detection"] is not None and phases["takeover"] is not None, phases
    assert phases["detection"] >= (track["fall"] - 1) * check_interval - slack, phases
    assert theory["low"] - check_interval <= downtime <= theory["high"] + check_interval, (downtime, theory)


def run_summary(results: Path) -> dict:
    journal = json.loads((results / "journal.json").read_text())
    assert journal["status"] == "completed" and journal["deviated"] is False, \
        (results / "chaos.log").read_text()[-4000:]
    [summary_file] = results.glob("*/summary.json")
    assert (summary_file.parent / "downtime.png").stat().st_size > 20_000
    return json.loads(summary_file.read_text())


@pytest.fixture(scope="module")
def vm_lab() -> Iterator[Lab]:
    lab = Lab(LabSettings(provider="vagrant", prefix=PREFIX))
    lab.down()
    try:
        yield lab
    finally:
        lab.down()


def test_lab_up_boots_four_vms_and_the_vip_answers(vm_lab: Lab):
    result = chaoslab_command("lab", "up", "--provider", "vagrant", "--prefix", PREFIX, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    host = LibvirtHost(PREFIX)
    assert sorted(host.domains()) == [f"chaoslab-{name}" for name in sorted(vm_lab.topology.node_names)]
    assert vm_lab.is_up() and vm_lab.wait_ready(timeout=60) < 60
    assert vm_lab.vip_holders() == ["haproxy-1"]
    assert vm_lab.vrrp_states() == {"haproxy-1": "MASTER", "haproxy-2": "BACKUP"}
    status = chaoslab_command("lab", "status", "--provider", "vagrant", "--prefix", PREFIX, timeout=300)
    assert "haproxy-1" in status.stdout and "VIP answers: httpd-" in status.stdout, status.stdout + status.stderr


def test_haproxy_2_hears_the_masters_vrrp_adverts(vm_lab: Lab):
    """The source document's capture: tcpdump on the backup shows the master's adverts (VRRPv2, vrid 51)."""
    result = vm_lab.node("haproxy-2").run(["timeout", "20", "tcpdump", "-n", "-c", "2", "-i", "eth1", "vrrp"],
                                          timeout=40, check=True)
    adverts = [line for line in result.stdout.splitlines() if "VRRPv2, Advertisement" in line]
    assert len(adverts) == 2 and all("192.168.1.13 > 192.168.1.14" in line and "vrid 51" in line
                                     and "prio 103" in line for line in adverts), result.stdout


def test_failover_runs_on_the_vms_with_the_vagrant_provider_from_configuration(vm_lab: Lab, tmp_path: Path):
    result = chaos_run(tmp_path, {"chaoslab_provider": "vagrant", "chaoslab_prefix": PREFIX})
    assert result.returncode == 0, (tmp_path / "chaos.log").read_text()[-4000:]
    summary = run_summary(tmp_path)
    assert summary["vip_holder_before"] == ["haproxy-1"]
    assert summary["downtime"] > 0 and summary["run"]["lab_recovered"] is True
    assert_the_tracked_path(summary)
    assert any(event.get("kind") == "vip" and event.get("node") == "haproxy-2" and event["change"] == "acquired"
               for event in map(json.loads, next(tmp_path.glob("*/events.jsonl")).read_text().splitlines()))
    assert vm_lab.wait_ready(timeout=60) < 60


def test_the_same_experiment_runs_over_ssh_from_an_inventory_of_the_vms(vm_lab: Lab, tmp_path: Path):
    """A user's inventory of the same VMs (not marked as the lab's): refused without confirmation, then run
    from the VMs' network (the lab's namespace), as from a machine next to one's own load balancers."""
    trust = ("-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}")
    hosts = [replace(host, ssh_args=trust) for host in inventory.load(vm_lab.provider.inventory_path).hosts.values()]
    users = inventory.write(hosts, {}, tmp_path / "staging.ini")
    variables = {"chaoslab_provider": "ssh", "chaoslab_prefix": SSH_PREFIX}
    # the VMs share two emulated cores: the vagrant provider's pace for the sampler, not real hosts' 10 ms
    environment = {"CHAOSLAB_INVENTORY": str(users), "CHAOSLAB_SAMPLER_INTERVAL": "0.05"}
    inside = LibvirtHost(PREFIX).enter([])
    refused = tmp_path / "refused"
    refused.mkdir()
    result = chaos_run(refused, variables, inside, environment)
    assert result.returncode != 0 and "faults there need confirmation" in (refused / "chaos.log").read_text()
    confirmed = tmp_path / "confirmed"
    confirmed.mkdir()
    result = chaos_run(confirmed, variables, inside, {**environment, "CHAOSLAB_CONFIRM_HOSTS": "yes"})
    assert result.returncode == 0, (confirmed / "chaos.log").read_text()[-4000:]
    summary = run_summary(confirmed)
    assert summary["downtime"] > 0 and summary["vip_holder_before"] == ["haproxy-1"]
    assert_the_tracked_path(summary)
    assert not (STATE_ROOT / SSH_PREFIX).exists()  # the run brought its "lab" up, so it took it down


def test_lab_down_leaves_nothing(vm_lab: Lab):
    host = LibvirtHost(PREFIX)
    inode = namespace_inode(host.namespace)
    assert inode is not None
    result = chaoslab_command("lab", "down", "--provider", "vagrant", "--prefix", PREFIX, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert namespace_inode(host.namespace) is None and not host.data_dir.exists()
    assert not vm_lab.state_dir.exists()
    in_the_namespace = []  # libvirtd, virtlogd, QEMU, dnsmasq, ssh masters: whatever lived there
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns/net") == f"net:[{inode}]":
                in_the_namespace.append((entry / "cmdline").read_text().replace("\0", " "))
        except OSError:
            continue
    assert in_the_namespace == []
