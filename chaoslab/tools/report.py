"""The report: one self-contained HTML page over the history of runs (results/report.html).

Per experiment: the latest status, the resilience score, the distribution of
downtime, the trend of failover latency over time per profile against theory,
and every run with a link to its own chart.

- Resilience score: the share of measured runs whose downtime stayed within
  the experiment's downtime budget ("downtime_budget", seconds, in its chaoslab
  extension block, as it was when the run ran). A run whose VIP never answered
  again missed it; a run that measured nothing (no fault injected, no samples)
  is not judged, nor is a run of an experiment without a budget.
- Theory: chaoslab.measure.theory.expected_outage for the experiment's scenario under
  the profile's current settings in the topology; for a profile the topology
  no longer has, the theory its latest run stored.
- Charts are PNGs drawn with matplotlib's Agg canvas and embedded as data URIs;
  each run's own chart (results/<run>/downtime.png) is linked relatively, so the
  page works opened from disk next to the results.

    python -m chaoslab.tools.report --bench [--runs 100]   # time a report over synthetic runs
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology
from chaoslab.measure import history, theory
from chaoslab.measure.history import RunRecord
from chaoslab.measure.results import CHART, SUMMARY
from chaoslab.paths import EXPERIMENTS_DIR, PROJECT_DIR

__all__ = ["Score", "build_report", "resilience_score"]

REPORT_FILE = "report.html"
DPI = 80
FIGSIZE = (12.5, 3.8)
PROFILE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf")
BUDGET_COLOUR = "#d62728"
STATUS_CLASSES = {"completed": "good", "deviated": "warn", "failed": "bad", "interrupted": "bad", "aborted": "bad"}


# ---------------------------------------------------------------------------- judging runs


@dataclass(frozen=True)
class Score:
    """How often an experiment's runs met their downtime budget."""

    met: int
    missed: int
    unjudged: int  # no measurement (no fault, no samples) or no budget declared

    @property
    def judged(self) -> int:
        return self.met + self.missed

    @property
    def percent(self) -> float | None:
        return 100 * self.met / self.judged if self.judged else None

    def text(self) -> str:
        if not self.judged:
            return "no run to judge yet"
        return f"{self.percent:.0f}% ({self.met} of {self.judged} runs within budget)"


def resilience_score(runs: Sequence[RunRecord]) -> Score:
    """Count the runs that met their budget, missed it, or cannot be judged (nothing measured, no budget)."""
    verdicts = [run.met_budget for run in runs]
    return Score(verdicts.count(True), verdicts.count(False), verdicts.count(None))


@dataclass(frozen=True)
class ExperimentRuns:
    """One experiment's runs, oldest first."""

    name: str
    runs: list[RunRecord]

    @property
    def latest(self) -> RunRecord:
        return self.runs[-1]

    @property
    def profiles(self) -> list[str]:
        return sorted({run.profile or "?" for run in self.runs})


def by_experiment(runs: Sequence[RunRecord]) -> list[ExperimentRuns]:
    """The runs grouped per experiment (its short name), experiments sorted by name."""
    groups: dict[str, list[RunRecord]] = {}
    for run in sorted(runs, key=lambda run: (run.started_at, run.id or 0)):
        groups.setdefault(run.name, []).append(run)
    return [ExperimentRuns(name, groups[name]) for name in sorted(groups)]


def plotted_downtime(run: RunRecord) -> float | None:
    """The downtime to draw: measured, else the lower bound of an outage that never ended."""
    return run.downtime if run.downtime is not None else run.downtime_at_least


@cache
def _topology() -> Topology:
    return Topology.load()


@cache
def prediction(scenario: str | None, profile: str) -> theory.Prediction | None:
    """What theory expects for the scenario under the profile's current settings;
    None for an unknown scenario or a profile the topology no longer has."""
    if scenario not in theory.SCENARIOS:
        return None
    topology = _topology()
    backup = min(spec.vrrp_priority for spec in topology.loadbalancers)
    try:
        return theory.expected_outage(scenario, topology.profile(profile).settings, backup,
                                      webservers=len(topology.webservers))
    except (ChaoslabError, ValueError):
        return None


def theory_window(scenario: str | None, profile: str, runs: Sequence[RunRecord]) -> tuple[float, float] | None:
    """(low, high) seconds VRRP theory expects for the scenario under the profile (high may be inf);
    None when theory has no single prediction. A profile the topology no longer has: its latest run's theory."""
    expected = prediction(scenario, profile)
    if expected is not None:
        return (expected.low, expected.high) if expected.has_bounds else None
    stored = [run for run in runs if run.profile == profile and run.theory_expect is not None]
    if not stored or stored[-1].theory_expect == "no-prediction":
        return None
    latest = stored[-1]
    high = math.inf if latest.theory_expect == "no-recovery" else latest.theory_high
    return (latest.theory_low or 0.0, high) if high is not None else None


