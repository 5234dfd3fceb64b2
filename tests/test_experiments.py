"""Every experiment runs for real with `chaos run`: journal status, summary against raw samples, lab healed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import xmlschema
from prometheus_client.parser import text_string_to_metric_families

from chaoslab.commands import stop
from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from chaoslab.measure import history
from chaoslab.paths import PROJECT_DIR
from tests.helpers import fresh_lab, lab_leftovers

pytestmark = [pytest.mark.lab, pytest.mark.slow]

EXPERIMENTS = PROJECT_DIR / "experiments"
JUNIT_SCHEMA = Path(__file__).parent / "data" / "junit" / "junit-10.xsd"
CHAOS = str(Path(sys.executable).parent / "chaos")
# experiment -> (journal status, deviated): deviation is expected where the experiment finds a weakness;
# None where chance decides it
EXPECTED = {
    "failover": ("completed", False),
    "haproxy-reload": ("completed", False),  # two reloads: the VIP answers throughout
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


def chaos_run(experiment: str, prefix: str | None, results: Path, source: Path | None = None,
              options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`chaos run` of an experiment; the lab's prefix from the environment (None: from the experiment's
    configuration, or what options give it)."""
    journal = results / f"{experiment}-journal.json"
    environment = {key: value for key, value in os.environ.items() if key != "CHAOSLAB_PREFIX"}
    return subprocess.run(
        [CHAOS, "--log-file", str(results / f"{experiment}.log"), "run", "--journal-path", str(journal), *options,
         str(source or EXPERIMENTS / f"{experiment}.json")],
        capture_output=True, text=True, timeout=300, cwd=results,
        env={**environment, **({"CHAOSLAB_PREFIX": prefix} if prefix else {}), "CHAOSLAB_RESULTS": str(results)},
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
    check_ci_outputs(folder, summary)
    return summary


def check_ci_outputs(folder: Path, summary: dict) -> None:
    """What CI and dashboards read: junit.xml valid against the JUnit schema, one case failed exactly when the
    run deviated or failed; metrics.prom parsed by prometheus_client; the journal carrying the numbers."""
    xmlschema.validate(str(folder / "junit.xml"), str(JUNIT_SCHEMA))
    [case] = ET.parse(folder / "junit.xml").getroot().findall("testsuite/testcase")
    run = summary["run"]
    assert case.get("name") == f"{Path(run['experiment_file'] or run['experiment']).stem} [{run['profile']}]"
    over_budget = history.met_budget(summary["downtime"], summary["downtime_at_least"], run["downtime_budget"]) is False
    assert (case.find("failure") is not None) == (run["status"] != "completed" or over_budget)
    families = {family.name: family.samples for family in
                text_string_to_metric_families((folder / "metrics.prom").read_text())}
    [requests] = families["chaoslab_requests"]
    assert requests.value == summary["requests"] and requests.labels["target"] == run["target"]
    [numbers] = [entry for entry in json.loads((folder / "journal.json").read_text())["extensions"]
                 if entry["name"] == "chaoslab"]
    assert {key: numbers[key] for key in ("downtime", "failed", "verdict", "phases", "theory", "impact")} == \
        {key: summary[key] for key in ("downtime", "failed", "verdict", "phases", "theory", "impact")}



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
    if experiment == "haproxy-reload":  # two reloads under 20 keep-alive clients: new connections never refused
        load = summary["load"]
        assert load["clients"] == 20 and load["requests"] > 200 and load["answered"] > 0.9 * load["requests"], load
        assert set(load["latency"]) == {"before", "during", "after"} and summary["within_theory"] is True
        assert (run_folder(tmp_path) / "load.jsonl").stat().st_size > 0
    else:
        assert summary["load"] is None
    if experiment == "backend-down":  # round robin onto a dead web server: every other request fails
        impact = summary["impact"]
        assert impact["kind"] == "partial" and summary["theory"]["measures"] == "impact"
        assert abs(impact["failed_share"] - 0.5) < 0.1 and summary["within_theory"] is True, impact
        assert 4.0 - 0.6 <= impact["seconds"] <= 6.0 + 0.6  # HAProxy: (fall - 1) .. fall x inter, seed 3 x 2 s
        assert summary["downtime"] < 0.1  # the longest run of failures: one or two requests


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


def test_a_var_file_sets_the_lab_s_parameters(experiment_lab: Lab, tmp_path: Path):
    """`chaos run --var-file`: the lab's parameters from a file, as a CI job passes them (here the lab's prefix,
    which the environment does not give, and where the metrics go for node_exporter)."""
    variables = tmp_path / "lab.json"
    textfile, results = tmp_path / "textfile", tmp_path / "results"
    results.mkdir()
    variables.write_text(json.dumps({"configuration": {"chaoslab_prefix": "ctexp", "chaoslab_metrics_dir": str(textfile)}}))
    result = chaos_run("keepalived-stop", None, results, options=("--var-file", str(variables)))
    assert result.returncode == 0, (results / "keepalived-stop.log").read_text()[-3000:]
    summary = check_summary_against_samples(run_folder(results))
    assert summary["run"]["prefix"] == "ctexp"
    [collected] = textfile.glob("chaoslab-*.prom")
    assert collected.read_text() == (run_folder(results) / "metrics.prom").read_text()


def test_a_dry_run_of_the_actions_touches_nothing(experiment_lab: Lab, tmp_path: Path):
    """`chaos run --dry=actions`: no fault, and the control neither brings a lab up, nor heals, nor measures."""
    pids = experiment_lab.node("haproxy-1").service_pids("haproxy")
    result = chaos_run("failover", "ctexp", tmp_path, options=("--dry=actions",))
    assert result.returncode == 0, (tmp_path / "failover.log").read_text()[-3000:]
    log = (tmp_path / "failover.log").read_text()
    assert "dry run (actions): no fault" in log and "chaoslab inject" not in log
    assert not [path for path in tmp_path.iterdir() if path.is_dir()]  # no run folder
    assert experiment_lab.node("haproxy-1").service_pids("haproxy") == pids
    assert experiment_lab.vip_holders() == ["haproxy-1"]
    down = tmp_path / "lab-down"  # a lab that is not up is not brought up (nor brought up and down again)
    down.mkdir()
    chaos_run("failover", "ctdry", down, options=("--dry=actions",))
    log = (down / "failover.log").read_text()
    assert "dry run (actions): no fault" in log and "chaoslab: removed" not in log
    assert not [path for path in down.iterdir() if path.is_dir()]
    assert not Lab(LabSettings(prefix="ctdry")).is_up()
    assert not [name for name in lab_leftovers()["namespaces"] if name.startswith("ctdry")]


def test_every_experiment_validates():
    for path in sorted(EXPERIMENTS.glob("*.json")):
        result = subprocess.run([CHAOS, "validate", str(path)], capture_output=True, text=True, timeout=60,
                                cwd=PROJECT_DIR)
        assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
        assert "Could not find Python module" not in result.stdout + result.stderr
