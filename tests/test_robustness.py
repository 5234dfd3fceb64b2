"""Interrupts, crashes and concurrent runs: rollbacks run, the lab is restored, nothing measured is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from chaoslab.paths import PROJECT_DIR
from tests.helpers import chaoslab_command, fresh_lab, lab_leftovers

pytestmark = pytest.mark.lab

CHAOS = str(Path(sys.executable).parent / "chaos")
FAILOVER = str(PROJECT_DIR / "experiments" / "failover.json")


@pytest.fixture(scope="module")
def victim_lab():
    yield from fresh_lab("ctkill")


def start_run(prefix: str, results: Path, experiment: str = FAILOVER) -> subprocess.Popen:
    return subprocess.Popen(
        [CHAOS, "run", "--journal-path", str(results / "journal.json"), experiment],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=results,
        env={**os.environ, "CHAOSLAB_PREFIX": prefix, "CHAOSLAB_RESULTS": str(results), "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    """Read the run's log until a line contains marker; return what was read."""
    deadline = time.monotonic() + timeout
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"{marker!r} never appeared:\n{''.join(seen)}")


def finish(process: subprocess.Popen, seen: list[str]) -> str:
    rest, _ = process.communicate(timeout=120)
    return "".join(seen) + rest


def run_folder(results: Path) -> Path:
    (folder,) = [path for path in results.iterdir() if path.is_dir() and (path / "samples.jsonl").exists()]
    return folder


def slow_rollback_experiment(folder: Path) -> str:
    """failover.json whose rollback waits 3 s before it acts: a window to interrupt the rollbacks in."""
    experiment = json.loads(Path(FAILOVER).read_text())
    experiment["rollbacks"][0]["pauses"] = {"before": 3}
    path = folder / "slow-rollback.json"
    path.write_text(json.dumps(experiment))
    return str(path)


@pytest.mark.parametrize(("marker", "signum", "rollbacks_expected"), [
    ("Probe: vip-alternates", signal.SIGTERM, True),  # during the steady-state probes
    ("chaoslab inject: stop_service", signal.SIGINT, True),  # right after the fault
    ("chaoslab inject: stop_service", signal.SIGTERM, True),
    ("Rollback: start-haproxy", signal.SIGINT, False),  # during the rollbacks: the control heals
])
def test_interrupt_restores_the_lab_and_keeps_the_samples(victim_lab: Lab, tmp_path: Path, marker: str,
                                                          signum: signal.Signals, rollbacks_expected: bool):
    experiment = slow_rollback_experiment(tmp_path) if marker.startswith("Rollback") else FAILOVER
    process = start_run(victim_lab.prefix, tmp_path, experiment)
    seen = wait_for_line(process, marker)
    time.sleep(0.1)
    process.send_signal(signum)
    log = finish(process, seen)
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted", log[-3000:]
    if rollbacks_expected:
        assert [run["activity"]["name"] for run in journal["rollbacks"]] == ["start-haproxy"], log[-3000:]
    folder = run_folder(tmp_path)
    assert (folder / "samples.jsonl").stat().st_size > 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["run"]["status"] == "interrupted"
    assert summary["run"]["lab_recovered"] is True
    assert json.loads((folder / "journal.json").read_text())["status"] == "interrupted"
    assert victim_lab.wait_ready(timeout=10) < 10
    assert victim_lab.vip_holders() == ["haproxy-1"]


def test_interrupt_during_bring_up_leaves_nothing(tmp_path: Path):
    prefix = "ctkillup"
    process = start_run(prefix, tmp_path)
    deadline = time.monotonic() + 30
    while not Path(f"/run/netns/{prefix}-haproxy-1").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    assert json.loads((tmp_path / "journal.json").read_text())["status"] == "interrupted"
    assert not Lab(LabSettings(prefix=prefix)).is_up()
    leftovers = lab_leftovers()
    assert not [name for name in leftovers["namespaces"] if name.startswith(prefix)]
    assert not [line for line in leftovers["processes"] if f"/{prefix}/" in line]


