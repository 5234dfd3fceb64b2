"""The failover benchmark matrix: every profile x fault scenario, run for real, judged against
VRRP theory and the targets (`chaoslab bench matrix`, in chaoslab.tools.bench).

Each run is `chaos run` of the scenario's experiment (EXPERIMENTS) on a lab of
the benchmark's own prefix,
with the profile set by CHAOSLAB_PROFILE: what a user runs, measured by
chaoslab's own control (sampler, event recorder, analysis). The lab of a
profile stays up across its runs; runs go round the scenarios, repeat after
repeat, so that a noisy minute spreads over all of them. During each run
tcpdump at the client records the gratuitous ARPs that cross-check the
instrument (chaoslab.tools.capture).

Every run's folder (journal, samples, events, summary, chart, capture) stays
under the folder the caller gives; chaoslab.tools.matrix_docs writes the tables, the
chart and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaoslab.control import experiment_options
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.measure import analysis, theory
from chaoslab.measure.client import Outcome
from chaoslab.measure.results import EVENTS, SAMPLES, SUMMARY
from chaoslab.paths import EXPERIMENTS_DIR
from chaoslab.tools.capture import Capture, CrossCheck, cross_check, link_address

PROFILES = ("seed", "fast")
# scenario -> the experiment that runs it (its chaoslab extension names the same scenario)
EXPERIMENTS = {
    "halt-master": "halt-master.json",
    "haproxy-kill": "haproxy-crash.json",
    "keepalived-crash": "keepalived-crash.json",
    "keepalived-stop": "keepalived-stop.json",
    "backend-down": "backend-down.json",
    "haproxy-freeze": "frozen-haproxy.json",
    "haproxy-reload": "haproxy-reload.json",
}
SCENARIOS = tuple(EXPERIMENTS)
MATRIX_PREFIX = "matrix"
CROSS_CHECK_TOLERANCE = 0.05  # seconds: capture, event recorder and sampler must agree within this
# scenarios in which the master falls silent: the backup's master-down timer runs from its last advert
SILENT_MASTER = ("halt-master", "keepalived-crash")
RUN_TIMEOUT = 600


@dataclass
class Measurement:
    """What one run measured (seconds after the injection where a time is relative)."""

    profile: str
    scenario: str
    status: str
    downtime: float | None
    failed: int
    vip_moved: float | None
    answering: float | None
    within_theory: bool | None
    send_gap: float | None
    from_last_advert: float | None
    folder: str
    cross_check: CrossCheck | None = None
    impact_seconds: float | None = None  # a partial outage's impact window (None: the outage was not partial)
    failed_share: float | None = None


@dataclass(frozen=True)
class RunFiles:
    """What one `chaos run` left: its summary and samples, and the capture's cross-check."""

    summary: dict
    samples: list[Outcome]
    cross_check: CrossCheck | None


@dataclass(frozen=True)
class Target:
    """A target of the issue for one cell of the matrix: a value measured over all its runs
    (None if a run could not give it) and the test that value must pass."""

    profile: str
    scenario: str
    text: str
    measure: Callable[[list[Measurement]], float | None]
    met: Callable[[float], bool]
    unit: str = "s"

    def value(self, runs: list[Measurement]) -> float | None:
        return self.measure(runs) if runs else None

    def value_text(self, runs: list[Measurement]) -> str:
        value = self.value(runs)
        if value is None:
            return "n/a"
        return f"{value:.2f} s" if self.unit == "s" else f"{value:g} {self.unit}"


@dataclass
class Cell:
    """One profile x scenario: its runs, VRRP theory, the target if it has one."""

    profile: str
    scenario: str
    prediction: theory.Prediction
    target: Target | None
    runs: list[Measurement] = field(default_factory=list)

    @property
    def downtimes(self) -> list[float]:
        return [run.downtime for run in self.runs if run.downtime is not None]

    @property
    def partial_runs(self) -> list[Measurement]:
        return [run for run in self.runs if run.impact_seconds is not None]

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "-"
        value = self.target.value(self.runs)
        return "PASS" if value is not None and self.target.met(value) else "FAIL"

    @property
    def within_theory(self) -> str:
        judged = [run.within_theory for run in self.runs if run.within_theory is not None]
        return f"{sum(judged)}/{len(judged)}" if judged else "-"

    @property
    def checks(self) -> list[CrossCheck]:
        return [run.cross_check for run in self.runs if run.cross_check is not None]

    @property
    def cross_check_verdict(self) -> str:
        """PASS when, in every takeover, the captures saw the new master's first gratuitous ARP
        and first advert within CROSS_CHECK_TOLERANCE of the event recorder's MASTER event, and
        the ARP within it of the sampler's first answer where an outage was running then;
        "-" without a takeover."""
        if not self.checks:
            return "-"
        differences = [check.announcement_after_master for check in self.checks]
        differences += [check.advert_after_master for check in self.checks]
        differences += [check.answer_after_announcement for check in self.checks
                        if check.answer_after_announcement is not None]
        agree = all(value is not None and abs(value) <= CROSS_CHECK_TOLERANCE for value in differences)
        return "PASS" if agree else "FAIL"


