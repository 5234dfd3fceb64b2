"""Outages: the runs of failed requests a client saw, delimited in the order the requests were sent.

A failed request tells what the VIP did when it was sent (it refused or dropped a new connection
then); an answer tells that the VIP answered when the answer arrived. So:

- failed requests, in the order they were sent, belong to one outage until an answer to a request
  sent between two of them arrives before the next of them is sent. A late answer (a SYN sent into
  the outage and retransmitted after the VIP moved, a backend that answered slowly) neither splits
  an outage nor ends it;
- an outage ends at the first answer to a request sent after its last failure;
- its downtime runs from its last answer before (the answer to the latest request sent before its
  first failure that arrived before that failure was sent; a later answer is a late one) to its end.
  One lost request at a 10 ms interval costs 0.02 s.

Pure functions of the client's samples; times are unix times in seconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chaoslab.measure.client import Outcome

__all__ = ["Outage", "count_kinds", "find_outages", "in_send_order", "ms"]


@dataclass(frozen=True)
class Outage:
    """A run of failed requests that no answer interrupted."""

    start: float  # sent of the first failed request
    last_failed: float  # sent of the last failed request
    end: float | None  # the first answer to a request sent after the last failure; None if none came
    last_ok_before: float | None  # the last answer before the first failure was sent; None if none
    failed: int
    by_kind: dict[str, int]

    @property
    def downtime(self) -> float | None:
        if self.end is None or self.last_ok_before is None:
            return None
        return self.end - self.last_ok_before

    @property
    def downtime_at_least(self) -> float:
        """What the samples prove even when a bound is missing."""
        return (self.end if self.end is not None else self.last_failed) - (
            self.last_ok_before if self.last_ok_before is not None else self.start
        )


def answered_at(sample: Outcome) -> float:
    """When an answer arrived."""
    return sample.sent + sample.latency


def in_send_order(samples: Iterable[Outcome]) -> list[Outcome]:
    return sorted(samples, key=lambda sample: sample.sent)


def find_outages(samples: Sequence[Outcome]) -> list[Outage]:
    """Every outage of the samples (sorted by sent), in order; see the module docstring."""
    failed = [index for index, sample in enumerate(samples) if not sample.ok]
    outages: list[Outage] = []
    group: list[Outcome] = []
    last_ok_before: float | None = None
    for position, index in enumerate(failed):
        sample = samples[index]
        if not group:
            last_ok_before = _answer_before(samples, index)
        group.append(sample)
        following = failed[position + 1] if position + 1 < len(failed) else len(samples)
        next_failure_sent = samples[following].sent if following < len(samples) else math.inf
        first_answer = min((answered_at(s) for s in samples[index + 1 : following] if s.ok), default=None)
        if first_answer is not None and first_answer <= next_failure_sent:
            outages.append(_outage(group, last_ok_before, first_answer))
            group = []
    if group:
        outages.append(_outage(group, last_ok_before, None))
    return outages


def _answer_before(samples: Sequence[Outcome], index: int) -> float | None:
    """The arrival of the answer to the latest request sent before samples[index] that arrived
    before samples[index] was sent."""
    sent = samples[index].sent
    return next((answered_at(sample) for sample in reversed(samples[:index])
                 if sample.ok and answered_at(sample) <= sent), None)


def _outage(group: list[Outcome], last_ok_before: float | None, end: float | None) -> Outage:
    return Outage(group[0].sent, group[-1].sent, end, last_ok_before, len(group), count_kinds(group))


def count_kinds(failed: Iterable[Outcome]) -> dict[str, int]:
    """Failed samples per error kind, kinds sorted by name; an unlabelled failure counts as "other"."""
    counts = Counter(sample.error or "other" for sample in failed)
    return dict(sorted(counts.items()))


def ms(value: float | None) -> float | None:
    """Seconds rounded to the millisecond; None stays None."""
    return None if value is None else round(value, 3)
