"""Scheduled resilience runs: experiments one after another, round after round, in the foreground.

Chaos Toolkit has no scheduler; this is chaoslab's. Each run is
`chaos run --rollback-strategy always EXPERIMENT`, a process of its own in a
session of its own (so a Ctrl-C at the terminal reaches the schedule only),
with its progress printed: which run, its phases as Chaos Toolkit logs them,
and the downtime from the run's summary.json. The control records every run in
the history. Rounds start every --every (a round that takes longer is followed
by the next one at once), --count rounds or until stopped.

Stopping (Ctrl-C or SIGTERM): while the experiment runs, the signal is passed
on to the chaos process, once: Chaos Toolkit marks the run interrupted and
plays its rollbacks, and the control heals the lab and writes everything that
was measured. Once the experiment has ended (the control is healing and
writing), nothing is passed on and the run finishes by itself. Then the
schedule stops and says so.

With --junit FILE, the schedule's runs are also a JUnit XML report (chaoslab.measure.junit), one
test case per run, rewritten after each run so that a stopped schedule leaves a whole report; the
schedule then exits 1 when a run failed as a test case (deviated, its steady state not met, over its
downtime budget, or no results), which a CI job shows as a failed step.

For unattended runs, --print-cron prints a crontab line and systemd units that
run one round each time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from chaoslab.checks import file_problems
from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology
from chaoslab.measure import junit
from chaoslab.measure.results import SUMMARY
from chaoslab.paths import PROJECT_DIR, results_dir

__all__ = ["Schedule", "Scheduler", "make_schedule", "parse_duration", "unattended", "unattended_settings",
           "write_environment_file"]

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r"^\[(?:\d{4}-\d\d-\d\d )?(\d\d:\d\d:\d\d) (\w+)\] (.*)$")
EXPERIMENT_ENDED = "Experiment ended with status"
PHASES = (
    "Steady state hypothesis", "Playing your experiment's method", "Action:", "Probe:", "Pausing", "Let's rollback",
    "Rollback:", "chaoslab inject", "chaoslab heal", "chaoslab: safeguard", EXPERIMENT_ENDED,
)
ROUTINE_WARNINGS = ("Rollbacks were explicitly requested to be played",)
WAIT_STEP = 0.2
RUN_LOG = "chaostoolkit.log"
UNIT_NAME = "chaoslab-schedule"
ENVIRONMENT_FILE = "schedule.env"  # under the results folder: the unattended runs' CHAOSLAB_* settings


# ---------------------------------------------------------------------------- what to run


def parse_duration(text: str) -> float:
    """'30s', '5m', '2h', '1d', '1.5h' -> seconds."""
    match = DURATION.match(text.strip())
    if not match:
        raise ChaoslabError(f"invalid duration {text!r}: use a number and a unit, such as 30s, 5m, 2h or 1d")
    return float(match.group(1)) * UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """1800 -> '30m', 5400 -> '1h30m', 0.5 -> '0.5s'."""
    if seconds < 60:
        return f"{seconds:.3g}s"
    parts, rest = [], round(seconds)
    for unit, size in UNITS.items():
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


@dataclass(frozen=True)
class Schedule:
    """Experiments (absolute paths) run in turn each round; a round every `every` seconds;
    `count` rounds, or until stopped (None); the settings profile, or the experiments' own."""

    experiments: tuple[Path, ...]
    every: float
    count: int | None
    profile: str | None
    junit: Path | None = None


def make_schedule(experiments: Sequence[str], every: str, count: str | None, profile: str | None,
                  junit: str | None = None) -> Schedule:
    """Check what the user asked for; every mistake is one line saying what would be right."""
    paths = []
    topology = Topology.load()
    for name in experiments:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ChaoslabError(f"experiment file {name} does not exist; give the path of a JSON experiment, "
                                "such as experiments/failover.json")
        problems = file_problems(path, topology)
        if problems:
            raise ChaoslabError(f"{name}: {problems[0]}" + (f" (and {len(problems) - 1} more: chaoslab check {name})"
                                                            if len(problems) > 1 else ""))
        paths.append(path)
    rounds = None
    if count is not None:
        if not count.isdigit() or int(count) < 1:
            raise ChaoslabError(f"--count must be a whole number of rounds, at least 1, not {count!r}")
        rounds = int(count)
    if profile is not None:
        topology.profile(profile)  # an unknown profile names the known ones
    return Schedule(tuple(paths), parse_duration(every), rounds, profile, Path(junit).resolve() if junit else None)


