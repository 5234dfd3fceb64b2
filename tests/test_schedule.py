"""The scheduler: durations, cron and systemd units, progress lines, bad input; real scheduled runs on one lab."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.measure import history
from chaoslab.paths import PROJECT_DIR
from chaoslab.tools.schedule import cron_times, format_duration, make_schedule, parse_duration, progress_line, unattended
from tests.helpers import VENV_BIN, chaoslab_command, fresh_lab
from tests.test_report import check_page_against_history, chromium

PREFIX = "ctsched"
JUNIT_SCHEMA = Path(__file__).parent / "data" / "junit" / "junit-10.xsd"


# ---------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5h", 5400),
                                               ("0s", 0), (" 10m ", 600)])
def test_durations_parse(text: str, seconds: float):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "m", "-5m", "5 min", "5M", "", "1e3s", "5m30s"])
def test_bad_durations_say_what_would_be_right(text: str):
    with pytest.raises(ChaoslabError) as error:
        parse_duration(text)
    assert str(error.value) == f"invalid duration {text!r}: use a number and a unit, such as 30s, 5m, 2h or 1d"


def test_durations_print_short():
    assert [format_duration(s) for s in (0.5, 30, 60, 1800, 5400, 86400 + 60)] == ["0.5s", "30s", "1m", "30m",
                                                                                  "1h30m", "1d1m"]


def test_cron_says_what_it_can_express():
    assert cron_times(60) == "* * * * *"
    assert cron_times(1800) == "*/30 * * * *"
    assert cron_times(3600) == "0 * * * *"
    assert cron_times(6 * 3600) == "0 */6 * * *"
    assert cron_times(86400) == "0 0 * * *"
    assert [cron_times(s) for s in (30, 90, 45 * 60, 5 * 3600, 2 * 86400)] == [None] * 5


def test_unattended_runs_get_a_crontab_line_and_systemd_units(tmp_path: Path):
    plan = make_schedule(["experiments/failover.json", "experiments/halt-master.json"], "30m", None, "seed")
    settings = tmp_path / "schedule.env"
    text = unattended(plan, settings)
    command = (f"{VENV_BIN / 'chaoslab'} schedule --count 1 --profile seed {PROJECT_DIR}/experiments/failover.json "
               f"{PROJECT_DIR}/experiments/halt-master.json")
    assert f"*/30 * * * * cd {PROJECT_DIR} && set -a && . {settings} && set +a && {command} >> " in text
    assert f"ExecStart={command}\n" in text
    assert f"EnvironmentFile={settings}\n" in text and "Environment=" not in text.replace("EnvironmentFile=", "")
    assert "KillSignal=SIGINT\nKillMode=mixed\n" in text
    assert "[Timer]\nOnActiveSec=1min\nOnUnitActiveSec=1800s\n" in text and "WantedBy=timers.target" in text
    odd = unattended(make_schedule(["experiments/failover.json"], "45m", None, None), settings)
    assert "# cron cannot run every 45m exactly" in odd and "OnUnitActiveSec=2700s" in odd
    with pytest.raises(ChaoslabError, match="too often for unattended runs; use 1m or more"):
        unattended(make_schedule(["experiments/failover.json"], "30s", None, None), settings)


def test_unattended_runs_keep_the_vrrp_password_out_of_every_printed_line(tmp_path: Path):
    """The password is in no line printed and in no file but one that only root reads, which both the
    cron line and the unit read their settings from."""
    environment = {"CHAOSLAB_RESULTS": str(tmp_path), "CHAOSLAB_VRRP_PASSWORD": "s3cr3tpw", "CHAOSLAB_PREFIX": "nightly"}
    result = chaoslab_command("schedule", "experiments/failover.json", "--every", "1h", "--print-cron", env=environment)
    assert result.returncode == 0, result.stderr
    assert "s3cr3tpw" not in result.stdout + result.stderr
    settings = tmp_path / "schedule.env"
    assert f"EnvironmentFile={settings}" in result.stdout
    assert settings.stat().st_mode & 0o777 == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["schedule.env"]
    cron_line = next(line for line in result.stdout.splitlines() if line.startswith("0 * * * * "))
    sourcing = cron_line.removeprefix("0 * * * * ").split(f" && {VENV_BIN}")[0]  # cd ... && set -a && . FILE && set +a
    shell = subprocess.run(["sh", "-c", f"{sourcing} && env"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert "CHAOSLAB_VRRP_PASSWORD=s3cr3tpw\n" in shell.stdout and "CHAOSLAB_PREFIX=nightly\n" in shell.stdout


def test_progress_shows_phases_warnings_and_errors_only():
    show = progress_line
    assert show("[2026-11-25 20:30:57 INFO] Action: stop-haproxy-on-master") == "20:30:57 Action: stop-haproxy-on-master"
    assert show("[2026-11-25 20:30:57 INFO] chaoslab inject: stop_service on haproxy-1 (haproxy)") == (
        "20:30:57 chaoslab inject: stop_service on haproxy-1 (haproxy)")
    assert show("[2026-11-25 20:31:01 INFO] Experiment ended with status: completed") == (
        "20:31:01 Experiment ended with status: completed")
    assert show("[2026-11-25 20:30:50 INFO] Steady-state strategy: default") is None
    assert show("[2026-11-25 20:31:01 WARNING] Rollbacks were explicitly requested to be played") is None
    assert show("[2026-11-25 20:31:01 ERROR]   => failed: boom") == "20:31:01 error:   => failed: boom"
    assert show("Traceback (most recent call last):") == "Traceback (most recent call last):"
    assert show("") is None


def test_bad_input_is_one_line(tmp_path: Path):
    cases = {
        ("experiments/failover.json", "--every", "soon"):
            "chaoslab: invalid duration 'soon': use a number and a unit, such as 30s, 5m, 2h or 1d",
        ("experiments/failover.json", "--count", "0"): "chaoslab: --count must be a whole number of rounds, at least 1, not '0'",
        ("experiments/failover.json", "--count", "x"): "chaoslab: --count must be a whole number of rounds, at least 1, not 'x'",
        ("experiments/nope.json",): "chaoslab: experiment file experiments/nope.json does not exist; give the path of a "
                                    "JSON experiment, such as experiments/failover.json",
        ("experiments/failover.json", "--print-cron", "--count", "2"):
            "chaoslab: --print-cron prints units that run one round each time; leave out --count",
    }
    for arguments, message in cases.items():
        result = chaoslab_command("schedule", *arguments, env={"CHAOSLAB_RESULTS": str(tmp_path)})
        assert (result.returncode, result.stderr) == (2, message + "\n"), arguments
    profile = chaoslab_command("schedule", "experiments/failover.json", "--profile", "turbo")
    assert profile.returncode == 2 and profile.stderr.startswith("chaoslab: unknown profile 'turbo'; known profiles:")
    assert not list(tmp_path.iterdir())  # nothing ran
    cron = chaoslab_command("schedule", "experiments/failover.json", "--every", "1h", "--print-cron",
                            env={"CHAOSLAB_RESULTS": str(tmp_path)})
    assert cron.returncode == 0 and any(line.startswith("0 * * * * cd ") for line in cron.stdout.splitlines())


# ---------------------------------------------------------------------------- real runs


def short_experiment(folder: Path, pause: float, thaw_in_method: bool) -> Path:
    """HAProxy frozen on the master for `pause` seconds: a real outage once it outlasts the client's
    1 s timeout (shorter, it is only latency), no failover, a quick heal."""
    freeze = {"type": "action", "name": "freeze-haproxy-on-master", "pauses": {"after": pause},
              "provider": {"type": "python", "module": "chaoslab.service.actions", "func": "freeze_service",
                           "arguments": {"service": "haproxy", "node": "vrrp-master"}}}
    thaw = {"type": "action", "name": "thaw-haproxy",
            "provider": {"type": "python", "module": "chaoslab.service.actions", "func": "thaw_service",
                         "arguments": {"service": "haproxy"}}}
    experiment = {
        "version": "1.0.0",
        "title": f"short freeze: HAProxy frozen on the master for {pause:g} s",
        "description": "A short experiment for the scheduler's tests.",
        "configuration": {"chaoslab_profile": "seed"},
        "extensions": [{"name": "chaoslab", "downtime_budget": 3}],
        "controls": [{"name": "chaoslab", "provider": {"type": "python", "module": "chaoslab.control"}}],
        "steady-state-hypothesis": {"title": "The VIP answers", "probes": [
            {"type": "probe", "name": "vip-answers", "tolerance": True,
             "provider": {"type": "python", "module": "chaoslab.vip.probes", "func": "vip_answers"}}]},
        "method": [freeze, thaw] if thaw_in_method else [freeze],
        "rollbacks": [thaw],
    }
    path = folder / "short-freeze.json"
    path.write_text(json.dumps(experiment, indent=2))
    return path


@pytest.fixture(scope="module")
def sched_lab():
    """One lab for every scheduled run: the runs find it up and leave it up."""
    yield from fresh_lab(PREFIX)


def environment(results: Path) -> dict[str, str]:
    return {"CHAOSLAB_PREFIX": PREFIX, "CHAOSLAB_RESULTS": str(results)}


@pytest.mark.lab
def test_three_scheduled_runs_are_recorded_and_reported(sched_lab: Lab, tmp_path: Path):
    results = tmp_path / "results"
    experiment = short_experiment(tmp_path, pause=1.5, thaw_in_method=True)
    report = tmp_path / "ci" / "junit.xml"
    result = chaoslab_command("schedule", str(experiment), "--count", "3", "--every", "1s", "--junit", str(report),
                              env=environment(results), timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    xmlschema.validate(str(report), str(JUNIT_SCHEMA))
    cases = ET.parse(report).getroot().findall("testsuite/testcase")
    assert [case.get("name") for case in cases] == ["short-freeze [seed]"] * 3
    assert not [case for case in cases if case.find("failure") is not None or case.find("error") is not None]
    assert "3 test cases, 0 failed" in out
    for number in (1, 2, 3):
        assert f"run {number}/3: {experiment}" in out
    assert out.count("chaoslab inject: freeze_service on haproxy-1 (haproxy)") == 3
    assert out.count("=> completed, downtime ") == 3
    assert "schedule done: 3 runs (3 completed)\n" in out

    runs = history.load(results / history.HISTORY_FILE)
    assert len(runs) == 3
    for run in runs:
        summary = json.loads((results / run.folder / "summary.json").read_text())
        assert (run.status, run.downtime, run.failed_requests) == ("completed", summary["downtime"], summary["failed"])
        assert 1.0 < run.downtime < 2.5 and run.met_budget is True
        assert (run.experiment_file, run.profile, run.prefix) == (str(experiment), "seed", PREFIX)
        assert "unknown" not in (run.haproxy_version, run.keepalived_version, run.apache2_version)
        assert (results / run.folder / "chaostoolkit.log").exists()
        assert f"=> completed, downtime {run.downtime:.2f} s, {run.failed_requests} failed requests" in out
    assert sched_lab.is_up() and sched_lab.wait_ready(timeout=5) < 5  # found up, left up

    listed = chaoslab_command("history", "--experiment", "short-freeze", env=environment(results))
    assert len(listed.stdout.splitlines()) == 4, listed.stdout
    made = chaoslab_command("report", env=environment(results))
    assert made.returncode == 0, made.stderr
    page = results / "report.html"
    dom, screenshot = chromium(page, tmp_path)
    parsed = check_page_against_history(page, dom, screenshot, results / history.HISTORY_FILE)
    assert parsed.sections["short-freeze"]["data-met"] == "3"
    assert len(parsed.links) == 6  # each run's chart and summary


def read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.mark.lab
def test_ctrl_c_lets_the_run_roll_back_and_keeps_what_it_measured(sched_lab: Lab, tmp_path: Path):
    results = tmp_path / "results"
    experiment = short_experiment(tmp_path, pause=30, thaw_in_method=False)
    started = time.monotonic()
    process = subprocess.Popen([str(VENV_BIN / "chaoslab"), "schedule", str(experiment), "--count", "3"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_DIR,
                               env={**os.environ, **environment(results)})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    seen = []
    try:
        while not any("chaoslab inject" in line for line in seen):
            line = lines.get(timeout=60)
            assert line is not None, "".join(seen)
            seen.append(line)
        time.sleep(2)  # an outage to measure: longer than the client's 1 s timeout
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 128 + signal.SIGINT
    finally:
        if process.poll() is None:
            process.kill()
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    out = "".join(seen)
    assert time.monotonic() - started < 40, out  # the 30 s pause was cut short
    assert "SIGINT: passed on to the running experiment" in out
    assert "Rollback: thaw-haproxy" in out
    assert "=> interrupted, downtime " in out
    assert "schedule stopped by SIGINT after 1 run (1 interrupted)" in out
    assert "run 2/3" not in out

    [run] = history.load(results / history.HISTORY_FILE)
    assert run.status == "interrupted" and run.downtime is not None and run.downtime > 1.0
    journal = json.loads((results / run.folder / "journal.json").read_text())
    assert [(r["activity"]["name"], r["status"]) for r in journal["rollbacks"]] == [("thaw-haproxy", "succeeded")]
    assert sched_lab.wait_ready(timeout=5) < 5
    assert not any(node.is_service_frozen("haproxy") for node in sched_lab.loadbalancers())
