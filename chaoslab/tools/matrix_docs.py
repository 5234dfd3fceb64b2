"""The failover benchmark's report: its tables, docs/BENCHMARKS.md and the chart docs/benchmarks.png.

Everything written here comes from one `chaoslab bench matrix` run: the cells it
measured (chaoslab.tools.matrix) and the context it ran in (command, date, machine,
load). Nothing is typed in by hand, so the docs cannot drift from a run.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from chaoslab.control import SAMPLER_TIMEOUT
from chaoslab.lab.providers.netns import NetnsProvider
from chaoslab.lab.topology import Topology
from chaoslab.measure.sampler import pool_size
from chaoslab.measure.theory import Prediction
from chaoslab.tools.matrix import CROSS_CHECK_TOLERANCE, Cell, median, percentile

MARKDOWN = "BENCHMARKS.md"
CHART = "benchmarks.png"


@dataclass
class RunContext:
    """Where, when and how a matrix ran."""

    command: str
    started: float = field(default_factory=time.time)
    machine: str = ""
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()
    duration: float = 0.0

    @classmethod
    def now(cls, command: str) -> RunContext:
        return cls(command=command, machine=machine_description(), load_before=os.getloadavg())

    def finish(self) -> None:
        self.load_after = os.getloadavg()
        self.duration = time.time() - self.started


def machine_description() -> str:
    """CPU model, cores, kernel and distribution of this machine."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distribution = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distribution = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{distribution}, kernel {platform.release()}, {os.cpu_count()} cores ({model})"


# ---------------------------------------------------------------------------- tables


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:+.0f}"


def theory_text(prediction: Prediction) -> str:
    if not prediction.has_bounds:
        return "no single prediction"
    if prediction.never_recovers:
        return "never recovers"
    share = "" if prediction.failed_share is None else f", {prediction.failed_share:.0%} failed"
    if prediction.high == 0:
        return "no outage" if prediction.measures == "downtime" else "no failure"
    window = f"{prediction.low:.2f}-{prediction.high:.2f} s"
    return window if prediction.measures == "downtime" else f"partial: {window}{share}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_table(matrix: Sequence[Cell]) -> str:
    """Downtime and failed requests per cell, beside theory and the target."""
    header = ("profile", "scenario", "runs", "downtime median", "downtime p95", "failed median", "failed p95",
              "partial outage: impact median, failed share", "theory", "within theory", "target", "measured",
              "verdict")
    rows = []
    for cell in matrix:
        failed = [run.failed for run in cell.runs]
        rows.append((
            cell.profile, cell.scenario, str(len(cell.runs)),
            _s(median(cell.downtimes)), _s(percentile(cell.downtimes, 0.95)),
            _count(median(failed)), _count(percentile(failed, 0.95)), _partial(cell),
            theory_text(cell.prediction), cell.within_theory,
            cell.target.text if cell.target else "-",
            cell.target.value_text(cell.runs) if cell.target else "-", cell.verdict,
        ))
    return markdown_table(header, rows)


def _partial(cell: Cell) -> str:
    """The impact window and failed share of the runs whose outage was partial."""
    runs = cell.partial_runs
    if not runs:
        return "-"
    shares = median([run.failed_share for run in runs])
    return f"{_s(median([run.impact_seconds for run in runs]))}, {shares:.0%} ({len(runs)}/{len(cell.runs)} runs)"


def _spread(values: list[float | None], missing: str) -> str:
    """'+6 (max 9)', with how many runs had nothing to compare."""
    known = [value for value in values if value is not None]
    absent = f"{len(values) - len(known)} {missing}" if len(known) < len(values) else ""
    if not known:
        return absent
    text = f"{_ms(median(known))} (max {max(abs(value) for value in known) * 1000:.0f})"
    return f"{text}; {absent}" if absent else text


