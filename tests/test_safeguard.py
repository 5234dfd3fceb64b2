"""The safeguard: its budget, its measure of an outage, its watchdog, and a real run it aborts."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from chaoslab import safeguard
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.measure import history
from chaoslab.measure.client import Outcome
from chaoslab.paths import PROJECT_DIR
from chaoslab.safeguard import Unanswered, Watchdog, abort_after
from tests.helpers import VENV_BIN, fresh_lab

PREFIX = "ctsafe"
EXPERIMENT = PROJECT_DIR / "experiments" / "safeguard-abort.json"


def ok(sent: float, latency: float = 0.002) -> Outcome:
    return Outcome(sent, latency, status=200, backend="httpd-1")


def failed(sent: float, error: str = "timeout") -> Outcome:
    return Outcome(sent, 1.0, error=error)


# ---------------------------------------------------------------------------- the budget


def test_the_budget_comes_from_environment_then_configuration_then_experiment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(safeguard.ENVIRONMENT, raising=False)
    assert abort_after({}) is None
    assert abort_after({"abort_after": 1.5}) == 1.5
    assert abort_after({"abort_after": 1.5}, {"chaoslab_abort_after": "4"}) == 4.0
    monkeypatch.setenv(safeguard.ENVIRONMENT, "2.5")
    assert abort_after({"abort_after": 1.5}, {"chaoslab_abort_after": 4}) == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_budget_says_what_would_be_right(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv(safeguard.ENVIRONMENT, value)
    with pytest.raises(ChaoslabError) as error:
        abort_after({})
    assert str(error.value) == (f"environment variable CHAOSLAB_ABORT_AFTER must be a positive number of seconds, "
                                f"such as 1.5, not {value!r}")


def test_a_bad_budget_in_the_experiment_names_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(safeguard.ENVIRONMENT, raising=False)
    with pytest.raises(ChaoslabError, match="the chaoslab extension's abort_after must be a positive number"):
        abort_after({"abort_after": True})


def test_a_bad_budget_stops_the_run_before_it_touches_a_lab(tmp_path: Path):
    result = subprocess.run(
        [str(VENV_BIN / "chaos"), "--log-file", str(tmp_path / "chaos.log"), "run",
         "--journal-path", str(tmp_path / "journal.json"), str(EXPERIMENT)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "CHAOSLAB_PREFIX": "ctnone", safeguard.ENVIRONMENT: "soon",
             "CHAOSLAB_RESULTS": str(tmp_path / "results")},
    )
    assert ("chaoslab could not prepare the lab: environment variable CHAOSLAB_ABORT_AFTER must be a positive "
            "number of seconds, such as 1.5, not 'soon'") in result.stderr
    assert json.loads((tmp_path / "journal.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "results").exists()
    assert not Path("/run/netns/ctnone-haproxy-1").exists()


# ---------------------------------------------------------------------------- the measure


def test_unanswered_runs_from_the_last_answer_to_the_latest_failure():
    unanswered = Unanswered()
    assert unanswered.add(ok(100.00)) == 0.0
    assert unanswered.add(ok(100.01)) == 0.0
    assert unanswered.add(failed(100.02, "refused")) == pytest.approx(100.02 - 100.012)
    assert unanswered.add(failed(101.50)) == pytest.approx(101.50 - 100.012)
    assert unanswered.add(failed(101.00)) == pytest.approx(101.50 - 100.012)  # completions come out of order
    assert unanswered.add(ok(101.60)) == 0.0  # answered again
    assert unanswered.add(failed(101.70)) == pytest.approx(101.70 - 101.602)


def test_unanswered_from_the_first_request_when_none_was_answered():
    unanswered = Unanswered()
    unanswered.add(failed(10.5))
    assert unanswered.add(failed(10.0)) == pytest.approx(0.5)


# ---------------------------------------------------------------------------- the watchdog


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def record(self, event: dict) -> None:
        self.events.append(event)


def append(path: Path, *samples: Outcome, partial: bool = False) -> None:
    lines = "".join(json.dumps(sample.to_json()) + "\n" for sample in samples)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(lines[:-20] if partial else lines)


def test_the_watchdog_aborts_once_when_the_budget_is_exceeded(tmp_path: Path):
    samples, recorder, aborts = tmp_path / "samples.jsonl", Recorder(), []
    append(samples, *(ok(100 + i * 0.01) for i in range(50)))
    watchdog = Watchdog(samples, 1.5, recorder, abort=lambda: aborts.append(time.monotonic())).start()
    try:
        append(samples, *(failed(100.5 + i * 0.01) for i in range(100)))  # 1 s unanswered: within budget
        time.sleep(0.3)
        assert aborts == [] and recorder.events == []
        append(samples, failed(102.1), failed(102.2))
        append(samples, failed(102.3), partial=True)  # a line being written
        deadline = time.monotonic() + 5
        while not aborts and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watchdog.stop()
    assert len(aborts) == 1
    [event] = recorder.events
    assert event["kind"] == "safeguard" and event["budget"] == 1.5
    assert event["unanswered"] == pytest.approx(102.1 - 100.492, abs=0.001)
    assert watchdog.fired == event


def test_a_stopped_watchdog_never_aborts(tmp_path: Path):
    samples, recorder, aborts = tmp_path / "samples.jsonl", Recorder(), []
    append(samples, ok(100.0))
    watchdog = Watchdog(samples, 0.5, recorder, abort=lambda: aborts.append(1)).start()
    watchdog.stop()
    append(samples, failed(105.0))
    time.sleep(0.2)
    assert aborts == [] and recorder.events == [] and not watchdog.thread.is_alive()


def test_the_breach_is_found_in_the_events():
    event = {"t": 1.0, "kind": "safeguard", "budget": 1.5}
    assert safeguard.breach([{"t": 0.5, "kind": "run"}, event]) == event
    assert safeguard.breach([{"t": 0.5, "kind": "fault"}]) is None


# ---------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def safe_lab():
    yield from fresh_lab(PREFIX)


@pytest.mark.lab
def test_the_safeguard_aborts_a_run_that_exceeds_its_budget_and_the_lab_recovers(safe_lab: Lab, tmp_path: Path):
    """A frozen HAProxy and a 30 s pause, abort_after 1.5 s: the run stops within seconds, rolls back,
    and the journal, summary, events and history say the safeguard aborted it."""
    results = tmp_path / "results"
    environment = {**os.environ, "CHAOSLAB_PREFIX": PREFIX, "CHAOSLAB_RESULTS": str(results)}
    environment.pop(safeguard.ENVIRONMENT, None)
    started = time.monotonic()
    result = subprocess.run(
        [str(VENV_BIN / "chaos"), "--log-file", str(tmp_path / "chaos.log"), "run",
         "--journal-path", str(tmp_path / "journal.json"), str(EXPERIMENT)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment,
    )
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-3000:]
    assert took < 20, f"the run took {took:.1f} s: the 30 s pause was not cut short"
    assert "chaoslab safeguard: the VIP has not answered for" in result.stderr

    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert [(run["activity"]["name"], run["status"]) for run in journal["rollbacks"]] == [("thaw-haproxy", "succeeded")]

    [folder] = [path for path in results.iterdir() if path.is_dir()]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["run"]["status"] == "interrupted"
    assert summary["run"]["aborted_by"] == "safeguard"
    assert summary["run"]["lab_recovered"] is True
    breach = summary["run"]["safeguard"]
    assert breach["budget"] == 1.5 and 1.5 < breach["unanswered"] < 2.5
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert breach in events
    inject = next(event["t"] for event in events if event.get("kind") == "fault" and event["phase"] == "inject")
    heal = next(event["t"] for event in events if event.get("kind") == "fault" and event["phase"] == "heal")
    assert inject < breach["t"] < heal < inject + 6
    assert summary["downtime"] is not None and summary["downtime"] > 1.5  # the outage ended with the thaw

    [run] = history.load(results / history.HISTORY_FILE)
    assert (run.status, run.aborted_by, run.met_budget) == ("interrupted", "safeguard", False)
    assert run.experiment_file == "experiments/safeguard-abort.json"
    assert "unknown" not in (run.haproxy_version, run.keepalived_version, run.apache2_version)

    assert safe_lab.wait_ready(timeout=5) < 5
    assert safe_lab.vip_holders() == ["haproxy-1"]
    assert not any(node.is_service_frozen("haproxy") for node in safe_lab.loadbalancers())

