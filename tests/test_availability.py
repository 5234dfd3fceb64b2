"""Partial outages, send order, client timeouts and the RFC's timers, on hand-made runs (no lab needed).

The run: a request every 10 ms from t=90.00 to t=109.99, backends alternating httpd-1 / httpd-2.
"""

from __future__ import annotations

import pytest

from chaoslab.measure.analysis import summarize
from chaoslab.measure.availability import Window, overlapping
from chaoslab.measure.client import Outcome
from chaoslab.measure.outages import Outage, find_outages
from chaoslab.measure.theory import expected_outage, master_down_interval, skew_time
from tests.test_analysis import INTERVAL, SEED_SETTINGS, at, failed, ok

START = {"t": 89.0, "kind": "run", "phase": "start", "holders": ["haproxy-1"],
         "states": {"haproxy-1": "MASTER", "haproxy-2": "BACKUP"}}


def fault(inject: float, heal: float | None, action: str = "stop_service", node: str = "httpd-1",
          target: str = "httpd", heal_action: str = "start_service") -> list[dict]:
    events = [START, {"t": inject, "kind": "fault", "phase": "inject", "action": action, "node": node,
                      "target": target}]
    if heal is not None:
        events.append({"t": heal, "kind": "fault", "phase": "heal", "action": heal_action, "node": node,
                       "target": target})
    return events


def backend_down_run(down_from: float = 100.0, marked_down: float = 105.0, dead: str = "httpd-1") -> list[Outcome]:
    """httpd-1 stops at down_from; round robin sends it every other request, which fail (HAProxy's
    503) until its check marks it down at marked_down; from then on httpd-2 answers everything."""
    samples = []
    for index in range(2000):
        backend = "httpd-1" if index % 2 == 0 else "httpd-2"
        if down_from < at(index) < marked_down and backend == dead:
            samples.append(failed(index, "http"))
        elif at(index) >= marked_down:
            samples.append(ok(index, "httpd-2"))
        else:
            samples.append(ok(index, backend))
    return samples


# ---------------------------------------------------------------------------- a dead backend


def test_a_dead_backend_is_a_partial_outage_with_its_failed_share_and_impact_window():
    result = summarize(backend_down_run(), fault(100.0, 108.0), INTERVAL,
                       expected_outage("backend-down", SEED_SETTINGS, 100, webservers=2), sampler_timeout=1.0)
    impact = result["impact"]
    assert result["downtime"] == 0.02  # the longest run of failures is one request: the old headline
    assert impact["kind"] == "partial"
    # httpd-1's requests sent at 100.02, 100.04 .. 104.98 failed; 497 requests were sent meanwhile
    assert (impact["failed"], impact["requests"], impact["failed_share"]) == (249, 497, round(249 / 497, 4))
    assert impact["seconds"] == pytest.approx(4.97)  # 100.02 (first failure) .. 104.99 (first answer after the last)
    assert impact["bursts"] == 249 and impact["longest_burst"]["failed"] == 1
    assert impact["by_backend"] == {"httpd-2": 248}  # httpd-1 answered nothing in the impact window
    assert result["fault_window"]["answered_share"] == pytest.approx(1 - 249 / 800, abs=0.0001)
    assert result["theory"]["measures"] == "impact" and result["theory"]["failed_share"] == 0.5
    assert (result["theory"]["low"], result["theory"]["high"]) == (4.0, 6.0)  # HAProxy: (fall - 1) .. fall x inter
    assert result["within_theory"] is True


@pytest.mark.parametrize(("settings", "webservers", "why"), [
    ({**SEED_SETTINGS, "haproxy": {**SEED_SETTINGS["haproxy"], "check_fall": 5}}, 2, "impact window 8-10 s"),
    ({**SEED_SETTINGS, "haproxy": {**SEED_SETTINGS["haproxy"], "check_inter_ms": 500}}, 2, "impact window 1-1.5 s"),
    (SEED_SETTINGS, 4, "a quarter of the requests failed"),
    ({**SEED_SETTINGS, "haproxy": {**SEED_SETTINGS["haproxy"], "redispatch": True}}, 2, "no failure"),
])
def test_a_wrong_prediction_of_a_dead_backend_fails_the_judgement(settings, webservers, why):
    prediction = expected_outage("backend-down", settings, 100, webservers=webservers)
    result = summarize(backend_down_run(), fault(100.0, 108.0), INTERVAL, prediction)
    assert result["within_theory"] is False, why