def _longest_gap(cell: Cell) -> str:
    gaps = [run.send_gap for run in cell.runs if run.send_gap is not None]
    return f"{max(gaps) * 1000:.0f}" if gaps else "n/a"


def cross_check_table(matrix: Sequence[Cell]) -> str:
    """Per cell with a takeover: capture minus event recorder, sampler minus capture, in ms."""
    header = ("profile", "scenario", "takeovers", "first GARP - MASTER event, ms: median (max abs)",
              "first advert - MASTER event, ms: median (max abs)", "first answer - first GARP, ms: median (max abs)",
              f"verdict (±{CROSS_CHECK_TOLERANCE * 1000:.0f} ms)", "longest gap between requests sent, ms")
    rows = [
        (cell.profile, cell.scenario, str(len(cell.checks)),
         _spread([check.announcement_after_master for check in cell.checks], "without a GARP seen"),
         _spread([check.advert_after_master for check in cell.checks], "without an advert seen"),
         _spread([check.answer_after_announcement for check in cell.checks], "without an outage then"),
         cell.cross_check_verdict, _longest_gap(cell))
        for cell in matrix if cell.checks
    ]
    return markdown_table(header, rows)


# ---------------------------------------------------------------------------- chart


def plot_matrix(matrix: Sequence[Cell], path: Path, title: str) -> Path:
    """One panel per profile: each run's downtime as a dot, the median as a bar, VRRP theory's
    window as a grey band (hatched when theory says it never recovers), the target's verdict above."""
    profiles = list(dict.fromkeys(cell.profile for cell in matrix))
    figure = Figure(figsize=(6.5 * len(profiles), 4.8))
    FigureCanvasAgg(figure)
    for number, profile in enumerate(profiles, 1):
        _panel(figure.add_subplot(1, len(profiles), number), profile, [cell for cell in matrix if cell.profile == profile])
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _panel(axis: Axes, profile: str, row: list[Cell]) -> None:
    top = max([*(value for cell in row for value in cell.downtimes), 0.1]) * 1.15
    labelled: set[str] = set()

    def once(label: str) -> str | None:
        """A legend label the first time only."""
        first = label not in labelled
        labelled.add(label)
        return label if first else None

    for index, cell in enumerate(row):
        prediction = cell.prediction
        if prediction.never_recovers:
            axis.add_patch(Rectangle((index - 0.35, 0), 0.7, top, facecolor="none", edgecolor="0.6", hatch="//",
                                     zorder=1, label=once("theory: never recovers")))
        elif prediction.has_bounds:
            axis.add_patch(Rectangle((index - 0.35, prediction.low), 0.7,
                                     max(prediction.high - prediction.low, top * 0.005),
                                     color="0.8", zorder=1, label=once("VRRP theory")))
        if cell.downtimes:
            axis.bar(index, median(cell.downtimes), width=0.5, color="tab:blue", alpha=0.35, zorder=2,
                     label=once("median"))
            axis.scatter([index] * len(cell.downtimes), cell.downtimes, color="tab:blue", s=18, zorder=3,
                         label=once("each run"))
        if cell.target is not None:
            axis.text(index, 1.01, f"target: {cell.verdict}", transform=axis.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize=8, color="tab:green" if cell.verdict == "PASS" else "tab:red")
    axis.set_xticks(range(len(row)), [cell.scenario for cell in row], rotation=30, ha="right")
    axis.set_ylim(0, top)
    axis.set_ylabel("client downtime (s)")
    axis.set_title(f"profile {profile}", pad=18)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)


# ---------------------------------------------------------------------------- the document


def profile_lines(topology: Topology, profiles: Sequence[str]) -> list[str]:
    lines = []
    for name in profiles:
        profile = topology.profile(name)
        lines.append(f"- **{name}**: {profile.description}")
    return lines


