"""A run's numbers as Prometheus metrics, for dashboards of failover latency over time.

Every run writes metrics.prom (the text exposition format) into its folder. Where the operator
says so it also writes them for node_exporter's textfile collector (one file per experiment,
profile and target in that folder, replaced atomically by each run: Prometheus scrapes the
latest run, and its time series is the history) and pushes them to a Pushgateway (grouped by
the same labels). Each metric is labelled by experiment, profile and target (the VIP's URL).

docs/grafana-dashboard.json charts them.
"""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest, push_to_gateway

from chaoslab.measure.junit import experiment_name, run_case
from chaoslab.measure.results import slug, write_atomically

__all__ = ["DEFINITIONS", "METRICS", "export", "labels_of", "registry_of", "values_of"]

METRICS = "metrics.prom"
LABELS = ("experiment", "profile", "target")
STATUSES = ("completed", "deviated", "failed", "aborted", "interrupted")
PUSH_TIMEOUT = 10.0


def labels_of(summary: dict) -> dict[str, str]:
    run = summary.get("run") or {}
    return {"experiment": experiment_name(run), "profile": run.get("profile") or "unknown",
            "target": run.get("target") or "unknown"}


# name -> (help, extra label names)
DEFINITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "chaoslab_failover_downtime_seconds": ("Longest outage clients of the VIP saw in the run's fault window "
                                           "(absent when it never ended)", ()),
    "chaoslab_failover_downtime_at_least_seconds": ("What the samples prove of the longest outage, also when it "
                                                    "never ended", ()),
    "chaoslab_impact_window_seconds": ("From the first failed request of the fault to the first answer after the "
                                       "last one", ()),
    "chaoslab_failed_share": ("Share of the requests sent in the impact window that failed", ()),
    "chaoslab_requests": ("Requests the sampler sent in the run", ()),
    "chaoslab_failed_requests": ("Requests that failed in the run", ()),
    "chaoslab_availability_ratio": ("Share of the requests sent in the fault window that were answered", ()),
    "chaoslab_within_theory": ("1 when the run agreed with theory, 0 when it did not", ()),
    "chaoslab_theory_low_seconds": ("Lower bound of the outage theory predicts for the run's scenario", ()),
    "chaoslab_theory_high_seconds": ("Upper bound of the outage theory predicts (absent: never recovers, or no "
                                     "single prediction)", ()),
    "chaoslab_failover_phase_seconds": ("Seconds from the injection to each failover phase", ("phase",)),
    "chaoslab_last_run_timestamp_seconds": ("When the run ended (unix time)", ()),
    "chaoslab_last_run_success": ("1 when the run passed as a CI test case (completed, steady state held, within "
                                  "its downtime budget), else 0", ()),
    "chaoslab_last_run_status": ("1 for the run's status, 0 for the others", ("status",)),
}


def values_of(summary: dict) -> list[tuple[str, dict[str, str], object]]:
    """(metric, extra labels, value) of every number the run has (value None: it has none)."""
    run = summary.get("run") or {}
    impact = summary.get("impact") or {}
    theory = summary.get("theory") or {}
    case = run_case(summary)
    status = run.get("status") or "unknown"
    return [
        ("chaoslab_failover_downtime_seconds", {}, summary.get("downtime")),
        ("chaoslab_failover_downtime_at_least_seconds", {}, summary.get("downtime_at_least")),
        ("chaoslab_impact_window_seconds", {}, impact.get("seconds")),
        ("chaoslab_failed_share", {}, impact.get("failed_share")),
        ("chaoslab_requests", {}, summary.get("requests")),
        ("chaoslab_failed_requests", {}, summary.get("failed")),
        ("chaoslab_availability_ratio", {}, (summary.get("fault_window") or {}).get("answered_share")),
        ("chaoslab_within_theory", {}, summary.get("within_theory")),
        ("chaoslab_theory_low_seconds", {}, theory.get("low")),
        ("chaoslab_theory_high_seconds", {}, theory.get("high")),
        *(("chaoslab_failover_phase_seconds", {"phase": phase}, seconds)
          for phase, seconds in (summary.get("phases") or {}).items()),
        ("chaoslab_last_run_timestamp_seconds", {}, run.get("ended")),
        ("chaoslab_last_run_success", {}, case.failure is None and case.error is None),
        *(("chaoslab_last_run_status", {"status": known}, known == status)
          for known in dict.fromkeys((*STATUSES, status))),
    ]


def registry_of(summary: dict) -> CollectorRegistry:
    """The run's metrics in a registry of their own."""
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, documentation, (*LABELS, *extra), registry=registry)
              for name, (documentation, extra) in DEFINITIONS.items()}
    labels = labels_of(summary)
    for name, extra, value in values_of(summary):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            gauges[name].labels(**labels, **extra).set(float(value))
    return registry


def export(summary: dict, folder: Path, textfile_dir: str | None = None, pushgateway: str | None = None) -> list[str]:
    """Write the run's metrics to folder/metrics.prom, to textfile_dir and to the Pushgateway where
    given; return where they went."""
    registry = registry_of(summary)
    text = generate_latest(registry)
    written = [str(write_atomically(Path(folder) / METRICS, text))]
    labels = labels_of(summary)
    if textfile_dir:
        name = "-".join(slug(value) for value in labels.values())
        written.append(str(write_atomically(Path(textfile_dir) / f"chaoslab-{name}.prom", text)))
    if pushgateway:
        push_to_gateway(pushgateway, job="chaoslab", registry=registry, grouping_key=labels, timeout=PUSH_TIMEOUT)
        written.append(pushgateway)
    return written
