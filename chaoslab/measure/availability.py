"""What clients lived through besides the longest outage: availability, the impact window, bursts,
per-backend answers, latency, and what a client with a shorter timeout would have lost.

Definitions (times are unix times in seconds, requests counted by the time they were sent):

- fault window: from the first injection to the last heal (to the last request when a fault was
  never healed).
- impact window: from the first failed request of the outages that overlap the fault window to the
  end of the last of them (the first answer to a request sent after its last failure). Its
  requests are those sent from its start to its last failure.
- kind: "none" without a failure in the fault window; "partial" when answers kept coming between
  the failures (more than one burst, and the longest holds less than half of the failed requests:
  round robin onto a dead backend); "whole" otherwise (one outage, perhaps with stray failures).
- client timeouts: a client that gives up after t seconds loses every failed request and every
  answer slower than t. Only timeouts up to the sampler's own can be told: a request the sampler
  gave up on might have been answered later.

Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from chaoslab.measure.client import Outcome
from chaoslab.measure.outages import Outage, count_kinds, ms

__all__ = ["CLIENT_TIMEOUTS", "Window", "availability", "client_timeouts", "impact", "latency", "overlapping",
           "percentiles"]

CLIENT_TIMEOUTS = (0.1, 0.2, 0.5, 1.0)  # seconds: what typical clients give up after
PARTIAL_SHARE = 0.5  # a longest burst under this share of the failures: the outage was partial
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Window:
    """A span of the run: [start, end), end None for "to the run's end"."""

    start: float
    end: float | None

    def holds(self, t: float) -> bool:
        return t >= self.start and (self.end is None or t < self.end)

    def to_json(self) -> dict:
        return {"start": ms(self.start), "end": ms(self.end)}


def overlapping(outages: Sequence[Outage], window: Window) -> list[Outage]:
    """The outages that end after the window starts (or never end) and start before it ends: requests
    in flight when a fault was injected are its victims too."""
    return [outage for outage in outages if (outage.end is None or outage.end > window.start)
            and (window.end is None or outage.start < window.end)]


def availability(samples: Sequence[Outcome], window: Window) -> dict:
    """Requests sent in the window, how many failed, the share answered, and the answers per backend."""
    inside = [sample for sample in samples if window.holds(sample.sent)]
    failed = [sample for sample in inside if not sample.ok]
    return {**window.to_json(), "requests": len(inside), "failed": len(failed),
            "answered_share": _share(len(inside) - len(failed), len(inside)),
            "failed_by_kind": count_kinds(failed), "by_backend": _by_backend(inside)}


def impact(samples: Sequence[Outcome], outages: Sequence[Outage], window: Window, inject: float) -> dict:
    """The impact window of the outages overlapping the fault window (see the module docstring)."""
    hit = overlapping(outages, window)
    if not hit:
        return {"kind": "none", "start": None, "end": None, "seconds": 0.0, "from_inject": None, "requests": 0,
                "failed": 0, "failed_share": 0.0, "bursts": 0, "longest_burst": None, "by_backend": {}}
    start, last_failed, end = hit[0].start, hit[-1].last_failed, hit[-1].end
    inside = [sample for sample in samples if start <= sample.sent <= last_failed]
    failed = sum(outage.failed for outage in hit)
    longest = max(hit, key=lambda outage: outage.failed)
    kind = "partial" if len(hit) > 1 and longest.failed < PARTIAL_SHARE * failed else "whole"
    return {
        "kind": kind,
        "start": ms(start),
        "end": ms(end),
        "seconds": ms(None if end is None else end - start),
        "seconds_at_least": ms((end if end is not None else last_failed) - start),
        "from_inject": ms(start - inject),
        "requests": len(inside),
        "failed": failed,
        "failed_share": _share(failed, len(inside)),
        "bursts": len(hit),
        "longest_burst": {"failed": longest.failed, "downtime": ms(longest.downtime)},
        "by_backend": _by_backend(inside),
    }


def latency(samples: Sequence[Outcome], windows: dict[str, Window]) -> dict:
    """Percentiles of the answers' latency (milliseconds) per named window."""
    return {name: percentiles([sample.latency for sample in samples if sample.ok and window.holds(sample.sent)])
            for name, window in windows.items()}


def client_timeouts(samples: Sequence[Outcome], window: Window, sampler_timeout: float,
                    timeouts: Sequence[float] = CLIENT_TIMEOUTS) -> list[dict]:
    """For each client timeout up to the sampler's: the requests of the window such a client loses."""
    inside = [sample for sample in samples if window.holds(sample.sent)]
    rows = []
    for timeout in (t for t in timeouts if t <= sampler_timeout):
        lost = sum(1 for sample in inside if not sample.ok or sample.latency > timeout)
        rows.append({"timeout": timeout, "lost": lost, "lost_share": _share(lost, len(inside))})
    return rows


def _by_backend(samples: Sequence[Outcome]) -> dict[str, int]:
    counts = Counter(sample.backend or "unnamed" for sample in samples if sample.ok)
    return dict(sorted(counts.items()))


def percentiles(values: Sequence[float]) -> dict:
    """p50, p95, p99 (nearest rank) and max of latencies in seconds, as milliseconds; how many there were."""
    if not values:
        return {"answers": 0, **{f"p{p}_ms": None for p in PERCENTILES}, "max_ms": None}
    ordered = sorted(values)
    ranked = {f"p{p}_ms": _ms1(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]) for p in PERCENTILES}
    return {"answers": len(ordered), **ranked, "max_ms": _ms1(ordered[-1])}


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _ms1(seconds: float) -> float:
    return round(seconds * 1000, 1)