def write_docs(matrix: Sequence[Cell], context: RunContext, topology: Topology, folder: Path) -> list[Path]:
    """docs/BENCHMARKS.md and docs/benchmarks.png from one matrix run."""
    folder.mkdir(parents=True, exist_ok=True)
    profiles = list(dict.fromkeys(cell.profile for cell in matrix))
    repeats = max((len(cell.runs) for cell in matrix), default=0)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(context.started))
    runs = f"{repeats} run{'' if repeats == 1 else 's'} each"
    chart = plot_matrix(matrix, folder / CHART, f"Client downtime per fault: measured ({runs}) and VRRP theory")
    load = ", ".join(f"{before:.2f} → {after:.2f}" for before, after in zip(context.load_before, context.load_after))
    text = "\n".join([
        "# Benchmarks: measured failover against VRRP theory",
        "",
        f"Everything on this page was written by `{context.command}`, run on {date} on {context.machine}; "
        f"it took {context.duration / 60:.1f} min. Load average (1, 5, 15 min) at its start → end: {load}. "
        "Other labs and tests running on the machine at the same time add noise to the timings.",
        "",
        "Profiles:",
        "",
        *profile_lines(topology, profiles),
        "",
        "## Downtime per profile and fault",
        "",
        results_table(matrix),
        "",
        "- Each run is `chaos run` of the scenario's experiment in `experiments/` with `CHAOSLAB_PROFILE` set, "
        "measured by chaoslab's sampler (a request to the VIP every "
        f"{NetnsProvider.sampler_interval * 1000:g} ms from the client).",
        "- *downtime*: from the last answer before the fault's outage to the first answer after it; "
        "*failed*: requests that failed in the outages overlapping the fault window (injection to rollback).",
        "- *partial outage*: where answers kept coming between the failures (a dead web server behind round "
        "robin), the impact window from the first failed request to the first answer after the last one, and "
        "the share of the requests sent in it that failed. Such a run is judged by its impact window and "
        "failed share (within 10 points of theory's), not by its downtime, the longest run of failures.",
        "- p95 is the nearest-rank percentile: with fewer than 20 runs it is the worst run.",
        "- *theory*: `chaoslab.measure.theory.expected_outage` for the profile's settings (VRRP's timers, "
        "RFC 3768 and RFC 5798; Keepalived's track check; HAProxy's health check); *within theory*: runs "
        "whose downtime (or impact window) fell in that window, give or take the larger of two sampler "
        "intervals and 10 %.",
        "- *measured*: the value the target judges. For a halted master it is counted from the master's last "
        "advert before the halt (seen by the capture on the backup) to the first answer: the backup's "
        "master-down timer starts at that advert, so the downtime from the halt itself is shorter by however "
        "long before the halt that advert came (up to one advert interval).",
        "",
        "## Cross-check of the instrument",
        "",
        "During every run tcpdump recorded the gratuitous ARPs that announce the VIP (at the client) and the "
        "VRRP adverts (on the backup). For each run in which another load balancer became VRRP MASTER, its first "
        "gratuitous ARP and its first advert after the fault are compared with the MASTER notification the "
        "event recorder logged, and the gratuitous ARP with the first answer that ended the clients' outage "
        "(when an outage was running at that moment).",
        "",
        cross_check_table(matrix),
        "",
        f"The sampler sends a request every {NetnsProvider.sampler_interval * 1000:g} ms from a pool of "
        f"{pool_size(NetnsProvider.sampler_interval, SAMPLER_TIMEOUT)} workers, one per interval of its {SAMPLER_TIMEOUT:g} s "
        "timeout and some spare, so requests that time out in an outage do not hold up the schedule. The last "
        "column shows the longest gap between requests sent: near the interval, the sampler kept its schedule; "
        "far above it, the first answer after an outage may come late by up to that gap.",
        "",
        f"![downtime per profile and fault]({CHART})",
        "",
    ])
    markdown = folder / MARKDOWN
    markdown.write_text(text, encoding="utf-8")
    return [markdown, chart]