def test_sigkill_mid_up_is_recovered_by_the_next_up_or_down(tmp_path: Path):
    prefix = "ctkilled"
    process = subprocess.Popen([str(Path(sys.executable).parent / "chaoslab"), "lab", "up", "--prefix", prefix],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not list(Path(f"/run/chaoslab/{prefix}/nodes").glob("haproxy-*/run/haproxy.pid")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert [name for name in lab_leftovers()["namespaces"] if name.startswith(prefix)]
    result = chaoslab_command("lab", "down", "--prefix", prefix)
    assert result.returncode == 0
    assert f"removed namespace {prefix}-haproxy-1 and" in result.stdout  # its daemons were found and killed
    leftovers = lab_leftovers()
    assert not [name for name in leftovers["namespaces"] if name.startswith(prefix)]
    assert not [line for line in leftovers["processes"] if f"/{prefix}/" in line]
    assert not Path(f"/run/chaoslab/{prefix}").exists()


def test_a_run_killed_after_its_fault_is_healed_by_the_next_run(victim_lab: Lab, tmp_path: Path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    process = start_run(victim_lab.prefix, first)
    wait_for_line(process, "chaoslab inject: stop_service")
    time.sleep(0.2)
    process.kill()  # no rollback, no control: the fault stays
    process.communicate(timeout=30)
    assert not victim_lab.node("haproxy-1").service_running("haproxy")
    assert (run_folder(first) / "samples.jsonl").stat().st_size > 0  # written as measured
    process = start_run(victim_lab.prefix, second)
    log = finish(process, [])
    assert "a previous run left a fault: started haproxy on haproxy-1" in log
    assert json.loads((second / "journal.json").read_text())["status"] == "completed", log[-3000:]


def test_a_second_run_on_a_busy_lab_is_refused_naming_the_holder(victim_lab: Lab, tmp_path: Path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    holder = start_run(victim_lab.prefix, first)
    seen = wait_for_line(holder, "measuring from the client")
    refused = start_run(victim_lab.prefix, second)
    log = finish(refused, [])
    assert f"lab 'ctkill' is in use by pid {holder.pid} (chaos run: failover" in log
    refused_journal = json.loads((second / "journal.json").read_text())
    assert refused_journal["status"] == "interrupted"
    assert not refused_journal["rollbacks"]  # the holder's fault is not the refused run's to undo
    down = chaoslab_command("lab", "down", "--prefix", victim_lab.prefix)
    assert down.returncode == 2 and f"is in use by pid {holder.pid}" in down.stderr
    log = finish(holder, seen)
    assert json.loads((first / "journal.json").read_text())["status"] == "completed", log[-3000:]


def test_two_labs_side_by_side(victim_lab: Lab, shared_lab: Lab):
    victim_lab.wait_ready(timeout=10)
    shared_lab.wait_ready(timeout=10)
    victim_lab.node("httpd-1").stop_service("httpd")
    try:
        assert shared_lab.balanced()
        assert shared_lab.node("httpd-1").service_running("httpd")
    finally:
        victim_lab.node("httpd-1").start_service("httpd")
    victim_lab.wait_ready()


def test_the_vrrp_password_comes_from_the_environment_and_is_never_logged(tmp_path: Path):
    password = "Zq7wX2pK"
    process = subprocess.run(
        [CHAOS, "--log-file", str(tmp_path / "chaos.log"), "run", "--journal-path", str(tmp_path / "journal.json"),
         FAILOVER], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "CHAOSLAB_PREFIX": "ctother", "CHAOSLAB_RESULTS": str(tmp_path),
             "CHAOSLAB_VRRP_PASSWORD": password},
    )
    assert json.loads((tmp_path / "journal.json").read_text())["status"] == "completed", process.stdout[-2000:]
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path.suffix != ".png"]
    assert written and not [path for path in written if password in path.read_text(errors="replace")]
    assert password not in process.stdout + process.stderr


def test_the_vrrp_password_is_rendered_for_keepalived_only(tmp_path: Path):
    root = tmp_path / "haproxy-1"
    subprocess.run(["bash", str(PROJECT_DIR / "provision" / "configure.sh"), "--node", "haproxy-1", "--root",
                    str(root)], check=True, capture_output=True, env={**os.environ, "CHAOSLAB_VRRP_PASSWORD": "pw4lab"})
    config = root / "etc" / "keepalived" / "keepalived.conf"
    assert "auth_pass pw4lab" in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600


def test_a_password_vrrp_cannot_carry_is_refused():
    line = chaoslab_command("lab", "up", "--prefix", "ctnone", env={"CHAOSLAB_VRRP_PASSWORD": "much too long"}).stderr
    assert "the VRRP password must be 1 to 8 printable characters" in line
