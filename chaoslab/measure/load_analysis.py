"""What the keep-alive load saw (chaoslab.measure.load's records): pure functions, records in, summary out.

A record is one request of one client: {"client", "connection", "reused", "sent", "latency", and
"status", "backend" or "error"}, as the load generator writes them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from chaoslab.measure.analysis import read_json_lines
from chaoslab.measure.availability import percentiles
from chaoslab.measure.load import CLOSED

# errors of an answer that came (Target.outcome's: the connection carried it), not of a broken connection
ANSWER_ERRORS = ("http", "unidentified")
WHOLE_RUN = "whole run"


def load_records(path: Path | str) -> list[dict]:
    """The load's records from a load.jsonl file (a truncated last line dropped)."""
    return read_json_lines(Path(path))


def answered(record: dict) -> bool:
    return record.get("error") is None and record.get("status") is not None


def broke(record: dict) -> bool:
    """The request failed with its connection (no answer came on it), rather than with an answer."""
    return record.get("error") is not None and record["error"] not in ANSWER_ERRORS


def latency_window(records: Sequence[dict]) -> dict:
    """Latency of the answered requests among records (availability.percentiles: milliseconds)."""
    return percentiles([record["latency"] for record in records if answered(record)])


def windows(records: Sequence[dict], fault_inject: float | None, fault_end: float | None) -> dict[str, list[dict]]:
    """The records by when they were sent: before the fault, during it (inject <= sent < end) and after it;
    one "whole run" window without a fault. A fault with no end lasts to the end of the records."""
    if fault_inject is None:
        return {WHOLE_RUN: list(records)}
    end = math.inf if fault_end is None else fault_end
    return {
        "before": [record for record in records if record["sent"] < fault_inject],
        "during": [record for record in records if fault_inject <= record["sent"] < end],
        "after": [record for record in records if record["sent"] >= end],
    }


def summarize_load(records: Sequence[dict], fault_inject: float | None, fault_end: float | None) -> dict:
    """The load's summary, JSON-ready.

    connections_reset: connections that broke while reused (a request on a connection that had served
    earlier ones got no answer; a broken connection is dropped, so each counts once). in_flight_lost:
    of those, the requests lost on a live connection: every kind but "closed", where the server had
    already closed the idle connection and the request never reached it (a client can resend that one).
    fault_end: the heal, or the end of the run for a fault never healed."""
    records = sorted(records, key=lambda record: record["sent"])
    ok = [record for record in records if answered(record)]
    failed = [record for record in records if not answered(record)]
    reused_broken = [record for record in failed if broke(record) and record.get("reused")]
    span = max((record["sent"] + record["latency"] for record in records), default=0.0) - \
        (records[0]["sent"] if records else 0.0)
    return {
        "clients": len({record["client"] for record in records}),
        "requests": len(records),
        "answered": len(ok),
        "failed": len(failed),
        "failed_by_kind": dict(sorted(Counter(record.get("error", "other") for record in failed).items())),
        "answers_per_second": round(len(ok) / span, 1) if span > 0 else None,
        "connections": len({(record["client"], record["connection"]) for record in records}),
        "connections_reset": len(reused_broken),
        "in_flight_lost": sum(record["error"] != CLOSED for record in reused_broken),
        "latency": {name: latency_window(window) for name, window in windows(records, fault_inject, fault_end).items()},
    }