# ---------------------------------------------------------------------------- running it


class Scheduler:
    """Runs a schedule in the foreground, printing progress to out."""

    def __init__(self, schedule: Schedule, out: TextIO = sys.stdout):
        self.schedule = schedule
        self.out = out
        self.stop_signal: int | None = None
        self.child: subprocess.Popen | None = None
        self.experiment_ended = False
        self.notes: list[str] = []
        self.statuses: Counter[str] = Counter()
        self.summaries: list[dict] = []  # each run's, for the JUnit report

    def run(self) -> int:
        """Run every round; 0 when done, 128 + the signal's number when stopped by one."""
        previous = {number: signal.signal(number, self._on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._rounds()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _rounds(self) -> int:
        schedule = self.schedule
        total = schedule.count * len(schedule.experiments) if schedule.count else None
        number = 0
        round_number = 0
        while schedule.count is None or round_number < schedule.count:
            round_number += 1
            round_started = time.monotonic()
            for experiment in schedule.experiments:
                if self.stop_signal:
                    return self._stopped(number)
                number += 1
                self._run_one(experiment, f"run {number}/{total}" if total else f"run {number}")
                if self.stop_signal:
                    return self._stopped(number)
            if schedule.count is not None and round_number >= schedule.count:
                break
            self._wait_for_next_round(round_started)
            if self.stop_signal:
                return self._stopped(number)
        self._say(f"schedule done: {plural(number, 'run')} ({self._status_counts()})")
        return self._failed_cases()

    def _run_one(self, experiment: Path, label: str) -> None:
        """One `chaos run`, its progress printed as it goes, its log kept in the run's folder."""
        self._say(f"{label}: {display_path(experiment)}, started {datetime.now(UTC):%H:%M:%S} UTC")
        environment = {**os.environ, **({"CHAOSLAB_PROFILE": self.schedule.profile} if self.schedule.profile else {})}
        with tempfile.TemporaryDirectory(prefix="chaoslab-schedule-") as scratch:  # for the journal and log chaos writes
            log = Path(scratch) / RUN_LOG
            journal = Path(scratch) / "journal.json"
            command = [chaos_executable(), "--log-file", str(log), "run", "--rollback-strategy", "always",
                       "--journal-path", str(journal), str(experiment)]
            self.experiment_ended = False
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, errors="replace", env=environment,
                                       start_new_session=True)
            self.child = process
            try:
                if self.stop_signal:  # stopped while it was starting
                    process.send_signal(self.stop_signal)
                for raw in process.stdout:
                    line = ANSI.sub("", raw).rstrip()
                    if EXPERIMENT_ENDED in line:
                        self.experiment_ended = True
                    if shown := progress_line(line):
                        self._say(f"  {shown}")
                process.wait()
            finally:
                self.child = None
            folder = results_folder(journal)
            kept = keep_log(log, folder, experiment)
        self._say(f"  {self._outcome(folder, process.returncode, kept, experiment)}")
        if self.schedule.junit:
            junit.write_junit(self.schedule.junit, self.summaries)

    def _outcome(self, folder: Path | None, returncode: int, log: Path | None, experiment: Path) -> str:
        """The run in one line, from its summary.json (kept for the JUnit report; a run without one is
        an aborted run there)."""
        try:
            summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8")) if folder else None
        except (OSError, ValueError):
            summary = None
        self.summaries.append(summary or {"run": {"experiment": experiment.stem, "experiment_file": str(experiment),
                                                  "profile": self.schedule.profile, "status": "aborted"}})
        if summary is None:
            self.statuses["no results"] += 1
            return (f"no summary: chaos exited with status {returncode}; see the messages above"
                    + (f" and its log {display_path(log)}" if log else ""))
        run = summary.get("run") or {}
        status = run.get("status", "unknown")
        self.statuses[status] += 1
        if run.get("aborted_by"):
            status += f", aborted by the {run['aborted_by']}"
        return f"=> {status}, {downtime_text(summary)}, {summary.get('failed')} failed requests; {display_path(folder)}"

    def _wait_for_next_round(self, round_started: float) -> None:
        took = time.monotonic() - round_started
        wait = self.schedule.every - took
        if wait <= 0:
            if self.schedule.every > 0:
                self._say(f"the round took {format_duration(took)}, longer than --every "
                          f"{format_duration(self.schedule.every)}: the next round starts now")
            return
        next_start = datetime.now(UTC).timestamp() + wait
        self._say(f"next round at {datetime.fromtimestamp(next_start, UTC):%H:%M:%S} UTC "
                  f"(in {format_duration(wait)}); Ctrl-C stops the schedule")
        deadline = time.monotonic() + wait
        while not self.stop_signal and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, WAIT_STEP))

    def _on_signal(self, number: int, _frame: object) -> None:
        """Pass the first stop signal on to a running experiment; never cut its rollbacks or its results short.
        Runs in the main thread between two statements: it only records and signals; _say prints later."""
        name = signal.Signals(number).name
        first = self.stop_signal is None
        self.stop_signal = self.stop_signal or number
        if self.child is None:
            self.notes.append(f"{name}: stopping the schedule")
        elif not first:
            self.notes.append(f"{name}: already stopping; waiting for the run to finish its rollbacks and results")
        elif self.experiment_ended:
            self.notes.append(f"{name}: the run is already healing the lab and writing its results; "
                              "the schedule stops after it")
        else:
            self.notes.append(f"{name}: passed on to the running experiment: it plays its rollbacks, the lab is "
                              "healed and everything measured is written; then the schedule stops")
            self.child.send_signal(number)

    def _stopped(self, runs: int) -> int:
        name = signal.Signals(self.stop_signal).name
        self._say(f"schedule stopped by {name} after {plural(runs, 'run')} ({self._status_counts()}); "
                  "every run that started finished its rollbacks and wrote its results")
        return 128 + self.stop_signal

    def _failed_cases(self) -> int:
        """1 when a JUnit report was asked for and a run failed as a test case, else 0."""
        if not self.schedule.junit:
            return 0
        cases = [junit.run_case(summary) for summary in self.summaries]
        failed = sum(case.failure is not None or case.error is not None for case in cases)
        self._say(f"JUnit report {display_path(self.schedule.junit)}: {len(cases)} test cases, {failed} failed")
        return 1 if failed else 0

    def _status_counts(self) -> str:
        return ", ".join(f"{count} {status}" for status, count in sorted(self.statuses.items())) or "none ran"

    def _say(self, text: str) -> None:
        notes, self.notes = self.notes, []
        for line in [*notes, text]:
            print(line, file=self.out, flush=True)