def changes(runs: Sequence[RunRecord]) -> list[tuple[float, str]]:
    """(time, what) where the commit or a daemon's version differs from the run before."""
    found = []
    for before, after in zip(runs, runs[1:]):
        what = [f"{name} {getattr(after, f'{name}_version')}" for name in ("haproxy", "keepalived", "apache2")
                if getattr(before, f"{name}_version") != getattr(after, f"{name}_version")]
        if before.git_commit != after.git_commit:
            what.append(f"commit {after.git_commit[:7]}")
        if what:
            found.append((after.started_at, ", ".join(what)))
    return found


# ---------------------------------------------------------------------------- charts


def draw_experiment(experiment: ExperimentRuns) -> bytes:
    """One PNG: the distribution of downtime per profile (left), and its trend over time (right)."""
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(1, 2, width_ratios=(1, 2.8), wspace=0.06, left=0.06, right=0.99, top=0.88, bottom=0.2)
    spread = figure.add_subplot(grid[0])
    trend = figure.add_subplot(grid[1], sharey=spread)
    colours = {profile: PROFILE_COLOURS[i % len(PROFILE_COLOURS)] for i, profile in enumerate(experiment.profiles)}
    _draw_distribution(spread, experiment, colours)
    _draw_trend(trend, experiment, colours)
    budget = experiment.latest.downtime_budget
    values = [value for run in experiment.runs if (value := plotted_downtime(run)) is not None]
    top = max([*values, budget or 0.0, 0.1])
    for axes in (spread, trend):
        if budget is not None:
            axes.axhline(budget, color=BUDGET_COLOUR, linestyle=":", linewidth=1.6)
        axes.grid(True, axis="y", alpha=0.3)
    spread.set_ylim(0, top * 1.15)
    if budget is not None:
        spread.text(0.02, budget, f" budget {budget:g} s", color=BUDGET_COLOUR, va="bottom", fontsize=9,
                    transform=spread.get_yaxis_transform())
    trend.tick_params(labelleft=False)
    spread.set_ylabel("downtime (s)")
    spread.set_title("distribution per profile", fontsize=10.5)
    trend.set_title("failover latency over time, against theory", fontsize=10.5)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _draw_distribution(axes: Axes, experiment: ExperimentRuns, colours: dict[str, str]) -> None:
    """A box per profile, with every run as a jittered dot on it (hollow: never recovered)."""
    jitter = random.Random(experiment.name)
    profiles = experiment.profiles
    for position, profile in enumerate(profiles, 1):
        runs = [run for run in experiment.runs if (run.profile or "?") == profile and plotted_downtime(run) is not None]
        values = [plotted_downtime(run) for run in runs]
        if values:
            axes.boxplot([values], positions=[position], widths=0.5, showfliers=False,
                         medianprops={"color": "black"}, boxprops={"color": "#555555"})
        for run, value in zip(runs, values):
            recovered = run.downtime is not None
            axes.scatter(position + jitter.uniform(-0.18, 0.18), value, s=22, zorder=3,
                         marker="o" if recovered else "^", linewidths=1.2, edgecolors=colours[profile],
                         color=colours[profile] if recovered else "white")
    axes.set_xticks(range(1, len(profiles) + 1), profiles)
    axes.set_xlim(0.4, len(profiles) + 0.6)
    axes.set_xlabel("profile")


def _draw_trend(axes: Axes, experiment: ExperimentRuns, colours: dict[str, str]) -> None:
    """Downtime per run over time, one line per profile; theory as a band; version or commit changes marked."""
    scenario = experiment.latest.scenario
    for profile in experiment.profiles:
        runs = [run for run in experiment.runs if (run.profile or "?") == profile and plotted_downtime(run) is not None]
        colour = colours[profile]
        window = theory_window(scenario, profile, experiment.runs)
        if window is None:
            theory_label = "no single prediction" if scenario else "none: no scenario declared"
        elif math.isinf(window[1]):
            theory_label = "never recovers"
        else:
            theory_label = f"{window[0]:.2f}-{window[1]:.2f} s"
            axes.axhspan(window[0], window[1], color=colour, alpha=0.12, linewidth=0)
            axes.axhline(window[1], color=colour, linestyle="--", linewidth=1.2)
        axes.plot([_when(run) for run in runs], [plotted_downtime(run) for run in runs], color=colour,
                  marker="o", markersize=4.5, linewidth=1.2, label=f"{profile} (theory {theory_label})")
        unrecovered = [run for run in runs if run.downtime is None]
        if unrecovered:
            axes.scatter([_when(run) for run in unrecovered], [plotted_downtime(run) for run in unrecovered],
                         marker="^", s=48, color="white", edgecolors=colour, linewidths=1.4, zorder=3,
                         label=f"{profile}: never recovered (at least)")
    for when, what in changes(experiment.runs):
        moment = datetime.fromtimestamp(when, UTC)
        axes.axvline(moment, color="#777777", linestyle="-.", linewidth=0.9)
        axes.text(moment, 0.98, f" {what}", transform=axes.get_xaxis_transform(), rotation=90, va="top",
                  ha="right", fontsize=7.5, color="#555555")
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_xlabel("run started (UTC)")
    axes.legend(loc="upper left", fontsize=8.5, framealpha=0.9)


