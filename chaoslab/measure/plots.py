"""Charts of a run, for a person who has not read the summary: what the client saw, and why.

One PNG per run, three panels sharing the time axis (seconds since the fault
injection, or since the first sample when there was no fault):

1. every answered request as a dot, latency in ms (log scale), coloured by
   the web server that answered; the fault window shaded and labelled, VRRP
   transitions as dashed lines, the main downtime (a partial outage: its impact window) as a double-headed arrow;
2. every failed request as a marker in the row of its error kind;
3. which load balancer held the VIP over time.

The theory the run is compared with is written under the panels.

Matplotlib's Agg canvas is used directly (no pyplot): no window, no global state.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from chaoslab.measure.client import Outcome

__all__ = ["plot_run"]

FIGSIZE = (12, 7)
DPI = 110

BACKEND_COLOURS = {"httpd-1": "#1f77b4", "httpd-2": "#ff7f0e"}
SPARE_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#17becf")
ANONYMOUS_COLOUR = "#1f77b4"
NODE_COLOURS = {"haproxy-1": "#2ca02c", "haproxy-2": "#9467bd"}
NOBODY = "nobody"
ERROR_STYLES = {  # kind: (marker, colour)
    "refused": ("x", "#d62728"),
    "timeout": ("v", "#9467bd"),
    "reset": ("s", "#8c564b"),
    "unreachable": ("D", "#e377c2"),
    "http": ("^", "#bcbd22"),
    "other": ("o", "#7f7f7f"),
}
STATE_COLOURS = {"MASTER": "#2ca02c", "BACKUP": "#7f7f7f", "FAULT": "#d62728"}
STOP_COLOUR = "#9467bd"
RESTART_COLOUR = "#d9a400"  # a service its service manager restarted by itself
DATA_SHARE = 0.62  # the latency dots use the lower part of the top panel; labels use the rest


def plot_run(
    samples: Sequence[Outcome],
    events: Sequence[dict],
    summary: dict,
    path: Path,
    title: str,
) -> Path:
    """Draw one run (samples, events, and their summary from analysis.summarize) to a PNG at path."""
    path = Path(path)
    origin = _origin(samples, summary)
    figure = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 1, height_ratios=(4.6, 1.3, 1.0), hspace=0.08, left=0.09, right=0.985)
    grid.update(top=0.89, bottom=0.2)
    latency_axes = figure.add_subplot(grid[0])
    failure_axes = figure.add_subplot(grid[1], sharex=latency_axes)
    vip_axes = figure.add_subplot(grid[2], sharex=latency_axes)
    all_axes = (latency_axes, failure_axes, vip_axes)

    end = _end_of_run(samples, events, origin)
    _draw_latency(latency_axes, samples, origin)
    _draw_failures(failure_axes, samples, origin)
    _draw_vip(vip_axes, summary, events, origin, end)
    _draw_faults(all_axes, summary, origin, end)
    _draw_vrrp(all_axes, events, origin, end)
    _draw_restarts(all_axes, events, origin, end)
    _draw_outage(latency_axes, summary, origin)

    latency_axes.set_xlim(_x_limits(samples, summary, origin, end))
    for axes in all_axes[:-1]:
        axes.tick_params(labelbottom=False)
    vip_axes.set_xlabel(_x_label(summary))
    figure.suptitle(title, fontsize=14, fontweight="bold", y=0.985)
    figure.text(0.5, 0.925, _headline(summary), ha="center", fontsize=10.5)
    _draw_theory(figure, summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------------------- panels


def _draw_latency(axes: Axes, samples: Sequence[Outcome], origin: float) -> None:
    """Answered requests: one dot each, coloured by backend."""
    ok = [sample for sample in samples if sample.ok]
    axes.set_ylabel("latency (ms), answered")
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.grid(True, which="major", axis="y", alpha=0.3)
    if not ok:
        axes.text(0.5, 0.4, "no request was answered", transform=axes.transAxes, ha="center", fontsize=12)
        return
    for backend, colour in _backend_colours(ok).items():
        mine = [sample for sample in ok if sample.backend == backend]
        axes.scatter(
            [sample.sent - origin for sample in mine],
            [max(sample.latency, 1e-4) * 1000 for sample in mine],
            s=7,
            color=colour,
            label=f"{backend or 'answered (the page names no backend)'} ({len(mine)} answers)",
            linewidths=0,
        )
    axes.set_ylim(_latency_limits([sample.latency * 1000 for sample in ok]))
    axes.legend(loc="upper right", fontsize=9, markerscale=2, framealpha=0.9)


def _draw_failures(axes: Axes, samples: Sequence[Outcome], origin: float) -> None:
    """Failed requests: one marker each, one row per error kind."""
    failed = [sample for sample in samples if not sample.ok]
    axes.set_ylabel("failed")
    kinds = sorted({sample.error or "other" for sample in failed}, key=_kind_order)
    if not kinds:
        axes.set_yticks([])
        axes.text(0.5, 0.5, "no failed requests", transform=axes.transAxes, ha="center", va="center")
        return
    for row, kind in enumerate(kinds):
        marker, colour = ERROR_STYLES.get(kind, ERROR_STYLES["other"])
        times = [sample.sent - origin for sample in failed if (sample.error or "other") == kind]
        label = f"{kind} ({len(times)})"
        axes.scatter(times, [row] * len(times), marker=marker, color=colour, s=18, linewidths=1, label=label)
    axes.set_yticks(range(len(kinds)), kinds, fontsize=8.5)
    axes.set_ylim(-0.7, len(kinds) + 0.6)  # an empty row on top for the legend
    axes.legend(loc="upper right", fontsize=8, ncol=len(kinds), framealpha=0.9, borderpad=0.3, handletextpad=0.2)


def _draw_vip(axes: Axes, summary: dict, events: Sequence[dict], origin: float, end: float) -> None:
    """Who holds the VIP: a bar per holder per timeline interval; "nobody" in red."""
    timeline = summary.get("vip_timeline") or []
    axes.set_ylabel("VIP on")
    nodes = _load_balancers(timeline, events)
    if not timeline:
        axes.set_yticks([])
        axes.text(0.5, 0.5, "no VIP events recorded", transform=axes.transAxes, ha="center", va="center")
        return
    rows = [*nodes, NOBODY] if any(not entry["holders"] for entry in timeline) else nodes
    for index, entry in enumerate(timeline):
        start = entry["t"] - origin
        stop = timeline[index + 1]["t"] - origin if index + 1 < len(timeline) else end
        for holder in entry["holders"] or [NOBODY]:
            colour = "#d62728" if holder == NOBODY else _node_colour(holder, nodes)
            axes.broken_barh([(start, max(stop - start, 0))], (rows.index(holder) - 0.35, 0.7), color=colour)
    axes.set_yticks(range(len(rows)), rows, fontsize=8.5)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    axes.invert_yaxis()


def _draw_faults(all_axes: Sequence[Axes], summary: dict, origin: float, end: float) -> None:
    """Shade every fault window (inject to heal, or to the end) and label it in the top panel."""
    for fault in summary.get("faults") or []:
        start = fault["inject"] - origin
        stop = fault["heal"] - origin if fault["heal"] is not None else end
        for axes in all_axes:
            axes.axvspan(start, stop, color="#d62728", alpha=0.08, linewidth=0)
        healed = f"healed at {stop:+.2f} s" if fault["heal"] is not None else "never healed"
        all_axes[0].text(
            start,
            0.985,
            f" fault: {_fault_text(fault)}\n {healed}",
            transform=all_axes[0].get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=9,
            color="#a01010",
        )


def _draw_vrrp(all_axes: Sequence[Axes], events: Sequence[dict], origin: float, end: float) -> None:
    """A dashed line per VRRP transition, labelled "<node> <state>" at the foot of the top panel."""
    for event in events:
        if event.get("kind") != "vrrp":
            continue
        x = event["t"] - origin
        colour = STATE_COLOURS.get(event.get("state"), STOP_COLOUR)
        for axes in all_axes:
            axes.axvline(x, color=colour, linestyle="--", linewidth=1.1, alpha=0.85)
        all_axes[0].text(
            x,
            0.02,
            f"{event.get('node')} {event.get('state')}",
            transform=all_axes[0].get_xaxis_transform(),
            rotation=90,
            va="bottom",
            ha="right",
            fontsize=8.5,
            color=colour,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1},
        )


def _draw_restarts(all_axes: Sequence[Axes], events: Sequence[dict], origin: float, end: float) -> None:
    """A band per restart the service manager made by itself, from the service's exit to its return,
    labelled "systemd restarted <service> on <node>" in the top panel."""
    for event in events:
        if event.get("kind") != "restart":
            continue
        down = event["down"] - origin
        up = event["up"] - origin if event.get("up") is not None else end
        for axes in all_axes:
            axes.axvspan(down, max(up, down + 0.01), color=RESTART_COLOUR, alpha=0.35, linewidth=0)
        after = f" after {event['after']:.2f} s" if event.get("after") is not None else " (not back)"
        all_axes[0].text(
            up,
            0.80,
            f" systemd restarted {event.get('service')}\n on {event.get('node')}{after}",
            transform=all_axes[0].get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=8.5,
            color=RESTART_COLOUR,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1},
        )


def _draw_outage(axes: Axes, summary: dict, origin: float) -> None:
    """A double-headed arrow over what clients lived through: the impact window of a partial outage
    (from its first failed request to the first answer after its last), else the main outage (from
    the last answer before to the first after)."""
    impact = summary.get("impact") or {}
    if impact.get("kind") == "partial":
        share = impact["failed_share"]
        silent = sorted(set(_answering_before(summary)) - set(impact["by_backend"]))
        text = (f"partial outage {impact['seconds_at_least']:.2f} s: {share:.0%} of requests failed "
                f"({impact['failed']} of {impact['requests']})" + (f"; {', '.join(silent)} answered none" if silent
                                                                  else ""))
        ended = impact["end"] is not None
        stop = (impact["end"] if ended else summary["last_sent"]) - origin
        _arrow(axes, impact["start"] - origin, stop, "<->" if ended else "->", text)
        return
    index = summary.get("main_outage")
    if index is None:
        return
    outage = summary["outages"][index]
    if outage["last_ok_before"] is None:
        return
    if outage["end"] is not None:
        stop, style = outage["end"] - origin, "<->"
        text = f"downtime {summary['downtime']:.2f} s ({outage['failed']} failed requests)"
    else:
        stop, style = summary["last_sent"] - origin, "->"
        lasted = summary["downtime_at_least"]
        text = f"no answer for at least {lasted:.2f} s ({outage['failed']} failed): never recovered"
    _arrow(axes, outage["last_ok_before"] - origin, stop, style, text)


def _answering_before(summary: dict) -> list[str]:
    """The backends that answered before the fault, named ones only."""
    window = summary.get("before_fault") or {}
    return [name for name in window.get("by_backend") or {} if name != "unnamed"]


def _arrow(axes: Axes, start: float, stop: float, style: str, text: str) -> None:
    transform = axes.get_xaxis_transform()
    axes.annotate(
        "",
        xy=(stop, 0.74),
        xytext=(start, 0.74),
        xycoords=transform,
        textcoords=transform,
        arrowprops={"arrowstyle": style, "linewidth": 1.8, "color": "black", "shrinkA": 0, "shrinkB": 0},
    )
    axes.text(
        (start + stop) / 2,
        0.76,
        text,
        transform=transform,
        ha="center",
        va="bottom",
        fontsize=10.5,
        fontweight="bold",
        bbox={"facecolor": "white", "edgecolor": "#444444", "boxstyle": "round,pad=0.3", "alpha": 0.95},
    )


def _draw_theory(figure: Figure, summary: dict) -> None:
    """The prediction the run is compared with, under the panels."""
    theory = summary.get("theory")
    if not theory:
        return
    verdict = {True: "the measured run agrees with theory", False: "the measured run DISAGREES with theory"}
    lines = textwrap.wrap(f"theory ({theory['scenario']}): {theory['formula']}", width=150)
    if summary.get("within_theory") is not None:
        lines.append(verdict[summary["within_theory"]])
    figure.text(
        0.09,
        0.025,
        "\n".join(lines),
        fontsize=9.5,
        va="bottom",
        ha="left",
        bbox={"facecolor": "#f4f4ff", "edgecolor": "#6060a0", "boxstyle": "round,pad=0.4"},
    )


# ---------------------------------------------------------------------------- text


def _headline(summary: dict) -> str:
    """One line of the numbers that matter."""
    parts = [f"verdict: {summary.get('verdict')}", f"{summary.get('requests', 0)} requests"]
    parts.append(f"{summary.get('failed', 0)} failed")
    impact = summary.get("impact") or {}
    if impact.get("kind") == "partial":
        parts.append(f"partial outage {impact['seconds_at_least']:.2f} s at {impact['failed_share']:.0%} failed")
        parts.append(f"longest run of failures {summary['downtime_at_least']:.2f} s")
    elif summary.get("downtime") is not None:
        parts.append(f"downtime {summary['downtime']:.2f} s")
    elif summary.get("downtime_at_least") is not None:
        parts.append(f"downtime > {summary['downtime_at_least']:.2f} s (not recovered)")
    if summary.get("longest_gap") is not None and summary.get("verdict") == "valid":
        parts.append(f"longest gap {summary['longest_gap']:.2f} s")
    if summary.get("time_to_alternate") is not None:
        parts.append(f"round robin back after {summary['time_to_alternate']:.2f} s")
    return "   |   ".join(parts)


def _fault_text(fault: dict) -> str:
    target = f" / {fault['target']}" if fault.get("target") else ""
    return f"{fault.get('action')} {fault.get('node')}{target}"


def _x_label(summary: dict) -> str:
    fault = summary.get("fault") or {}
    if fault.get("inject") is None:
        return "seconds since the first request"
    return f"seconds since the fault injection ({_fault_text(fault)})"


# ---------------------------------------------------------------------------- geometry and colours


def _origin(samples: Sequence[Outcome], summary: dict) -> float:
    """Time zero: the fault injection, else the first sample, else 0."""
    inject = (summary.get("fault") or {}).get("inject")
    if inject is not None:
        return inject
    return min((sample.sent for sample in samples), default=0.0)


def _end_of_run(samples: Sequence[Outcome], events: Sequence[dict], origin: float) -> float:
    """The last moment anything happened, relative to the origin."""
    times = [sample.sent for sample in samples] + [event["t"] for event in events]
    return max(times, default=origin) - origin


def _x_limits(samples: Sequence[Outcome], summary: dict, origin: float, end: float) -> tuple[float, float]:
    """From the first sample (or the origin) to the end, with a small margin."""
    first = min([sample.sent - origin for sample in samples] + [0.0])
    last = max(end, 0.0)
    margin = max((last - first) * 0.01, 0.05)
    return first - margin, last + margin


def _latency_limits(latencies_ms: Sequence[float]) -> tuple[float, float]:
    """Log-scale limits that keep the dots in the lower DATA_SHARE of the panel."""
    low = max(min(latencies_ms), 0.1) / 1.5
    high = max(max(latencies_ms), low * 3) * 1.5
    span = math.log10(high) - math.log10(low)
    return low, 10 ** (math.log10(low) + span / DATA_SHARE)


def _backend_colours(ok: Sequence[Outcome]) -> dict[str | None, str]:
    """A colour per backend that answered; None for answers that name no backend (a target whose
    application says nothing of who served it)."""
    backends = sorted({sample.backend for sample in ok if sample.backend})
    spare = iter(SPARE_COLOURS * (len(backends) // len(SPARE_COLOURS) + 1))
    colours: dict[str | None, str] = {backend: BACKEND_COLOURS.get(backend) or next(spare) for backend in backends}
    if any(sample.backend is None for sample in ok):
        colours[None] = ANONYMOUS_COLOUR
    return colours


def _load_balancers(timeline: Sequence[dict], events: Sequence[dict]) -> list[str]:
    """Every node seen holding the VIP or in a VRRP state, sorted."""
    nodes = {holder for entry in timeline for holder in entry["holders"]}
    nodes |= {event["node"] for event in events if event.get("kind") in ("vrrp", "vip") and event.get("node")}
    for event in events:
        if event.get("kind") == "run":
            nodes |= set(event.get("states") or {})
    return sorted(nodes)


def _node_colour(node: str, nodes: Sequence[str]) -> str:
    return NODE_COLOURS.get(node) or SPARE_COLOURS[nodes.index(node) % len(SPARE_COLOURS)]


def _kind_order(kind: str) -> int:
    kinds = list(ERROR_STYLES)
    return kinds.index(kind) if kind in kinds else len(kinds)