def results_folder(journal: Path) -> Path | None:
    """The run's folder, as the chaoslab control wrote it into the run's journal; None if the run
    left no journal or ended before the control made its folder."""
    try:
        extensions = json.loads(journal.read_text(encoding="utf-8")).get("extensions") or []
    except (OSError, ValueError, AttributeError):
        return None
    folder = next((each.get("results") for each in extensions if isinstance(each, dict)
                   and each.get("name") == "chaoslab" and each.get("results")), None)
    return Path(folder) if folder else None


def keep_log(log: Path, folder: Path | None, experiment: Path) -> Path | None:
    """Move Chaos Toolkit's log of a run into the run's folder; without one, next to the runs."""
    if not log.exists():
        return None
    if folder is not None and folder.is_dir():
        kept = folder / RUN_LOG
    else:
        results_dir().mkdir(parents=True, exist_ok=True)
        kept = results_dir() / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{experiment.stem}-{RUN_LOG}"
    shutil.move(log, kept)
    return kept


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def progress_line(line: str) -> str | None:
    """What of a chaos console line to show: phases, warnings, errors, and anything that is not a log line."""
    match = LOG_LINE.match(line)
    if not match:
        return line or None
    clock, level, message = match.groups()
    if level in ("WARNING", "ERROR", "CRITICAL") and not message.startswith(ROUTINE_WARNINGS):
        return f"{clock} {level.lower()}: {message}"
    return f"{clock} {message}" if message.startswith(PHASES) else None