def _when(run: RunRecord) -> datetime:
    return datetime.fromtimestamp(run.started_at, UTC)


# ---------------------------------------------------------------------------- the page


def build_report(history_file: Path | None = None, output: Path | None = None) -> Path:
    """Write the report of the history (default results/history.sqlite) to output (default results/report.html)."""
    history_file = history_file or history.history_path()
    output = output or history_file.parent / REPORT_FILE
    runs = history.load(history_file)
    if not runs:
        raise ChaoslabError(f"no runs recorded in {history_file}; run an experiment first (chaos run or chaoslab schedule)")
    experiments = by_experiment(runs)
    charts = {experiment.name: draw_experiment(experiment) for experiment in experiments}
    output.parent.mkdir(parents=True, exist_ok=True)
    page = render(experiments, charts, history_file.parent, output.parent, history_file)
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, output)
    return output


def render(experiments: Sequence[ExperimentRuns], charts: dict[str, bytes], results: Path, page_dir: Path,
           source: Path) -> str:
    """The HTML page. results is the folder run folders are relative to; page_dir where the page will be."""
    total = sum(len(experiment.runs) for experiment in experiments)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = "\n".join(_section(experiment, charts[experiment.name], results, page_dir) for experiment in experiments)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>chaoslab resilience report</title>
<style>{STYLE}</style>
</head>
<body data-runs="{total}" data-experiments="{len(experiments)}">
<h1>chaoslab resilience report</h1>
<p class="meta">{_count(total, "run")} of {_count(len(experiments), "experiment")}, from {_e(str(source))};
 generated {generated}.</p>
<p class="meta">Resilience score: the share of measured runs whose downtime stayed within the experiment's
downtime budget. A run whose VIP never answered again missed it; runs that measured nothing are not judged.
Theory: VRRP's expected outage for the profile's settings.</p>
{_overview(experiments)}
{sections}
<script>{SCRIPT}</script>
</body>
</html>
"""


def _overview(experiments: Sequence[ExperimentRuns]) -> str:
    rows = []
    for experiment in experiments:
        latest = experiment.latest
        score = resilience_score(experiment.runs)
        rows.append(
            f'<tr><td><a href="#{_e(experiment.name)}">{_e(experiment.name)}</a></td>'
            f"<td>{_status(latest)}</td><td>{_when_text(latest)}</td><td>{_downtime_text(latest)}</td>"
            f"<td>{_budget_text(latest.downtime_budget)}</td><td>{_e(score.text())}</td>"
            f"<td class=num>{len(experiment.runs)}</td></tr>"
        )
    return ('<table class="overview"><tr><th>experiment</th><th>latest status</th><th>latest run</th>'
            "<th>latest downtime</th><th>budget</th><th>resilience score</th><th>runs</th></tr>\n"
            + "\n".join(rows) + "\n</table>")


def _section(experiment: ExperimentRuns, chart: bytes, results: Path, page_dir: Path) -> str:
    latest = experiment.latest
    score = resilience_score(experiment.runs)
    measured = [run.downtime for run in experiment.runs if run.downtime is not None]
    median = f"median downtime {statistics.median(measured):.2f} s" if measured else "no recovered run"
    image = base64.b64encode(chart).decode("ascii")
    rows = "\n".join(_run_row(run, results, page_dir) for run in reversed(experiment.runs))
    unjudged = f", {score.unjudged} not judged (nothing measured or no budget)" if score.unjudged else ""
    return f"""<section id="{_e(experiment.name)}" data-experiment="{_e(experiment.name)}"
 data-runs="{len(experiment.runs)}" data-met="{score.met}" data-missed="{score.missed}"
 data-unjudged="{score.unjudged}" data-latest-status="{_e(latest.status)}">
