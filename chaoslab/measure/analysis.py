"""The checker: a run's samples and events in, a JSON-ready summary out.

Everything here is a pure function of the client's samples (samples.jsonl, one
Outcome per request) and the run's events (events.jsonl: faults, VRRP
transitions, VIP moves, run start and end snapshots). The only I/O is
load_samples / load_events, which read those JSON-lines files.

Definitions (all times in seconds; absolute times are unix times, phases are
relative to the fault injection; everything is rounded to milliseconds):

- outage: a run of failed samples no answer interrupted, delimited in the order the
  requests were sent (chaoslab.measure.outages says how a late answer counts). Its downtime
  runs from the last answer before it to the first answer to a request sent after it, so
  one lost request at a 10 ms interval costs 0.02 s.
- fault window: from the first injection to the last heal.
- main outage: the longest outage that overlaps the fault window, i.e. that
  ends after the injection (or never ends) and starts before the heal (a slow
  host may fail a few requests, answer more, and only then stop answering).
  This includes an outage already running when the fault was injected:
  requests in flight at that instant are the fault's victims too.
  "main_outage" is its index in "outages" (None if none).
- downtime: the main outage's downtime; 0.0 when no outage overlaps the fault;
  None when there was no fault or no sample, or when the main outage never
  ended ("downtime_at_least" then gives the lower bound the samples prove).
- impact, availability, latency, client_timeouts: what clients lived through besides the
  longest outage (chaoslab.measure.availability): a dead backend behind round robin fails every
  other request, and its longest outage is a single request.
- restarts: each restart the hosts' service manager (systemd, Restart=) made by itself during
  the run, from its journal: the service was down from "down" to "up" (seconds after the
  injection). A restart of the faulted service before any other node took over means the fault
  was undone before the failover theory describes could happen: within_theory is then None, and
  "theory_note" says why.
- verdict: "unknown" without samples, or when the steady state did not hold before
  the method (nothing was tested); "invalid" when the last sample failed
  (the VIP did not answer when the run ended); "valid" otherwise.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaoslab.measure import availability
from chaoslab.measure.availability import Window
from chaoslab.measure.client import Outcome
from chaoslab.measure.outages import Outage, answered_at, count_kinds, find_outages, in_send_order
from chaoslab.measure.outages import ms as _ms
from chaoslab.measure.theory import Prediction

__all__ = ["load_events", "load_samples", "run_snapshot", "summarize"]

ALTERNATION_RUN = 4  # consecutive ok answers that must alternate between backends
SHARE_TOLERANCE = 0.1  # how far a partial outage's failed share may be from the predicted one


# ---------------------------------------------------------------------------- loading


def load_samples(path: Path | str) -> list[Outcome]:
    """The client's samples from a samples.jsonl file."""
    return [Outcome.from_json(record) for record in read_json_lines(Path(path))]


def load_events(path: Path | str) -> list[dict]:
    """The run's events from an events.jsonl file."""
    return read_json_lines(Path(path))


