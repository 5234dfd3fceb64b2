"""The safeguard: a run is aborted when the VIP has gone unanswered for longer than a budget.

The stop condition of AWS FIS, the health check of Gremlin: an experiment
must not hurt clients beyond what was agreed. The budget, in seconds, comes
from (the first that is set):

- the environment variable CHAOSLAB_ABORT_AFTER,
- the configuration key chaoslab_abort_after,
- "abort_after" in the experiment's chaoslab extension block.

None set: no safeguard. While the run measures, a watchdog thread follows the
sampler's samples.jsonl as it grows. When a failed request was sent more than
the budget after the VIP last answered, it records a "safeguard" event, logs
an error and calls chaoslib.exit.exit_gracefully(): SIGUSR1 to this process,
which Chaos Toolkit turns into SystemExit(20) in its main thread. The journal
becomes "interrupted" and the rollbacks run, provided the experiment declares
"runtime": {"rollbacks": {"strategy": "always"}} (chaoslib's "default" skips
the rollbacks of an interrupted run); the control heals the lab in any case.
The control stops the watchdog when the rollbacks start and before it heals,
so the abort can interrupt the experiment but never its restoration.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from chaoslib.exit import exit_gracefully

from chaoslab.errors import ChaoslabError
from chaoslab.measure.client import Outcome
from chaoslab.measure.events import EventRecorder

__all__ = ["ENVIRONMENT", "SETTING", "Unanswered", "Watchdog", "abort_after", "breach", "start"]

logger = logging.getLogger("chaostoolkit")

ENVIRONMENT = "CHAOSLAB_ABORT_AFTER"
SETTING = "chaoslab_abort_after"
EXTENSION_KEY = "abort_after"
POLL = 0.05


def abort_after(options: Mapping, configuration: Mapping | None = None) -> float | None:
    """The budget in seconds from the environment, the configuration or the extension block; None if unset."""
    sources = (
        (f"environment variable {ENVIRONMENT}", os.environ.get(ENVIRONMENT)),
        (f"configuration key {SETTING}", (configuration or {}).get(SETTING)),
        (f"the chaoslab extension's {EXTENSION_KEY}", options.get(EXTENSION_KEY)),
    )
    for source, value in sources:
        if value is None or value == "":
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if isinstance(value, bool) or not (math.isfinite(seconds) and seconds > 0):
            raise ChaoslabError(f"{source} must be a positive number of seconds, such as 1.5, not {value!r}")
        return seconds
    return None


class Unanswered:
    """How long the VIP has gone unanswered, fed with samples in the order they complete.

    The measure is the analysis's lower bound of an outage still running: from
    the last answer (when it arrived) to the latest failed request (when it was
    sent); from the first request if none was ever answered."""

    def __init__(self) -> None:
        self.first_sent: float | None = None
        self.last_answer: float | None = None
        self.last_failure: float | None = None

    def add(self, sample: Outcome) -> float:
        """Take one sample; return how long the VIP has been unanswered (0.0 while it answers)."""
        if self.first_sent is None or sample.sent < self.first_sent:
            self.first_sent = sample.sent
        if sample.ok:
            arrived = sample.sent + sample.latency
            self.last_answer = max(arrived, self.last_answer or arrived)
        else:
            self.last_failure = max(sample.sent, self.last_failure or sample.sent)
        return self.seconds

    @property
    def since(self) -> float | None:
        """When the VIP last answered, or when the first request was sent if it never did."""
        return self.last_answer if self.last_answer is not None else self.first_sent

    @property
    def seconds(self) -> float:
        if self.last_failure is None or self.since is None or self.last_failure <= self.since:
            return 0.0
        return self.last_failure - self.since


class Watchdog:
    """Follows samples.jsonl; on a breach of the budget records it and aborts the run, once."""

    def __init__(self, samples: Path, budget: float, recorder: EventRecorder,
                 abort: Callable[[], None] = exit_gracefully):
        self.samples = samples
        self.budget = budget
        self.recorder = recorder
        self.abort = abort
        self.stopping = threading.Event()
        self.fired: dict | None = None
        self.thread = threading.Thread(target=self._follow, name="chaoslab-safeguard", daemon=True)

    def start(self) -> Watchdog:
        self.thread.start()
        logger.info(f"chaoslab: safeguard armed: the run is aborted if the VIP is unanswered for over {self.budget:g} s")
        return self

    def stop(self) -> None:
        """Disarm: no abort after this returns. Idempotent."""
        self.stopping.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)

    def _follow(self) -> None:
        unanswered = Unanswered()
        offset, partial = 0, ""
        while not self.stopping.wait(POLL):
            with open(self.samples, encoding="utf-8") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset = handle.tell()
            *lines, partial = (partial + chunk).split("\n")
            for line in filter(str.strip, lines):
                if round(unanswered.add(Outcome.from_json(json.loads(line))), 3) > self.budget:  # whole ms, as reported
                    self._breach(unanswered)
                    return

    def _breach(self, unanswered: Unanswered) -> None:
        if self.stopping.is_set():
            return
        self.fired = {
            "t": time.time(), "kind": "safeguard", "action": "abort",
            "budget": self.budget, "unanswered": round(unanswered.seconds, 3), "since": unanswered.since,
        }
        self.recorder.record(self.fired)
        logger.error(
            f"chaoslab safeguard: the VIP has not answered for {unanswered.seconds:.3f} s, more than the "
            f"{self.budget:g} s allowed: aborting the run (the rollbacks run and the lab is healed)"
        )
        if not self.stopping.is_set():
            self.abort()


def start(budget: float | None, samples: Path, recorder: EventRecorder) -> Watchdog | None:
    """Arm the safeguard of a run with a budget (from abort_after); None without one."""
    return Watchdog(samples, budget, recorder).start() if budget is not None else None


def breach(events: list[dict]) -> dict | None:
    """The safeguard's event in a run's events, if it aborted the run."""
    return next((event for event in events if event.get("kind") == "safeguard"), None)