# ---------------------------------------------------------------------------- pure functions


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (with 3 values, p95 is the largest); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def send_gap(samples: Sequence[Outcome], summary: dict) -> float | None:
    """The longest time between two requests sent in the fault window. Far above the sampler's
    interval, it means the sampler could not send: every worker was waiting on a request that
    would time out, so the first answer after an outage may come later than the VIP could give it."""
    inject, heal = summary["fault"]["inject"], summary["fault"]["heal"]
    if inject is None:
        return None
    sent = sorted(sample.sent for sample in samples if sample.sent >= inject and (heal is None or sample.sent <= heal))
    return round(max((later - earlier for earlier, later in zip(sent, sent[1:])), default=0.0), 3)


def vip_moved(summary: dict) -> float | None:
    """Seconds from the injection until a node that did not hold the VIP before holds it."""
    inject = summary["fault"]["inject"]
    before = set(summary["vip_holder_before"] or [])
    if inject is None:
        return None
    return next((round(entry["t"] - inject, 3) for entry in summary["vip_timeline"]
                 if entry["t"] >= inject and set(entry["holders"]) - before), None)


def measurement(profile: str, scenario: str, files: RunFiles, folder: Path) -> Measurement:
    """A run's measurement from what it left."""
    summary = files.summary
    answering = summary["phases"]["answering"]
    no_outage = summary["main_outage"] is None and summary["downtime"] == 0.0
    partial = (summary.get("impact") or {}).get("kind") == "partial"
    check = files.cross_check
    main_end = None if summary["main_outage"] is None else summary["outages"][summary["main_outage"]]["end"]
    from_last_advert = None
    if scenario in SILENT_MASTER and check is not None and check.last_master_advert is not None and main_end is not None:
        from_last_advert = round(main_end - check.last_master_advert, 3)
    return Measurement(
        profile=profile,
        scenario=scenario,
        status=summary["run"]["status"],
        downtime=summary["downtime"],
        failed=(summary.get("impact") or {}).get("failed", 0),
        vip_moved=vip_moved(summary),
        answering=0.0 if no_outage else answering,
        within_theory=summary["within_theory"],
        send_gap=send_gap(files.samples, summary),
        from_last_advert=from_last_advert,
        folder=str(folder),
        cross_check=check,
        impact_seconds=(summary.get("impact") or {}).get("seconds") if partial else None,
        failed_share=(summary.get("impact") or {}).get("failed_share") if partial else None,
    )


def targets(topology: Topology) -> list[Target]:
    """The issue's targets, with the numbers the topology's profiles imply.

    The seed's halted master is judged from the master's last advert before the halt (the
    captures see it) to the first answer: the backup's master-down timer runs from that
    advert, so the clients' downtime alone falls anywhere from one advert interval less."""
    seed = topology.profile("seed")
    backup = min(spec.vrrp_priority for spec in topology.loadbalancers)
    mdi = theory.master_down_interval(seed.advert_int, backup, seed.vrrp_version)
    low, high = 0.9 * mdi, 1.1 * mdi

    def median_of(field: str) -> Callable[[list[Measurement]], float | None]:
        def measure(runs: list[Measurement]) -> float | None:
            values = [getattr(run, field) for run in runs]
            return None if None in values else median(values)
        return measure

    def most_failed(runs: list[Measurement]) -> float:
        return max(run.failed for run in runs)

    def slowest_move(runs: list[Measurement]) -> float | None:
        """The worst run's time until the VIP had moved and answered again."""
        times = [(run.vip_moved, run.answering) for run in runs]
        return None if any(None in pair for pair in times) else max(max(pair) for pair in times)

    half_second = median_of("downtime"), (lambda value: value <= 0.5)
    return [
        Target("seed", "halt-master", f"from the master's last advert: median within ±10 % of 3 x advert + skew "
               f"= {mdi:.2f} s ({low:.2f}-{high:.2f} s)", median_of("from_last_advert"),
               lambda value: low <= value <= high),
        Target("fast", "halt-master", "median ≤ 0.5 s", *half_second),
        Target("fast", "haproxy-kill", "median ≤ 0.5 s", *half_second),
        Target("fast", "keepalived-crash", "median ≤ 0.5 s", *half_second),
        Target("fast", "backend-down", "0 failed requests in every run", most_failed, lambda value: value == 0,
               "failed (worst run)"),
        Target("fast", "haproxy-freeze", "VIP moved and answering within 1 s in every run", slowest_move,
               lambda value: value <= 1.0),
    ]