def read_json_lines(path: Path) -> list[dict]:
    """One JSON object per line; a truncated last line (a writer killed mid-line) is dropped."""
    lines = [(number, line) for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if index == len(lines) - 1:
                break
            raise ValueError(f"{path}:{number}: not a JSON line ({error})") from error
    return records


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Fault:
    """One injected fault and the heal that undid it (None if it was never healed)."""

    action: str | None
    node: str | None
    target: str | None
    inject: float
    heal: float | None

    def to_json(self) -> dict:
        return {
            "inject": _ms(self.inject),
            "heal": _ms(self.heal),
            "action": self.action,
            "node": self.node,
            "target": self.target,
        }


NO_FAULT_JSON = {"inject": None, "heal": None, "action": None, "node": None, "target": None}


# ---------------------------------------------------------------------------- summary


def summarize(
    samples: Sequence[Outcome],
    events: Sequence[dict],
    interval: float,
    prediction: Prediction | None = None,
    focus: str = "inject",
    steady_before: bool | None = None,
    sampler_timeout: float | None = None,
) -> dict:
    """The run's summary: requests, fault, outages, downtime, impact, availability, latency, VIP
    timeline, phases, theory, verdict.

    interval is the sampler's sending interval in seconds (it sets the tolerance
    of the comparison with theory). focus "heal" measures the outage the heal of
    the first fault causes instead (a master that comes back and preempts).
    steady_before: whether the steady state held before the method (None: not known).
    sampler_timeout: the sampler's request timeout in seconds (clients with timeouts up to it are told).
    See the module docstring for the definitions.
    """
    samples = in_send_order(samples)
    events = sorted(events, key=lambda event: event["t"])
    faults = pair_faults(events)
    fault = faults[0] if faults else None
    window = fault_window(faults)
    outages = find_outages(samples)
    main = main_outage(outages, fault, window, focus)
    downtime = main_downtime(samples, fault, main)
    impact = availability.impact(samples, outages, window, fault.inject) if window and samples else None
    timeline, holders_before, holders_after = vip_timeline(events)
    verdict, reason = judge(samples, fault, steady_before)
    failed = [sample for sample in samples if not sample.ok]
    restarts = [restart_json(event, fault) for event in events if event.get("kind") == "restart"]
    run_phases = phases(events, fault, main)
    undone = restart_undoing(restarts, fault, run_phases)
    before_fault = availability.availability(samples, Window(samples[0].sent, window.start)) if window and samples else None
    unspread = unspread_note(prediction, before_fault)
    note = (f"{undone['text']} ({undone['down']:+.2f} s to {undone['up']:+.2f} s), before another load balancer took "
            "over: the fault was undone before the failover theory predicts could happen") if undone else unspread
    return {
        "interval": interval,
        "requests": len(samples),
        "ok": len(samples) - len(failed),
        "failed": len(failed),
        "failed_by_kind": count_kinds(failed),
        "first_sent": _ms(samples[0].sent) if samples else None,
        "last_sent": _ms(samples[-1].sent) if samples else None,
        "fault": fault.to_json() if fault else dict(NO_FAULT_JSON),
        "faults": [each.to_json() for each in faults],
        "outages": [outage_json(outage, events) for outage in outages],
        "outage_count": len(outages),
        "main_outage": next((i for i, outage in enumerate(outages) if outage is main), None),
        "downtime": _ms(downtime),
        "downtime_failed": main.failed if main else (0 if downtime is not None else None),
        "downtime_at_least": _ms(main.downtime_at_least) if main else _ms(downtime),
        "impact": impact,
        "before_fault": before_fault,
        "fault_window": availability.availability(samples, window) if window else None,
        "latency": availability.latency(samples, latency_windows(samples, window)),
        "client_timeouts": timeouts_view(samples, window, sampler_timeout),
        "longest_gap": _ms(longest_gap(samples)),
        "time_to_alternate": _ms(time_to_alternate(samples, fault, main)),
        "vip_timeline": timeline,
        "vip_holder_before": holders_before,
        "vip_holder_after": holders_after,
        "phases": run_phases,
        "restarts": restarts,
        "theory": prediction.to_json() if prediction else None,
        "within_theory": None if note else within_theory(prediction, fault, main, downtime, interval, impact),
        "theory_note": note,
        "verdict": verdict,
        "verdict_reason": reason,
    }


# ---------------------------------------------------------------------------- faults


def pair_faults(events: Iterable[dict]) -> list[Fault]:
    """Every injected fault, in order, each with the first later heal of the same (node, target)."""
    faults: list[Fault] = []
    unhealed: dict[tuple, list[int]] = {}  # (node, target) -> indexes in faults, oldest first
    for event in events:
        if event.get("kind") != "fault":
            continue
        key = (event.get("node"), event.get("target"))
        if event.get("phase") == "inject":
            unhealed.setdefault(key, []).append(len(faults))
            faults.append(Fault(event.get("action"), key[0], key[1], event["t"], None))
        elif event.get("phase") == "heal" and unhealed.get(key):
            index = unhealed[key].pop(0)
            injected = faults[index]
            faults[index] = Fault(injected.action, injected.node, injected.target, injected.inject, event["t"])
    return faults


def fault_window(faults: Sequence[Fault]) -> Window | None:
    """From the first injection to the last heal; open-ended when a fault was never healed."""
    if not faults:
        return None
    heals = [fault.heal for fault in faults]
    return Window(faults[0].inject, None if None in heals else max(heals))


def last_fault_phase(events: Iterable[dict], t: float) -> str | None:
    """The phase ("inject" or "heal") of the fault event that most recently preceded t."""
    phase = None
    for event in events:
        if event["t"] > t:
            break
        if event.get("kind") == "fault":
            phase = event.get("phase")
    return phase


# ---------------------------------------------------------------------------- outages


def outage_json(outage: Outage, events: Sequence[dict]) -> dict:
    return {
        "start": _ms(outage.start),
        "end": _ms(outage.end),
        "last_ok_before": _ms(outage.last_ok_before),
        "downtime": _ms(outage.downtime),
        "failed": outage.failed,
        "by_kind": outage.by_kind,
        "after": last_fault_phase(events, outage.start),
    }


def main_outage(outages: Sequence[Outage], fault: Fault | None, window: Window | None,
                focus: str = "inject") -> Outage | None:
    """The longest outage overlapping the fault window: ends after the injection, starts before the
    last heal (a slow host can answer some requests while a service goes down: brief failures before
    the real outage). With focus "heal": the first outage that ends after the first fault's heal."""
    if fault is None or window is None:
        return None
    if focus == "heal":
        if fault.heal is None:
            return None
        return next((outage for outage in outages if outage.end is None or outage.end > fault.heal), None)
    return max(availability.overlapping(outages, window),
               key=lambda outage: math.inf if outage.end is None else outage.downtime_at_least, default=None)


def main_downtime(samples: Sequence[Outcome], fault: Fault | None, main: Outage | None) -> float | None:
    """The main outage's downtime; 0.0 if the fault caused none; None if unknown or nothing to measure."""
    if fault is None or not samples:
        return None
    return main.downtime if main else 0.0


def longest_gap(samples: Sequence[Outcome]) -> float | None:
    """The largest time between two consecutive answers over the whole run (None if < 2 ok)."""
    arrived = sorted(answered_at(sample) for sample in samples if sample.ok)
    return max((later - earlier for earlier, later in itertools.pairwise(arrived)), default=None)


def time_to_alternate(samples: Sequence[Outcome], fault: Fault | None, main: Outage | None) -> float | None:
    """Seconds from the injection until round robin is back: the first of ALTERNATION_RUN consecutive
    ok answers to requests sent after the main outage's last failure (answered after the injection
    when there was none), whose backends strictly alternate; counted to the first one's answer."""
    if fault is None:
        return None
    if main is not None and main.end is None:
        return None
    if main is not None:
        first = next((index for index, sample in enumerate(samples) if sample.sent > main.last_failed), len(samples))
    else:
        first = next((index for index, sample in enumerate(samples) if answered_at(sample) >= fault.inject),
                     len(samples))
    for index in range(first, len(samples) - ALTERNATION_RUN + 1):
        if _alternates(samples[index : index + ALTERNATION_RUN]):
            return answered_at(samples[index]) - fault.inject
    return None


def _alternates(window: Sequence[Outcome]) -> bool:
    return all(sample.ok for sample in window) and all(
        earlier.backend != later.backend for earlier, later in itertools.pairwise(window)
    )


def latency_windows(samples: Sequence[Outcome], window: Window | None) -> dict[str, Window]:
    """The spans the answers' latency is told for: before the fault, the fault window, after it
    (the whole run when there was no fault)."""
    if not samples:
        return {}
    if window is None:
        return {"run": Window(samples[0].sent, None)}
    spans = {"before": Window(samples[0].sent, window.start), "fault_window": window}
    return spans if window.end is None else {**spans, "after": Window(window.end, None)}


def timeouts_view(samples: Sequence[Outcome], window: Window | None, sampler_timeout: float | None) -> dict | None:
    """What clients with shorter timeouts would have lost, before the fault and in its window."""
    if window is None or sampler_timeout is None or not samples:
        return None
    before = Window(samples[0].sent, window.start)
    return {"sampler_timeout": sampler_timeout,
            "before": availability.client_timeouts(samples, before, sampler_timeout),
            "fault_window": availability.client_timeouts(samples, window, sampler_timeout)}


# ---------------------------------------------------------------------------- VIP and VRRP


def run_snapshot(events: Iterable[dict], phase: str) -> dict | None:
    """The first run event of that phase ("start" or "end")."""
    return next((e for e in events if e.get("kind") == "run" and e.get("phase") == phase), None)


def vip_timeline(events: Sequence[dict]) -> tuple[list[dict], list[str] | None, list[str] | None]:
    """(timeline, holders at start, holders at end) of the VIP.

    The timeline starts with the run's start snapshot and gets one entry per VIP
    event after it; the end snapshot is appended only when it disagrees with the
    events (an event was missed). Holders are sorted node names.
    """
    start, end = run_snapshot(events, "start"), run_snapshot(events, "end")
    holders: set[str] = set(start.get("holders") or []) if start else set()
    timeline = [{"t": _ms(start["t"]), "holders": sorted(holders)}] if start else []
    for event in events:
        if event.get("kind") != "vip" or (start and event["t"] < start["t"]):
            continue
        if event.get("change") == "acquired":
            holders.add(event["node"])
        elif event.get("change") == "released":
            holders.discard(event["node"])
        timeline.append({"t": _ms(event["t"]), "holders": sorted(holders)})
    if end and end.get("holders") is not None and sorted(end["holders"]) != sorted(holders):
        holders = set(end["holders"])
        timeline.append({"t": _ms(end["t"]), "holders": sorted(holders)})
    known = bool(start or end or timeline)
    before = sorted(start.get("holders") or []) if start else None
    return timeline, before, sorted(holders) if known else None


def masters_at_start(events: Sequence[dict]) -> set[str]:
    """The node(s) in MASTER state at the start snapshot, else the VIP holders then."""
    start = run_snapshot(events, "start")
    if not start:
        return set()
    masters = {node for node, state in (start.get("states") or {}).items() if state == "MASTER"}
    return masters or set(start.get("holders") or [])


def phases(events: Sequence[dict], fault: Fault | None, main: Outage | None) -> dict:
    """detection, takeover and answering, in seconds after the injection (None if not seen)."""
    if fault is None:
        return {"detection": None, "takeover": None, "answering": None}
    after = [event for event in events if event["t"] >= fault.inject]
    masters = masters_at_start(events)
    detection = _first_time(after, lambda event: _leaves_master(event, masters))
    takeover = _first_time(after, lambda event: _takes_over(event, masters))
    answering = main.end if main is not None else None
    return {
        "detection": _ms(_since(detection, fault.inject)),
        "takeover": _ms(_since(takeover, fault.inject)),
        "answering": _ms(_since(answering, fault.inject)),
    }


def _leaves_master(event: dict, masters: set[str]) -> bool:
    """An old master gives up: a VRRP state other than MASTER, or it releases the VIP."""
    if event.get("node") not in masters:
        return False
    if event.get("kind") == "vrrp":
        return event.get("state") != "MASTER"
    return event.get("kind") == "vip" and event.get("change") == "released"


def _takes_over(event: dict, masters: set[str]) -> bool:
    """Another node becomes VRRP MASTER."""
    return event.get("kind") == "vrrp" and event.get("state") == "MASTER" and event.get("node") not in masters


def _first_time(events: Iterable[dict], matches: Callable[[dict], bool]) -> float | None:
    return next((event["t"] for event in events if matches(event)), None)


def unspread_note(prediction: Prediction | None, before_fault: dict | None) -> str | None:
    """Why a partial outage's prediction does not apply to this client: theory's share assumes the balance
    spread the sampler's requests over the web servers, and before the fault one alone answered it (another client
    of the VIP taking turns in the same round robin, in step with the sampler). None when it applies, or
    when the answers name no backend to tell."""
    if prediction is None or prediction.measures != "impact" or not prediction.failed_share or before_fault is None:
        return None
    named = [name for name in before_fault["by_backend"] if name != "unnamed"]
    expected = round(1 / prediction.failed_share)
    if len(named) != 1 or expected < 2:
        return None
    return (f"before the fault only {named[0]} answered the sampler, not the {expected} web servers the "
            "balance spreads requests over (other clients of the VIP take turns in the same rotation): what share "
            "of its requests the dead one gets is not the balance's, so the partial outage is not judged")


def restart_json(event: dict, fault: Fault | None) -> dict:
    """A restart event, its times after the injection (absolute without a fault), and one line."""
    origin = fault.inject if fault else 0.0
    after = event.get("after")
    text = (f"systemd restarted {event.get('service')} on {event.get('node')} after {after:.2f} s" if after is not None
            else f"systemd was restarting {event.get('service')} on {event.get('node')} when the run ended")
    return {"node": event.get("node"), "service": event.get("service"), "unit": event.get("unit"),
            "down": _ms(_since(event.get("down"), origin)), "up": _ms(_since(event.get("up"), origin)),
            "after": _ms(after), "text": text}


def restart_undoing(restarts: Sequence[dict], fault: Fault | None, run_phases: dict) -> dict | None:
    """The restart of the faulted service on the faulted node that came back before any takeover."""
    if fault is None:
        return None
    takeover = run_phases.get("takeover")
    for restart in restarts:
        if (restart["node"], restart["service"]) == (fault.node, fault.target) and restart["up"] is not None \
                and restart["up"] >= 0 and (takeover is None or restart["up"] <= takeover):
            return restart
    return None


# ---------------------------------------------------------------------------- judgement


def within_theory(
    prediction: Prediction | None,
    fault: Fault | None,
    main: Outage | None,
    downtime: float | None,
    interval: float,
    impact: dict | None = None,
) -> bool | None:
    """Whether the run agrees with theory, give or take max(2 intervals, 10 % of high): its downtime
    falls in the predicted window, or, for a prediction of a partial outage ("impact"), its impact
    window does and its failed share is within SHARE_TOLERANCE of the predicted one.

    None when there is nothing to compare (no prediction, no bounds, no fault, unknown downtime).
    A prediction that the stack never recovers by itself agrees with an outage
    that lasted until the fault was healed (or to the end of the run).
    """
    if prediction is None or math.isnan(prediction.high) or fault is None:
        return None
    if math.isinf(prediction.high):
        return main is not None and (main.end is None or (fault.heal is not None and main.end >= fault.heal))
    tolerance = max(2 * interval, 0.1 * prediction.high)
    if prediction.measures == "impact":
        return _impact_within(prediction, impact, tolerance)
    if main is not None and main.end is None:
        return False
    if downtime is None:
        return None
    return prediction.low - tolerance <= downtime <= prediction.high + tolerance


def _impact_within(prediction: Prediction, impact: dict | None, tolerance: float) -> bool | None:
    if impact is None:
        return None
    if impact["kind"] != "none" and impact["end"] is None:
        return False
    if not prediction.low - tolerance <= impact["seconds"] <= prediction.high + tolerance:
        return False
    return prediction.failed_share is None or abs(impact["failed_share"] - prediction.failed_share) <= SHARE_TOLERANCE


def judge(samples: Sequence[Outcome], fault: Fault | None, steady_before: bool | None = None) -> tuple[str, str]:
    """("valid" | "invalid" | "unknown", why): does the VIP answer when the run ends? Unknown when
    nothing was tested: no sample, or a steady state that did not hold before the method."""
    if steady_before is False:
        return "unknown", "the steady state was not met before the method: nothing was tested"
    if not samples:
        return "unknown", "no samples: the client measured nothing"
    what = "after the fault" if fault else "and no fault was injected"
    if samples[-1].ok:
        return "valid", f"the VIP answered at the end of the run {what}"
    return "invalid", f"the VIP did not answer at the end of the run {what}"


# ---------------------------------------------------------------------------- helpers


def _since(t: float | None, origin: float) -> float | None:
    return None if t is None else t - origin