def test_a_dead_backend_that_failed_nothing_disagrees_with_a_theory_of_failures():
    samples = [ok(index) for index in range(2000)]
    prediction = expected_outage("backend-down", SEED_SETTINGS, 100, webservers=2)
    result = summarize(samples, fault(100.0, 108.0), INTERVAL, prediction)
    assert result["impact"]["kind"] == "none" and result["within_theory"] is False
    redispatching = {**SEED_SETTINGS, "haproxy": {**SEED_SETTINGS["haproxy"], "redispatch": True}}
    assert summarize(samples, fault(100.0, 108.0), INTERVAL,
                     expected_outage("backend-down", redispatching, 100, webservers=2))["within_theory"] is True


def test_a_sampler_that_round_robin_never_sent_to_the_dead_server_is_not_judged():
    """Another client in step with the sampler: HAProxy's rotation gives it httpd-1, the sampler httpd-2 only."""
    samples = [ok(index, "httpd-2") for index in range(2000)]
    result = summarize(samples, fault(100.0, 108.0), INTERVAL, expected_outage("backend-down", SEED_SETTINGS, 100,
                                                                                 webservers=2))
    assert result["within_theory"] is None and "only httpd-2 answered the sampler" in result["theory_note"]


def test_a_hashing_balance_predicts_no_share():
    source = {**SEED_SETTINGS, "haproxy": {**SEED_SETTINGS["haproxy"], "balance": "source"}}
    prediction = expected_outage("backend-down", source, 100, webservers=2)
    assert prediction.failed_share is None and "no single share" in prediction.formula
    assert summarize(backend_down_run(), fault(100.0, 108.0), INTERVAL, prediction)["within_theory"] is True


def test_a_whole_outage_is_whole():
    samples = [failed(i, "refused") if 100.0 < at(i) < 103.0 else ok(i) for i in range(2000)]
    samples[1400] = failed(1400, "reset")  # a stray failure later in the window does not make it partial
    impact = summarize(samples, fault(100.0, 105.0), INTERVAL)["impact"]
    assert impact["kind"] == "whole" and impact["bursts"] == 2 and impact["failed"] == 299 + 1


# ---------------------------------------------------------------------------- send order


def test_a_late_answer_neither_splits_an_outage_nor_ends_it():
    samples = [failed(i, "refused") if 100.0 < at(i) < 103.0 else ok(i) for i in range(2000)]
    # sent at 101.00 into the outage, its SYN retransmitted: answered at 103.50, after the outage
    samples[1100] = Outcome(at(1100), 2.5, status=200, backend="httpd-1")
    # sent at 99.99 before it, answered at 100.80 in the middle of it
    samples[999] = Outcome(at(999), 0.81, status=200, backend="httpd-2")
    [outage] = find_outages(sorted(samples, key=lambda sample: sample.sent))
    assert outage.start == at(1001) and outage.last_failed == at(1299)
    assert outage.end == pytest.approx(103.0)  # the first answer to a request sent after the last failure
    assert outage.last_ok_before == pytest.approx(100.0)  # the answer of 100.80 was a late one
    assert outage.failed == 298
    assert summarize(samples, fault(100.0, 105.0), INTERVAL)["downtime"] == pytest.approx(3.0)


def test_an_answer_that_came_between_two_failures_ends_the_first():
    samples = [ok(i) for i in range(2000)]
    samples[1000], samples[1002] = failed(1000, "refused"), failed(1002, "refused")
    outages = find_outages(samples)
    assert [(outage.start, outage.end) for outage in outages] == [(at(1000), at(1001)), (at(1002), at(1003))]


def test_the_outage_ends_at_the_first_answer_even_when_an_earlier_request_answers_later():
    samples = [failed(i, "refused") if 100.0 < at(i) < 103.0 else ok(i) for i in range(2000)]
    samples[1300] = Outcome(at(1300), 0.5, status=200, backend="httpd-1")  # sent first after it, answered at 103.50
    [outage] = find_outages(samples)
    assert outage.end == pytest.approx(103.01)


# ---------------------------------------------------------------------------- latency and client timeouts


