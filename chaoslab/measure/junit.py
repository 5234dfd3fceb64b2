"""Runs as JUnit XML, the report CI systems show as tests (GitHub Actions' JUnit report actions,
GitLab's `artifacts:reports:junit`, Jenkins).

Each run is a test suite of one test case named "<experiment> [<profile>]": the JUnit schema
(tests/data/junit/junit-10.xsd) gives properties to a suite, not to a case, so the run's numbers
(downtime, failed requests, verdict, theory...) are the suite's properties and the case's output.

A case fails when the run deviated (a tolerance of the experiment failed: it found the weakness
it looks for), when its steady state did not hold before the method (nothing was tested), or when
its downtime exceeded the experiment's downtime_budget (an outage that never ended exceeds any
budget). It is an error when the run was aborted or interrupted before it could tell.

Pure functions of run summaries (summary.json), and one writer.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chaoslab.measure.history import met_budget
from chaoslab.measure.results import slug, write_atomically

__all__ = ["Case", "junit_document", "run_case", "write_junit"]

SUITES = "chaoslab"
ERROR_STATUSES = {"aborted", "interrupted"}


@dataclass(frozen=True)
class Case:
    """One run as a test case."""

    name: str
    classname: str
    seconds: float
    started: float | None
    failure: str | None = None  # why the case failed
    error: str | None = None  # why the run could not tell
    properties: list[tuple[str, str]] = field(default_factory=list)
    output: str = ""


def experiment_name(run: dict) -> str:
    """The experiment's short name: its file's stem (failover), else a slug of its title."""
    if run.get("experiment_file"):
        return Path(run["experiment_file"]).stem
    return slug(run.get("experiment") or "experiment")


def run_case(summary: dict) -> Case:
    """The test case of one run, from its summary."""
    run = summary.get("run") or {}
    name = experiment_name(run)
    profile = run.get("profile") or "?"
    status = run.get("status") or "unknown"
    budget = run.get("downtime_budget")
    within_budget = met_budget(summary.get("downtime"), summary.get("downtime_at_least"), budget)
    failure = error = None
    if status in ERROR_STATUSES:
        error = f"the run was {status} before it could tell" + (f" (by the {run['aborted_by']})" if run.get("aborted_by")
                                                                else "")
    elif run.get("steady_state_before") is False:
        failure = "the steady state did not hold before the method: nothing was tested"
    elif status == "deviated":
        failure = "the experiment deviated: a tolerance failed, the weakness it looks for was found"
    elif status not in ("completed",):
        failure = f"the run ended {status}"
    if error is None and within_budget is False:
        exceeded = (f"downtime {summary['downtime']:.3f} s" if summary.get("downtime") is not None
                    else f"no recovery for at least {summary['downtime_at_least']:.3f} s")
        failure = "; ".join(filter(None, [failure, f"{exceeded} exceeded the downtime budget of {budget:g} s"]))
    started, ended = run.get("started"), run.get("ended")
    return Case(
        name=f"{name} [{profile}]",
        classname=f"chaoslab.{name}",
        seconds=round(ended - started, 3) if started is not None and ended is not None else 0.0,
        started=started,
        failure=failure,
        error=error,
        properties=_properties(summary, run, within_budget),
        output=_output(summary, run),
    )


def _properties(summary: dict, run: dict, within_budget: bool | None) -> list[tuple[str, str]]:
    theory = summary.get("theory") or {}
    impact = summary.get("impact") or {}
    values = {
        "experiment": run.get("experiment"),
        "experiment_file": run.get("experiment_file"),
        "scenario": run.get("scenario"),
        "profile": run.get("profile"),
        "provider": run.get("provider"),
        "status": run.get("status"),
        "verdict": summary.get("verdict"),
        "downtime_seconds": summary.get("downtime"),
        "downtime_at_least_seconds": summary.get("downtime_at_least"),
        "downtime_budget_seconds": run.get("downtime_budget"),
        "within_budget": within_budget,
        "requests": summary.get("requests"),
        "failed_requests": summary.get("failed"),
        "outage_kind": impact.get("kind"),
        "impact_window_seconds": impact.get("seconds"),
        "failed_share": impact.get("failed_share"),
        "theory_low_seconds": theory.get("low"),
        "theory_high_seconds": theory.get("high"),
        "within_theory": summary.get("within_theory"),
        "results": run.get("folder"),
        **{f"phase_{name}_seconds": value for name, value in (summary.get("phases") or {}).items()},
    }
    return [(key, _text(value)) for key, value in values.items() if value is not None]


def _output(summary: dict, run: dict) -> str:
    theory = summary.get("theory") or {}
    lines = [
        f"{run.get('experiment') or 'experiment'} (profile {run.get('profile') or '?'}): {run.get('status')}, "
        f"verdict {summary.get('verdict')} ({summary.get('verdict_reason') or ''})",
        f"downtime {_seconds(summary.get('downtime'))}, {summary.get('failed', 0)} of {summary.get('requests', 0)} "
        "requests failed",
    ]
    impact = summary.get("impact") or {}
    if impact.get("kind") == "partial":
        lines.append(f"partial outage: impact window {_seconds(impact.get('seconds'))}, "
                     f"{impact.get('failed_share', 0):.0%} of its requests failed")
    if theory:
        agreed = {True: "agrees", False: "DISAGREES", None: "not judged"}[summary.get("within_theory")]
        lines.append(f"theory ({theory.get('scenario')}): {theory.get('formula')}; the run {agreed}")
    if run.get("folder"):
        lines.append(f"results: {run['folder']}")
    return "\n".join(lines)


def junit_document(cases: Sequence[Case], name: str = SUITES) -> bytes:
    """The JUnit XML of the cases: <testsuites> of one <testsuite> per case."""
    root = ET.Element("testsuites", name=name, tests=str(len(cases)),
                      failures=str(sum(case.failure is not None for case in cases)),
                      errors=str(sum(case.error is not None for case in cases)),
                      time=_time(sum(case.seconds for case in cases)))
    for case in cases:
        suite = ET.SubElement(root, "testsuite", name=case.name, tests="1",
                              failures=str(int(case.failure is not None)), errors=str(int(case.error is not None)),
                              skipped="0", time=_time(case.seconds), hostname=socket.gethostname(),
                              timestamp=_timestamp(case.started))
        properties = ET.SubElement(suite, "properties")
        for key, value in case.properties:
            ET.SubElement(properties, "property", name=key, value=value)
        element = ET.SubElement(suite, "testcase", name=case.name, classname=case.classname, time=_time(case.seconds))
        if case.error is not None:
            ET.SubElement(element, "error", type="RunNotFinished", message=case.error).text = case.error
        elif case.failure is not None:
            ET.SubElement(element, "failure", type="ExperimentFailed", message=case.failure).text = case.failure
        ET.SubElement(element, "system-out").text = case.output
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: Path, summaries: Iterable[dict], name: str = SUITES) -> Path:
    """Write the runs' JUnit XML to path, atomically (a CI job reading it never sees half a file)."""
    return write_atomically(path, junit_document([run_case(summary) for summary in summaries], name))


def _time(seconds: float) -> str:
    return f"{seconds:.3f}"


def _timestamp(started: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started if started is not None else time.time()))


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