<h2>{_e(experiment.name)} <span class="title">{_e(latest.experiment)}</span></h2>
<p>Latest: {_status(latest)} {_when_text(latest)}, downtime {_downtime_text(latest)}, profile {_e(latest.profile or "?")}.
 File {_e(latest.experiment_file or "unknown")}, scenario {_e(latest.scenario or "none declared")}.</p>
<p class="score">Resilience score <b>{_e(score.text())}</b>: {score.met} met the budget of
 {_budget_text(latest.downtime_budget)}, {score.missed} missed it{unjudged}; {median}.</p>
<img alt="downtime of {_e(experiment.name)}: distribution and trend" src="data:image/png;base64,{image}">
<details{" open" if len(experiment.runs) <= 12 else ""}><summary>{len(experiment.runs)} runs, newest first</summary>
<table class="runs"><tr><th>#</th><th>started (UTC)</th><th>profile</th><th>status</th><th>downtime</th>
<th>budget</th><th>failed requests</th><th>phases (s after the fault)</th><th>VIP before &rarr; after</th>
<th>software</th><th>commit</th><th>run</th></tr>
{rows}
</table></details>
</section>"""


def _run_row(run: RunRecord, results: Path, page_dir: Path) -> str:
    met = {True: '<span class="met">met</span>', False: '<span class="missed">missed</span>', None: "&ndash;"}
    phases = ", ".join(f"{name} {value:.2f}" for name, value in run.phases.items() if value is not None)
    software = f"haproxy {run.haproxy_version}, keepalived {run.keepalived_version}, apache2 {run.apache2_version}"
    downtime = "" if run.downtime is None else f"{run.downtime:g}"
    return (
        f'<tr data-run-id="{run.id}" data-downtime="{downtime}" data-status="{_e(run.status)}">'
        f"<td class=num>{run.id}</td><td>{_when_text(run)}</td><td>{_e(run.profile or '?')}</td>"
        f"<td>{_status(run)}</td><td class=num>{_downtime_text(run)}</td><td>{met[run.met_budget]}</td>"
        f"<td class=num>{run.failed_requests if run.failed_requests is not None else '&ndash;'}</td>"
        f"<td>{_e(phases) if phases else '&ndash;'}</td>"
        f"<td>{_holders(run.vip_before)} &rarr; {_holders(run.vip_after)}</td>"
        f'<td class="small">{_e(software)}</td><td><code>{_e(run.git_commit[:10])}</code></td>'
        f"<td>{_run_links(run, results, page_dir)}</td></tr>"
    )


def _run_links(run: RunRecord, results: Path, page_dir: Path) -> str:
    folder = results / run.folder
    if not run.folder or not folder.is_dir():
        return '<span class="small">folder gone</span>'
    links = [f'<a href="{_e(_relative(folder / name, page_dir))}">{label}</a>'
             for name, label in ((CHART, "chart"), (SUMMARY, "summary")) if (folder / name).exists()]
    return " ".join(links) or '<span class="small">no chart</span>'


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _status(run: RunRecord) -> str:
    status = f'<span class="badge {STATUS_CLASSES.get(run.status, "unknown")}">{_e(run.status)}</span>'
    if run.aborted_by:
        status += f' <span class="badge bad">aborted by the {_e(run.aborted_by)}</span>'
    return status


def _downtime_text(run: RunRecord) -> str:
    if run.partial and run.impact_seconds is not None:
        longest = f", longest run of failures {run.downtime:.2f} s" if run.downtime is not None else ""
        return f"partial outage {run.impact_seconds:.2f} s, {run.failed_share:.0%} of requests failed{longest}"
    if run.downtime is not None:
        return f"{run.downtime:.2f} s"
    if run.downtime_at_least is not None:
        return f"&gt; {run.downtime_at_least:.2f} s, never recovered"
    return "not measured"


def _budget_text(budget: float | None) -> str:
    return f"{budget:g} s" if budget is not None else "none declared"


def _when_text(run: RunRecord) -> str:
    return datetime.fromtimestamp(run.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _holders(holders: list[str] | None) -> str:
    if holders is None:
        return "?"
    return _e(", ".join(holders)) if holders else "nobody"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px 32px; color: #222; max-width: 1400px; }
h1 { margin-bottom: 4px; }
h2 { margin-top: 36px; border-bottom: 2px solid #ccd; padding-bottom: 4px; }
h2 .title { font-weight: normal; color: #555; font-size: 0.75em; }
.meta { color: #555; margin: 4px 0; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
th, td { border: 1px solid #dde; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #eef; }
td.num { text-align: right; }
.small { font-size: 11px; color: #555; }
.badge { padding: 1px 6px; border-radius: 8px; font-size: 12px; color: white; background: #888; }
.badge.good { background: #2e7d32; } .badge.warn { background: #e08a00; } .badge.bad { background: #c62828; }
.met { color: #2e7d32; font-weight: bold; } .missed { color: #c62828; font-weight: bold; }
.score { font-size: 15px; }
img { max-width: 100%; border: 1px solid #eee; }
"""