def test_latency_and_what_clients_with_shorter_timeouts_lose():
    samples = [ok(i) for i in range(2000)]
    for index in range(1000, 1010):  # ten answers that took 0.3 s just after the fault
        samples[index] = Outcome(at(index), 0.3, status=200, backend="httpd-1")
    samples[1020] = failed(1020, "timeout")
    result = summarize(samples, fault(100.0, 105.0), INTERVAL, sampler_timeout=1.0)
    assert result["latency"]["before"]["p99_ms"] < 5 and result["latency"]["fault_window"]["max_ms"] == 300.0
    assert result["latency"]["after"]["answers"] == 499  # sent from 105.00 (the heal) on
    lost = {row["timeout"]: row["lost"] for row in result["client_timeouts"]["fault_window"]}
    assert lost == {0.1: 11, 0.2: 11, 0.5: 1, 1.0: 1}
    assert all(row["lost"] == 0 for row in result["client_timeouts"]["before"])
    assert [row["timeout"] for row in summarize(samples, fault(100.0, 105.0), INTERVAL,
                                                sampler_timeout=0.3)["client_timeouts"]["fault_window"]] == [0.1, 0.2]


# ---------------------------------------------------------------------------- the fault window


def test_the_failures_of_a_fault_are_those_of_the_outages_overlapping_its_window():
    outages = [Outage(start, start, end, start - 0.01, failed, {}) for start, end, failed in
               ((90.0, 90.1, 5), (99.99, 100.4, 30), (101.0, 101.1, 2), (103.0, 103.2, 9))]
    assert sum(outage.failed for outage in overlapping(outages, Window(100.0, 102.0))) == 32
    assert sum(outage.failed for outage in overlapping(outages, Window(100.0, None))) == 41


def test_the_fault_window_runs_from_the_first_injection_to_the_last_heal():
    events = [START,
              {"t": 100.0, "kind": "fault", "phase": "inject", "action": "reload_service", "node": "haproxy-1",
               "target": "haproxy"},
              {"t": 100.1, "kind": "fault", "phase": "heal", "action": "reload_service", "node": "haproxy-1",
               "target": "haproxy"},
              {"t": 102.0, "kind": "fault", "phase": "inject", "action": "reload_service", "node": "haproxy-1",
               "target": "haproxy"},
              {"t": 102.1, "kind": "fault", "phase": "heal", "action": "reload_service", "node": "haproxy-1",
               "target": "haproxy"}]
    samples = [failed(i, "reset") if 102.05 < at(i) < 102.1 else ok(i) for i in range(2000)]
    result = summarize(samples, events, INTERVAL)
    assert result["fault_window"]["start"] == 100.0 and result["fault_window"]["end"] == 102.1
    assert result["downtime"] == pytest.approx(0.05) and result["downtime_failed"] == 4


# ---------------------------------------------------------------------------- theory, pinned to the RFCs


def test_vrrp_timers_are_the_rfcs():
    # RFC 3768 (VRRPv2) 6.1: Skew_Time = (256 - Priority) / 256; Master_Down_Interval = 3 x Advertisement_Interval + Skew_Time
    assert skew_time(2, 100, version=2) == 156 / 256 == 0.609375
    assert master_down_interval(2, 100, version=2) == 6.609375
    assert skew_time(0.1, 100, version=2) == 0.609375  # whatever the interval: it counts in seconds
    # RFC 5798 (VRRPv3) 6.1: Skew_Time = ((256 - priority) x Master_Adver_Interval) / 256
    assert skew_time(0.1, 100, version=3) == pytest.approx(0.0609375)
    assert master_down_interval(0.1, 100, version=3) == pytest.approx(0.3609375)
    assert master_down_interval(1, 254, version=3) == pytest.approx(3 + 2 / 256)


@pytest.mark.parametrize(("scenario", "low", "high"), [
    # a silent master: the backup's Master_Down_Timer runs out 6.609 s after the last advert, which came
    # up to one interval (2 s) before the halt
    ("halt-master", 6.609375 - 2, 6.609375),
    # RFC 3768 6.4.2: a priority-0 advert sets the backup's Master_Down_Timer to Skew_Time: not 0
    ("keepalived-stop", 0.609375, 0.609375),
    # the track script (every 2 s, fall 2) notices after 1-2 intervals, then FAULT's priority-0 advert: + skew
    ("haproxy-stop", 2 + 0.609375, 4 + 0.609375),
    ("haproxy-kill", 2 + 0.609375, 4 + 0.609375),
])
def test_seed_predictions_are_the_rfcs(scenario, low, high):
    prediction = expected_outage(scenario, SEED_SETTINGS, backup_priority=100)
    assert (prediction.low, prediction.high) == pytest.approx((low, high))