def downtime_text(summary: dict) -> str:
    """'downtime 3.64 s (theory 2.00-5.22 s)', 'downtime over 12.27 s (never recovered)', 'no downtime measured'."""
    theory = summary.get("theory") or {}
    expected = ""
    if theory.get("expect") == "recovery":
        expected = f" (theory {theory['low']:.2f}-{theory['high']:.2f} s)"
    if summary.get("downtime") is not None:
        return f"downtime {summary['downtime']:.2f} s{expected}"
    if summary.get("downtime_at_least") is not None:
        return f"downtime over {summary['downtime_at_least']:.2f} s (never recovered)"
    return "no downtime measured"


def display_path(path: Path | None) -> str:
    """A path relative to the working directory when it is under it."""
    if path is None:
        return "?"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def chaos_executable() -> str:
    """Chaos Toolkit's `chaos`, installed next to this Python."""
    chaos = Path(sys.executable).parent / "chaos"
    if not chaos.exists():
        raise ChaoslabError(f"{chaos} does not exist; install chaostoolkit in this environment (pip install chaostoolkit)")
    return str(chaos)


# ---------------------------------------------------------------------------- unattended runs


def cron_times(every: float) -> str | None:
    """The crontab time fields for every `every` seconds, or None when cron cannot express it."""
    minutes, seconds = divmod(every, 60)
    if seconds or minutes < 1:
        return None
    minutes = int(minutes)
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if rest or 24 % hours:
        return None
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *" if hours < 24 else "0 0 * * *"


def unattended_settings(environment: Mapping[str, str]) -> dict[str, str]:
    """The CHAOSLAB_* variables of environment, which the unattended runs get through their environment file."""
    return {name: value for name, value in sorted(environment.items()) if name.startswith("CHAOSLAB_")}


def write_environment_file(path: Path, settings: Mapping[str, str]) -> Path:
    """The settings as KEY='value' lines, for systemd's EnvironmentFile= and the shell alike, in a file of
    mode 0600 (the VRRP password may be one of them): written whole, never readable by others, not even
    while it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{name}={shlex.quote(value)}\n" for name, value in settings.items()))
    os.replace(temporary, path)
    return path


def unattended(schedule: Schedule, environment_file: Path) -> str:
    """A crontab line and systemd service and timer units that run one round of the schedule every schedule.every,
    with the settings of environment_file (see write_environment_file); no setting's value is in the text."""
    if schedule.every < 60:
        raise ChaoslabError(f"--every {format_duration(schedule.every)} is too often for unattended runs; use 1m or more")
    chaoslab = Path(sys.executable).parent / "chaoslab"
    arguments = [str(chaoslab), "schedule", "--count", "1"]
    arguments += ["--profile", schedule.profile] if schedule.profile else []
    arguments += [str(path) for path in schedule.experiments]
    log = results_dir() / "schedule.log"
    every = format_duration(schedule.every)
    times = cron_times(schedule.every)
    settings = shlex.quote(str(environment_file))
    if times:
        command = (f"cd {shlex.quote(str(PROJECT_DIR))} && set -a && . {settings} && set +a && "
                   f"{shlex.join(arguments)} >> {shlex.quote(str(log))} 2>&1")
        cron = f"{times} {command.replace('%', chr(92) + '%')}"
    else:
        cron = (f"# cron cannot run every {every} exactly (it needs minutes that divide an hour or hours that "
                "divide a day): use the systemd timer")
    names = ", ".join(path.name for path in schedule.experiments)
    return f"""# crontab line (crontab -e, as root): one round every {every}, output appended to {log}
{cron}

# /etc/systemd/system/{UNIT_NAME}.service
[Unit]
Description=chaoslab resilience runs, one round: {names}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={PROJECT_DIR}
# the CHAOSLAB_* settings, mode 0600 (the VRRP password may be one of them)
EnvironmentFile={environment_file}
ExecStart={shlex.join(arguments)}
# systemctl stop: SIGINT to chaoslab alone, which lets the running experiment roll back and write its results
KillSignal=SIGINT
KillMode=mixed
TimeoutStopSec=10min

# /etc/systemd/system/{UNIT_NAME}.timer
[Unit]
Description=chaoslab resilience runs every {every}

[Timer]
OnActiveSec=1min
OnUnitActiveSec={round(schedule.every)}s
AccuracySec=1s

[Install]
WantedBy=timers.target

# then: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}.timer
"""