def cells_of(topology: Topology, profiles: Sequence[str], scenarios: Sequence[str], repeats: int) -> list[Cell]:
    """The empty matrix, profile by profile, with theory and targets filled in; refuses an unknown
    profile or scenario, a scenario without its experiment, or fewer than one repeat."""
    unknown = [f"profile {name!r}" for name in profiles if name not in topology.profile_names]
    unknown += [f"scenario {name!r}" for name in scenarios if name not in SCENARIOS]
    if unknown:
        raise ChaoslabError(f"unknown {', '.join(unknown)}; profiles: {', '.join(topology.profile_names)}; "
                            f"scenarios: {', '.join(SCENARIOS)}")
    if repeats < 1 or not profiles or not scenarios:
        raise ChaoslabError("a matrix needs at least one profile, one scenario and one repeat")
    for scenario in scenarios:
        find_experiment(scenario)
    backup = min(spec.vrrp_priority for spec in topology.loadbalancers)
    by_cell = {(target.profile, target.scenario): target for target in targets(topology)}
    return [
        Cell(profile, scenario, theory.expected_outage(scenario, topology.profile(profile).settings, backup,
                                                webservers=len(topology.webservers)),
             by_cell.get((profile, scenario)))
        for profile in profiles for scenario in scenarios
    ]


def find_experiment(scenario: str) -> Path:
    """The experiment file of a scenario; it must name that scenario in its chaoslab extension."""
    path = EXPERIMENTS_DIR / EXPERIMENTS[scenario]
    named = experiment_options(json.loads(path.read_text(encoding="utf-8"))).get("scenario")
    if named != scenario:
        raise ChaoslabError(f"{path} runs scenario {named!r}, not {scenario!r}")
    return path


def save(matrix: Sequence[Cell], path: Path) -> Path:
    """Every run of the matrix as JSON, next to the runs' folders."""
    path.write_text(json.dumps([asdict(run) for cell in matrix for run in cell.runs], indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- running


def run_experiment(lab: Lab, experiment: Path, folder: Path) -> RunFiles:
    """`chaos run` of one experiment on the lab, with packet captures for the cross-check."""
    folder.mkdir(parents=True)
    chaos = str(Path(sys.executable).parent / "chaos")
    environment = {**os.environ, "CHAOSLAB_PREFIX": lab.prefix, "CHAOSLAB_PROFILE": lab.profile.name,
                   "CHAOSLAB_RESULTS": str(folder)}
    macs = {node.name: link_address(node, lab.topology.vip_interface_of(node.spec)) for node in lab.loadbalancers()}
    addresses = {spec.name: spec.address(lab.topology.vip_network) for spec in lab.topology.loadbalancers}
    with Capture(lab, folder) as capture:
        result = subprocess.run(
            [chaos, "--log-file", str(folder / "chaos.log"), "run", "--journal-path", str(folder / "journal.json"),
             str(experiment)],
            capture_output=True, text=True, env=environment, cwd=folder, timeout=RUN_TIMEOUT,
        )
    summaries = list(folder.glob(f"*/{SUMMARY}"))
    if result.returncode not in (0, 1) or len(summaries) != 1:
        raise ChaoslabError(f"chaos run {experiment.name} failed (exit {result.returncode}); see {folder / 'chaos.log'}")
    summary = json.loads(summaries[0].read_text(encoding="utf-8"))
    events = analysis.load_events(summaries[0].parent / EVENTS)
    samples = analysis.load_samples(summaries[0].parent / SAMPLES)
    check = cross_check(summary, events, capture.announcements(), capture.adverts(), macs, addresses)
    return RunFiles(summary, samples, check)


def measure_profile(profile: str, cells_of_profile: list[Cell], repeats: int, prefix: str, root: Path) -> None:
    """Bring the profile's lab up, run every cell `repeats` times (round robin), take the lab down."""
    lab = Lab(LabSettings(prefix=prefix, profile=profile))
    lab.down()
    try:
        lab.up()
        total = repeats * len(cells_of_profile)
        done = 0
        for repeat in range(repeats):
            for cell in cells_of_profile:
                started = time.monotonic()
                folder = root / profile / f"{cell.scenario}-{repeat + 1}"
                files = run_experiment(lab, find_experiment(cell.scenario), folder)
                run = measurement(profile, cell.scenario, files, folder)
                cell.runs.append(run)
                done += 1
                print(f"[{profile} {done}/{total}] {progress_line(run)} ({time.monotonic() - started:.1f} s)", flush=True)
    finally:
        lab.down()


def progress_line(run: Measurement) -> str:
    gap = "n/a" if run.send_gap is None else f"{run.send_gap * 1000:.0f} ms"
    text = f"{run.scenario}: {run.status}, downtime {_seconds(run.downtime)}, {run.failed} failed, longest send gap {gap}"
    check = run.cross_check
    if check is not None:
        text += (f"; GARP - MASTER {_milliseconds(check.announcement_after_master)}, "
                 f"advert - MASTER {_milliseconds(check.advert_after_master)}, "
                 f"answer - GARP {_milliseconds(check.answer_after_announcement)}")
    if run.from_last_advert is not None:
        text += f"; from the master's last advert {_seconds(run.from_last_advert)}"
    return text


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _milliseconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:+.0f} ms"
