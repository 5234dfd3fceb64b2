"""Experiments are checked before a run: broken JSON and names this topology does not have, one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaoslab.checks import check_experiment
from chaoslab.lab.topology import Topology
from chaoslab.paths import PROJECT_DIR
from tests.helpers import chaoslab_command

EXPERIMENTS = sorted((PROJECT_DIR / "experiments").glob("*.json"))
FAILOVER = json.loads((PROJECT_DIR / "experiments" / "failover.json").read_text())


def with_action(**arguments) -> dict:
    experiment = json.loads(json.dumps(FAILOVER))
    experiment["method"][1]["provider"]["arguments"].update(arguments)
    return experiment


def test_the_shipped_experiments_pass():
    result = chaoslab_command("check", *map(str, EXPERIMENTS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(EXPERIMENTS)


def test_malformed_json_names_line_and_column(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_text('{"title": "x",\n  "method": [\n')
    result = chaoslab_command("check", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"chaoslab: {path}: not valid JSON: Expecting value at line 3 column 1"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"node": "web-9"}, "unknown node 'web-9'; known nodes: haproxy-1, haproxy-2, httpd-1, httpd-2, or by part: "
                        "vrrp-master, vrrp-backup, vip-holder, faulted-node, other-loadbalancer, webserver"),
    ({"node": "webserver", "service": "haproxy"}, "webserver is a webserver, which runs no haproxy"),
    ({"service": "nginx"}, "unknown service 'nginx'; known services: haproxy, haproxy-health, httpd, keepalived"),
    ({"nodee": "haproxy-1"}, "unknown argument 'nodee'; it takes: service, node"),
])
def test_names_the_topology_does_not_have(arguments, message):
    problems = check_experiment(with_action(**arguments), Topology.load())
    assert len(problems) == 1 and message in problems[0], problems


def test_unknown_signal_interface_and_profile():
    experiment = json.loads((PROJECT_DIR / "experiments" / "keepalived-crash.json").read_text())
    experiment["method"][1]["provider"]["arguments"]["signal"] = "SIGFOO"
    experiment["configuration"]["chaoslab_profile"] = "turbo"
    experiment["method"].append({"type": "action", "name": "cut", "provider": {
        "type": "python", "module": "chaoslab.network.actions", "func": "link_down",
        "arguments": {"node": "httpd-1", "interface": "eth7"}}})
    problems = check_experiment(experiment, Topology.load())
    assert any("unknown signal 'SIGFOO'" in problem for problem in problems)
    assert any("unknown profile 'turbo'; known profiles:" in problem for problem in problems)
    assert any("node httpd-1 has no interface 'eth7'; its interfaces: eth1" in problem for problem in problems)


def test_unknown_node_of_a_one_way_partition_and_direction_of_a_vrrp_block():
    experiment = json.loads((PROJECT_DIR / "experiments" / "one-way-partition.json").read_text())
    experiment["method"][0]["provider"]["arguments"]["to_node"] = "db-1"
    experiment["method"].append({"type": "action", "name": "block", "provider": {
        "type": "python", "module": "chaoslab.network.actions", "func": "block_vrrp",
        "arguments": {"node": "haproxy-2", "direction": "sideways"}}})
    problems = check_experiment(experiment, Topology.load())
    assert len(problems) == 2, problems
    assert "unknown to node 'db-1'; known nodes: haproxy-1, haproxy-2, httpd-1, httpd-2, or by part:" in problems[0]
    assert "unknown direction 'sideways'; use one of: in, out, both" in problems[1]


def test_chaos_run_refuses_a_bad_experiment_before_touching_any_lab(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(with_action(node="web-9")))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "chaos"), "run", "--journal-path", str(tmp_path / "journal.json"), str(path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "CHAOSLAB_PREFIX": "ctother", "CHAOSLAB_RESULTS": str(tmp_path)},
    )
    assert "chaoslab could not prepare the lab: activity 'stop-haproxy-on-master'" in result.stdout + result.stderr
    assert "unknown node 'web-9'" in result.stdout + result.stderr
    assert json.loads((tmp_path / "journal.json").read_text())["status"] == "interrupted"
    assert not Path("/run/netns/ctother-haproxy-1").exists()


def test_schedule_refuses_a_malformed_experiment_in_one_line(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_text("{ nope")
    result = chaoslab_command("schedule", str(path), "--count", "1", "--every", "1s")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"chaoslab: {path}: not valid JSON: Expecting property name enclosed in double quotes at line 1 column 3"
    ]


def test_every_experiment_runs_unchanged_on_a_pair_with_other_names():
    """Another owner's pair (ha01/ha02, web-a/web-b, NICs ens5 and enp1s0, no lab names anywhere):
    every experiment checks clean against it, so none names a node or interface of the lab."""
    topology = Topology.load(PROJECT_DIR / "tests" / "data" / "owned-topology.json")
    for path in sorted((PROJECT_DIR / "experiments").glob("*.json")):
        assert check_experiment(json.loads(path.read_text()), topology) == [], path.name
