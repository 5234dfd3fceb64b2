"""Every experiment runs for real with `chaos run`: journal status, summary against raw samples, lab healed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from chaoslab.commands import stop
from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from chaoslab.measure import history
from chaoslab.paths import PROJECT_DIR
from tests.helpers import fresh_lab, lab_leftovers

pytestmark = [pytest.mark.lab, pytest.mark.slow]

EXPERIMENTS = PROJECT_DIR / "experiments"
CHAOS = str(Path(sys.executable).parent / "chaos")
# experiment -> (journal status, deviated): deviation is expected where the experiment finds a weakness;
# None where chance decides it
EXPECTED = {
    "failover": ("completed", False),
    "haproxy-crash": ("completed", False),
    "halt-master": ("completed", False),
    "backend-down": ("completed", False),
    "keepalived-stop": ("completed", False),
    "keepalived-crash": ("completed", True),  # the VIP stays on the crashed master: two holders
    "frozen-haproxy": ("completed", True),  # a pid check cannot see a frozen HAProxy
    "failback": ("completed", False),
    "split-brain": ("completed", True),  # two masters, caught by the single-holder probe
    "slow-link": ("completed", None),  # clients see failures; lost adverts may also move the VIP (then no deviation)
}


def chaos_run(experiment: str, prefix: str, results: Path, source: Path | None = None) -> subprocess.CompletedProcess:
    journal = results / f"{experiment}-journal.json"
    return subprocess.run(
        [CHAOS, "--log-file", str(results / f"{experiment}.log"), "run", "--journal-path", str(journal),
         str(source or EXPERIMENTS / f"{experiment}.json")],
        capture_output=True, text=True, timeout=300, cwd=results,
        env={**os.environ, "CHAOSLAB_PREFIX": prefix, "CHAOSLAB_RESULTS": str(results)},
    )


def run_folder(results: Path) -> Path:
    folders = [path for path in results.iterdir() if path.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def check_summary_against_samples(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    ok = [s for s in samples if s.get("status") == 200 and s.get("backend")]
    failed = [s for s in samples if not (s.get("status") == 200 and s.get("backend"))]
    assert summary["requests"] == len(samples) > 100
    assert summary["ok"] == len(ok)
    assert summary["failed_by_kind"] == dict(sorted(Counter(s.get("error", "other") for s in failed).items()))
    main = summary["main_outage"]
    if main is not None:
        outage = summary["outages"][main]
        inside = [s for s in failed if outage["start"] - 0.001 <= s["sent"] <= outage["end"] + 0.001]
        assert len(inside) >= outage["failed"]
        assert summary["downtime"] == pytest.approx(outage["end"] - outage["last_ok_before"], abs=0.002)
    assert (folder / "downtime.png").stat().st_size > 20_000
    return summary


@pytest.fixture(scope="module")
def experiment_lab():
    yield from fresh_lab("ctexp")


@pytest.mark.parametrize("experiment", list(EXPECTED))
def test_experiment_runs_for_real(experiment: str, experiment_lab: Lab, tmp_path: Path):
    result = chaos_run(experiment, "ctexp", tmp_path)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    journal = json.loads((tmp_path / f"{experiment}-journal.json").read_text())
    status, deviated = EXPECTED[experiment]
    assert journal["status"] == status and deviated in (None, journal["deviated"]), \
        (tmp_path / f"{experiment}.log").read_text()[-3000:]
    folder = run_folder(tmp_path)
    assert json.loads((folder / "journal.json").read_text())["status"] == journal["status"]
    summary = check_summary_against_samples(folder)
    assert summary["run"]["lab_recovered"] is True
    assert experiment_lab.wait_ready(timeout=5) < 5
    assert experiment_lab.vip_holders() == ["haproxy-1"]
    if experiment == "slow-link":
        assert summary["failed"] > 0
    if experiment in ("failover", "halt-master", "keepalived-stop"):
        assert summary["downtime"] > 0 and summary["within_theory"] is True
        assert summary["vip_holder_before"] == ["haproxy-1"]


def test_the_steady_state_holds_while_another_client_uses_the_vip(experiment_lab: Lab, tmp_path: Path):
    """Every real VIP has other clients: one more polls it 100 times a second through the whole run.
    The steady state still holds (every web server answers within a window of answers; one client's
    answers no longer alternate strictly), the method runs and the failover is measured within theory."""
    other = subprocess.Popen(experiment_lab.provider.client_command([
        sys.executable, "-m", "chaoslab.measure.sampler", "--output", str(tmp_path / "other-client.jsonl"),
        *experiment_lab.topology.target().arguments(), "--interval", "0.01", "--max-duration", "120"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = chaos_run("failover", "ctexp", tmp_path)
    finally:
        stop(other)
    journal = json.loads((tmp_path / "failover-journal.json").read_text())
    assert (journal["status"], journal["deviated"]) == ("completed", False), result.stderr[-2000:]
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    summary = check_summary_against_samples(run_folder(tmp_path))
    assert summary["fault"]["action"] == "stop_service" and summary["within_theory"] is True
    answered = [line for line in (tmp_path / "other-client.jsonl").read_text().splitlines() if '"backend"' in line]
    assert len(answered) > 500


def test_a_steady_state_not_met_before_the_method_tested_nothing(experiment_lab: Lab, tmp_path: Path):
    """The hypothesis cannot hold (a tolerance no lab meets): nothing is injected, and the run says so:
    the journal failed (chaos exits non-zero), the summary's verdict is unknown, the history records it."""
    experiment = json.loads((EXPERIMENTS / "failover.json").read_text())
    experiment["steady-state-hypothesis"]["probes"][2]["tolerance"] = False  # single-vip-holder is True
    source = tmp_path / "impossible.json"
    source.write_text(json.dumps(experiment))
    result = chaos_run("impossible", "ctexp", tmp_path, source)
    assert result.returncode == 1
    journal = json.loads((tmp_path / "impossible-journal.json").read_text())
    assert journal["status"] == "failed" and journal["steady_states"]["before"]["steady_state_met"] is False
    summary = json.loads((run_folder(tmp_path) / "summary.json").read_text())
    assert summary["verdict"] == "unknown" and "nothing was tested" in summary["verdict_reason"]
    assert summary["run"]["steady_state_before"] is False and summary["fault"]["inject"] is None
    [run] = history.load(history.history_path(tmp_path))
    assert run.status == "failed"
    assert "the steady state was not met before the method: nothing was tested" in \
        (tmp_path / "impossible.log").read_text()


def test_failover_on_a_fresh_machine_brings_the_lab_up_and_down(tmp_path: Path):
    """Nothing running before: the run brings its lab up, measures, and removes it again."""
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    assert not Lab(LabSettings(prefix="ctfresh")).is_up()
    result = chaos_run("failover", "ctfresh", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = check_summary_against_samples(run_folder(tmp_path))
    assert summary["downtime"] > 0 and summary["verdict"] == "valid"
    assert not Lab(LabSettings(prefix="ctfresh")).is_up()
    assert not [name for name in lab_leftovers()["namespaces"] if name.startswith("ctfresh")]


def test_every_experiment_validates():
    for path in sorted(EXPERIMENTS.glob("*.json")):
        result = subprocess.run([CHAOS, "validate", str(path)], capture_output=True, text=True, timeout=60,
                                cwd=PROJECT_DIR)
        assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
        assert "Could not find Python module" not in result.stdout + result.stderr