# Tells a headless browser (and a curious reader) that every image loaded: <body data-broken-images="0">.
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) { return !(image.complete && image.naturalWidth > 0); });
  document.body.dataset.images = images.length;
  document.body.dataset.brokenImages = broken.length;
});
"""


# ---------------------------------------------------------------------------- benchmark


def synthetic_history(path: Path, count: int, seed: int = 7) -> None:
    """Fill a history with count plausible runs of the project's experiments over the last 30 days."""
    rng = random.Random(seed)
    topology = _topology()
    backup = min(spec.vrrp_priority for spec in topology.loadbalancers)
    catalogue = []
    for file in sorted(EXPERIMENTS_DIR.glob("*.json")):
        experiment = json.loads(file.read_text(encoding="utf-8"))
        options = next((e for e in experiment.get("extensions", []) if e.get("name") == "chaoslab"), {})
        if options.get("scenario") in theory.SCENARIOS:
            catalogue.append((file, experiment["title"], options["scenario"], options.get("downtime_budget")))
    now = time.time()
    template = RunRecord(
        experiment="", experiment_file=None, scenario=None, profile=None, provider="netns", prefix="bench",
        started_at=0.0, duration=None, status="completed", aborted_by=None, verdict="valid", requests=None,
        failed_requests=None, downtime=None, downtime_at_least=None, downtime_budget=None,
        vip_before=["haproxy-1"], vip_after=["haproxy-1"], keepalived_version="2.2.7", apache2_version="2.4.71",
    )
    for index in range(count):
        file, title, scenario, budget = catalogue[index % len(catalogue)]
        profile = topology.profile_names[index % len(topology.profile_names)]
        prediction = theory.expected_outage(scenario, topology.profile(profile).settings, backup,
                                            webservers=len(topology.webservers))
        started = now - 30 * 86400 * (1 - index / count)
        if prediction.never_recovers:
            downtime = None
        elif prediction.has_bounds:
            downtime = rng.uniform(prediction.low, prediction.high) * rng.uniform(0.9, 1.15)
        else:
            downtime = rng.uniform(0, 1.5 * (budget or 5))
        failed = int((downtime if downtime is not None else 12.0) / 0.01)
        history.insert(path, replace(
            template, experiment=title, experiment_file=str(file.relative_to(PROJECT_DIR)), scenario=scenario,
            profile=profile, started_at=started, duration=rng.uniform(9, 16),
            status="completed" if downtime is not None else "deviated", verdict="valid", requests=1500, failed_requests=failed,
            downtime=round(downtime, 3) if downtime is not None else None,
            downtime_at_least=round(downtime, 3) if downtime is not None else 12.0,
            downtime_budget=budget, phases={"detection": 1.0, "takeover": 1.5, "answering": 1.6},
            theory_low=prediction.to_json()["low"], theory_high=prediction.to_json()["high"],
            theory_expect=prediction.to_json()["expect"],
            haproxy_version="2.6.12-1+deb12u4" if index < count / 2 else "2.6.13-1",
            git_commit=f"{(index // 25) + 1:07x}" + "0" * 33, folder=f"bench-run-{index:03d}",
        ))


def bench(count: int = 100) -> float:
    """Time a report (charts included) over count synthetic runs; print and return the seconds."""
    with tempfile.TemporaryDirectory(prefix="chaoslab-bench-report-") as scratch:
        path = Path(scratch) / history.HISTORY_FILE
        synthetic_history(path, count)
        started = time.perf_counter()
        output = build_report(path, Path(scratch) / REPORT_FILE)
        seconds = time.perf_counter() - started
        size = output.stat().st_size
        experiments = len(by_experiment(history.load(path)))
    print(f"report over {count} runs of {experiments} experiments, charts included: {seconds:.2f} s, "
          f"{size / 1024:.0f} KiB of HTML (target: at most 5 s)")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.tools.report", description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="time a report over synthetic runs")
    parser.add_argument("--runs", type=int, default=100, help="how many synthetic runs (default 100)")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.error("use --bench; the report itself is: chaoslab report")
    bench(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
