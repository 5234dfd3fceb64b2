"""The checker, the theory and the charts, on small hand-made runs (no lab needed).

The reference run: a request every 10 ms from t=90.00 to t=109.99, backends
alternating httpd-1 / httpd-2; at t=100.0 HAProxy is stopped on haproxy-1, the
requests sent in (100.00, 103.00) fail (2 resets, then refused), the first
two answers after the outage both come from httpd-2 (103.00, 103.01), so
strict alternation resumes at 103.01; one isolated timeout at t=95.00 before
the fault.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from chaoslab.measure.analysis import load_events, load_samples, summarize
from chaoslab.measure.client import Outcome
from chaoslab.measure.plots import plot_run
from chaoslab.measure.theory import SCENARIOS, expected_outage, master_down_interval, skew_time

INTERVAL = 0.01
SEED_SETTINGS = {
    "vrrp": {"version": 2, "advert_int": 2, "garp_master_delay": 1},
    "track": {"mechanism": "script", "interval": 2, "fall": 2, "rise": 2},
    "haproxy": {"check_inter_ms": 2000, "check_fall": 3, "check_rise": 2, "retries": 3, "redispatch": False},
}
FILE_TRACK = {"mechanism": "file", "check_interval_ms": 50, "fall": 3}


# ---------------------------------------------------------------------------- hand-made runs


def at(index: int) -> float:
    """The send time of request number index: 90.00 + index x 10 ms, exact to the hundredth."""
    return (9000 + index) / 100


def ok(index: int, backend: str | None = None, latency: float | None = None) -> Outcome:
    """A good answer that arrived at at(index) (the analysis times good answers by arrival)."""
    backend = backend or ("httpd-1" if index % 2 == 0 else "httpd-2")
    latency = 0.002 + (index % 7) * 0.0003 if latency is None else latency
    return Outcome(at(index) - latency, latency, status=200, backend=backend)


def failed(index: int, error: str) -> Outcome:
    latency = 1.0 if error == "timeout" else 0.001
    return Outcome(at(index), latency, error=error, status=503 if error == "http" else None)


def reference_samples() -> list[Outcome]:
    samples = []
    for index in range(2000):  # 90.00 .. 109.99
        t = at(index)
        if index == 500:  # 95.00
            samples.append(failed(index, "timeout"))
        elif 100.0 < t < 100.03:  # 100.01, 100.02: connections reset by the dying HAProxy
            samples.append(failed(index, "reset"))
        elif 100.0 < t < 103.0:
            samples.append(failed(index, "refused"))
        elif 103.0 <= t < 103.02:  # 103.00 and 103.01 both from httpd-2
            samples.append(ok(index, "httpd-2"))
        else:
            samples.append(ok(index))
    return samples


def reference_events() -> list[dict]:
    return [
        {
            "t": 89.0,
            "kind": "run",
            "phase": "start",
            "holders": ["haproxy-1"],
            "states": {"haproxy-1": "MASTER", "haproxy-2": "BACKUP"},
        },
        {
            "t": 100.0,
            "kind": "fault",
            "phase": "inject",
            "action": "stop_service",
            "node": "haproxy-1",
            "target": "haproxy",
        },
        {"t": 101.48, "kind": "vip", "node": "haproxy-1", "change": "released"},
        {"t": 101.5, "kind": "vrrp", "node": "haproxy-1", "state": "FAULT"},
        {"t": 102.3, "kind": "vrrp", "node": "haproxy-2", "state": "MASTER"},
        {"t": 102.31, "kind": "vip", "node": "haproxy-2", "change": "acquired"},
        {
            "t": 105.0,
            "kind": "fault",
            "phase": "heal",
            "action": "start_service",
            "node": "haproxy-1",
            "target": "haproxy",
        },
        {"t": 107.0, "kind": "vrrp", "node": "haproxy-1", "state": "BACKUP"},
        {
            "t": 110.5,
            "kind": "run",
            "phase": "end",
            "holders": ["haproxy-2"],
            "states": {"haproxy-1": "BACKUP", "haproxy-2": "MASTER"},
        },
    ]


def never_recovering_samples() -> list[Outcome]:
    """A frozen HAProxy: every request after the fault times out until the end."""
    return [ok(index) if at(index) <= 100.0 else failed(index, "timeout") for index in range(2000)]


def never_recovering_events() -> list[dict]:
    events = reference_events()[:2]
    events[1] = {**events[1], "action": "freeze_service"}
    return [
        *events,
        {
            "t": 110.5,
            "kind": "run",
            "phase": "end",
            "holders": ["haproxy-1"],
            "states": {"haproxy-1": "MASTER", "haproxy-2": "BACKUP"},
        },
    ]


@pytest.fixture
def summary() -> dict:
    prediction = expected_outage("haproxy-stop", SEED_SETTINGS, backup_priority=100)
    return summarize(reference_samples(), reference_events(), INTERVAL, prediction)


# ---------------------------------------------------------------------------- analysis: counts and outages


def test_counts_requests_and_failures_by_kind(summary):
    assert summary["requests"] == 2000
    assert summary["failed"] == 300
    assert summary["ok"] == 1700
    assert summary["failed_by_kind"] == {"refused": 297, "reset": 2, "timeout": 1}


def test_reports_the_first_fault_paired_with_its_heal(summary):
    assert summary["fault"] == {
        "inject": 100.0,
        "heal": 105.0,
        "action": "stop_service",
        "node": "haproxy-1",
        "target": "haproxy",
    }


def test_every_outage_is_kept_including_an_isolated_timeout(summary):
    assert summary["outage_count"] == 2
    blip, main = summary["outages"]
    assert blip == {
        "start": 95.0,
        "end": 95.01,
        "last_ok_before": 94.99,
        "downtime": 0.02,
        "failed": 1,
        "by_kind": {"timeout": 1},
        "after": None,
    }
    assert main == {
        "start": 100.01,
        "end": 103.0,
        "last_ok_before": 100.0,
        "downtime": 3.0,
        "failed": 299,
        "by_kind": {"refused": 297, "reset": 2},
        "after": "inject",
    }
    assert summary["main_outage"] == 1


def test_downtime_is_the_outage_in_the_fault_window(summary):
    assert summary["downtime"] == 3.0
    assert summary["downtime_failed"] == 299
    assert summary["longest_gap"] == 3.0


def test_time_to_alternate_starts_at_the_first_of_four_alternating_answers(summary):
    # 103.00 and 103.01 both come from httpd-2; 103.01 .. 103.04 alternate.
    assert summary["time_to_alternate"] == 3.01


def test_vip_timeline_follows_the_vip_events(summary):
    assert summary["vip_timeline"] == [
        {"t": 89.0, "holders": ["haproxy-1"]},
        {"t": 101.48, "holders": []},
        {"t": 102.31, "holders": ["haproxy-2"]},
    ]
    assert summary["vip_holder_before"] == ["haproxy-1"]
    assert summary["vip_holder_after"] == ["haproxy-2"]


def test_end_snapshot_corrects_a_missed_vip_event():
    events = [event for event in reference_events() if event.get("change") != "acquired"]
    result = summarize(reference_samples(), events, INTERVAL)
    assert result["vip_timeline"][-1] == {"t": 110.5, "holders": ["haproxy-2"]}
    assert result["vip_holder_after"] == ["haproxy-2"]


def test_phases_relative_to_the_injection(summary):
    # the VIP was released (101.48) before keepalived logged FAULT (101.5)
    assert summary["phases"] == {"detection": 1.48, "takeover": 2.3, "answering": 3.0}


def test_within_theory_and_verdict(summary):
    assert summary["theory"]["scenario"] == "haproxy-stop"
    assert summary["theory"]["low"] == pytest.approx(2.609375)  # (fall - 1) x 2 s + (256-100)/256 s
    assert summary["theory"]["high"] == pytest.approx(4.609375)
    assert summary["within_theory"] is True
    assert summary["verdict"] == "valid"


def test_downtime_outside_the_theory_window_is_reported():
    prediction = expected_outage("halt-master", SEED_SETTINGS, backup_priority=100)  # 4.61 .. 6.61 s
    result = summarize(reference_samples(), reference_events(), INTERVAL, prediction)
    assert result["within_theory"] is False


def test_tolerance_is_the_larger_of_two_intervals_and_ten_percent():
    scaled_skew = {**SEED_SETTINGS, "vrrp": {**SEED_SETTINGS["vrrp"], "version": 3}}
    prediction = expected_outage("haproxy-stop", scaled_skew, backup_priority=100)  # 3.219 .. 5.219 s
    samples = reference_samples()
    events = reference_events()
    # a 2.70 s outage: 3.21875 - 10 % of 5.21875 = 2.697 <= 2.70 -> within; 2.68 is not
    for end, within in ((102.7, True), (102.68, False)):
        short = [s if not (end <= s.sent < 103.0) else ok(round(s.sent * 100) - 9000) for s in samples]
        result = summarize(short, events, INTERVAL, prediction)
        assert (result["downtime"], result["within_theory"]) == (pytest.approx(end - 100.0), within)


def test_no_prediction_for_a_scenario_without_bounds():
    prediction = expected_outage("split-brain", SEED_SETTINGS, backup_priority=100)
    result = summarize(reference_samples(), reference_events(), INTERVAL, prediction)
    assert result["within_theory"] is None
    assert result["theory"]["expect"] == "no-prediction"
    assert result["theory"]["high"] is None


def test_summary_is_strict_json(summary):
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_concurrent_samples_out_of_order_are_sorted():
    samples = reference_samples()
    shuffled = samples[1::2] + samples[::2]
    assert summarize(shuffled, reference_events(), INTERVAL) == summarize(samples, reference_events(), INTERVAL)


def test_outage_already_running_at_injection_counts():
    # the requests sent at 99.99 and 100.00 were still in flight when the fault hit
    samples = [failed(i, "reset") if at(i) in (99.99, 100.0) else s for i, s in enumerate(reference_samples())]
    result = summarize(samples, reference_events(), INTERVAL)
    assert result["downtime"] == 3.02  # 99.98 -> 103.00
    assert result["downtime_failed"] == 301
    assert result["outages"][1]["after"] is None
    assert result["phases"]["answering"] == 3.0


def test_a_brief_failure_before_the_real_outage_is_not_the_downtime():
    """A slow host (a VM under emulation) can reset a few requests while HAProxy shuts down,
    answer some more, and only then stop answering: the downtime is the long outage."""
    # the reference run (resets at 100.01 and 100.02, refused until 103.00), answered again 100.03-100.49
    samples = [ok(i) if 100.03 <= at(i) < 100.5 else s for i, s in enumerate(reference_samples())]
    result = summarize(samples, reference_events(), INTERVAL)
    assert [outage["downtime"] for outage in result["outages"][1:]] == [0.03, 2.51]
    assert result["outages"][result["main_outage"]]["by_kind"] == {"refused": 250}
    assert result["downtime"] == 2.51  # 100.49 -> 103.00, not the 0.03 s blip


# ---------------------------------------------------------------------------- analysis: edge runs


def test_run_that_never_recovers():
    prediction = expected_outage("haproxy-freeze", SEED_SETTINGS, backup_priority=100)
    result = summarize(never_recovering_samples(), never_recovering_events(), INTERVAL, prediction)
    assert result["verdict"] == "invalid"
    assert result["downtime"] is None
    assert result["downtime_at_least"] == 9.99  # 100.00 -> 109.99
    assert result["downtime_failed"] == 999
    assert result["outages"][-1]["end"] is None
    assert result["phases"] == {"detection": None, "takeover": None, "answering": None}
    assert result["time_to_alternate"] is None
    assert result["within_theory"] is True  # theory said a pid check never sees a frozen HAProxy
    assert result["theory"]["expect"] == "no-recovery"
    assert result["vip_holder_after"] == ["haproxy-1"]
    json.dumps(result, allow_nan=False)


def test_never_recovering_run_disagrees_with_a_finite_prediction():
    prediction = expected_outage("haproxy-kill", SEED_SETTINGS, backup_priority=100)
    result = summarize(never_recovering_samples(), never_recovering_events(), INTERVAL, prediction)
    assert result["within_theory"] is False


def test_run_without_fault():
    samples = [ok(index) for index in range(100)]
    result = summarize(samples, [], INTERVAL)
    assert result["fault"] == {"inject": None, "heal": None, "action": None, "node": None, "target": None}
    assert result["downtime"] is None
    assert result["downtime_failed"] is None
    assert result["phases"] == {"detection": None, "takeover": None, "answering": None}
    assert result["time_to_alternate"] is None
    assert result["longest_gap"] == 0.01
    assert result["vip_timeline"] == []
    assert result["vip_holder_before"] is None
    assert result["verdict"] == "valid"


def test_fault_without_outage_has_zero_downtime():
    samples = [ok(index) for index in range(2000)]
    result = summarize(samples, reference_events(), INTERVAL)
    assert result["downtime"] == 0.0
    assert result["downtime_failed"] == 0
    assert result["phases"]["answering"] is None
    assert result["time_to_alternate"] == 0.0  # alternation never stopped


def test_outage_after_the_heal_is_not_the_fault_downtime():
    samples = [failed(i, "refused") if 106.0 <= at(i) < 106.5 else ok(i) for i in range(2000)]
    result = summarize(samples, reference_events(), INTERVAL)
    assert result["downtime"] == 0.0
    assert result["outages"][0]["after"] == "heal"
    assert result["longest_gap"] == 0.51


def test_empty_samples():
    result = summarize([], reference_events(), INTERVAL)
    assert result["verdict"] == "unknown"
    assert result["requests"] == 0
    assert result["failed_by_kind"] == {}
    assert result["downtime"] is None
    assert result["longest_gap"] is None
    assert result["outages"] == []


def test_halt_and_boot_pair_with_a_null_target():
    events = [
        {"t": 100.0, "kind": "fault", "phase": "inject", "action": "halt_node", "node": "haproxy-1", "target": None},
        {"t": 104.0, "kind": "fault", "phase": "heal", "action": "boot_node", "node": "haproxy-1", "target": None},
    ]
    result = summarize(reference_samples(), events, INTERVAL)
    assert result["fault"]["heal"] == 104.0
    assert result["fault"]["action"] == "halt_node"


# ---------------------------------------------------------------------------- loading


def test_load_tolerates_a_truncated_last_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    lines = [json.dumps(sample.to_json()) for sample in reference_samples()[:3]]
    path.write_text("\n".join(lines) + '\n{"sent": 90.03, "lat')
    assert load_samples(path) == reference_samples()[:3]


def test_load_rejects_a_broken_line_in_the_middle(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"t": 1, "kind": "vip"}\nnot json\n{"t": 2, "kind": "vip"}\n')
    with pytest.raises(ValueError, match=r"events.jsonl:2"):
        load_events(path)


# ---------------------------------------------------------------------------- theory


@pytest.mark.parametrize(
    ("advert", "expected"),
    [(2, 7.22), (1, 3.61), (0.1, 0.36)],
)
def test_master_down_interval_for_backup_priority_100(advert, expected):
    assert master_down_interval(advert, 100) == pytest.approx(expected, abs=0.005)


def test_skew_time():
    assert skew_time(2, 100) == pytest.approx(1.21875)
    assert skew_time(1, 100) == pytest.approx(0.609375)
    assert skew_time(1, 103) == pytest.approx(0.59765625)
    assert skew_time(2, 100, version=2) == pytest.approx(0.609375)  # RFC 3768: seconds, whatever the advert


def test_halt_master_window_and_formula():
    prediction = expected_outage("halt-master", SEED_SETTINGS, backup_priority=100)
    assert (prediction.low, prediction.high) == pytest.approx((4.609375, 6.609375))
    assert "3 x 2 s + (256-100)/256 s = 6.61 s" in prediction.formula


def test_sub_second_adverts_under_vrrp_version_3():
    settings = {**SEED_SETTINGS, "vrrp": {"version": 3, "advert_int": 0.1}}
    prediction = expected_outage("halt-master", settings, backup_priority=100)
    assert prediction.high == pytest.approx(0.36, abs=0.005)
    assert prediction.low == pytest.approx(0.26, abs=0.005)


def test_a_crashed_keepalived_leaves_the_vip_serving():
    prediction = expected_outage("keepalived-crash", SEED_SETTINGS, backup_priority=100)
    assert (prediction.low, prediction.high) == (0.0, 0.0)
    assert "6.61 s" in prediction.formula and "two nodes hold it" in prediction.formula


def test_graceful_stop_costs_the_skew_time():
    prediction = expected_outage("keepalived-stop", SEED_SETTINGS, backup_priority=100)
    assert (prediction.low, prediction.high) == pytest.approx((0.609375, 0.609375))


def test_dead_haproxy_adds_the_track_check():
    prediction = expected_outage("haproxy-kill", SEED_SETTINGS, backup_priority=100)
    assert (prediction.low, prediction.high) == pytest.approx((2 + 0.609375, 4 + 0.609375))


def test_track_file_mechanism_uses_milliseconds():
    settings = {**SEED_SETTINGS, "vrrp": {"version": 2, "advert_int": 1}, "track": FILE_TRACK}
    prediction = expected_outage("haproxy-stop", settings, backup_priority=100)
    assert (prediction.low, prediction.high) == pytest.approx((0.1 + 0.609375, 0.15 + 0.609375))


def test_frozen_haproxy_is_never_seen_by_a_pid_check():
    prediction = expected_outage("haproxy-freeze", SEED_SETTINGS, backup_priority=100)
    assert math.isinf(prediction.low) and math.isinf(prediction.high)
    assert "pid" in prediction.formula
    assert prediction.to_json()["high"] is None


def test_frozen_haproxy_is_seen_by_an_external_checker():
    settings = {**SEED_SETTINGS, "track": FILE_TRACK}
    frozen = expected_outage("haproxy-freeze", settings, backup_priority=100)
    killed = expected_outage("haproxy-kill", settings, backup_priority=100)
    assert (frozen.low, frozen.high) == (killed.low, killed.high)


def test_backend_down_depends_on_redispatch():
    assert expected_outage("backend-down", SEED_SETTINGS, 100).high == 6.0
    redispatching = {**SEED_SETTINGS, "haproxy": {**SEED_SETTINGS["haproxy"], "redispatch": True}}
    assert expected_outage("backend-down", redispatching, 100).high == 0.0


@pytest.mark.parametrize("scenario", ["failback", "split-brain", "slow-link"])
def test_scenarios_without_a_single_prediction(scenario):
    prediction = expected_outage(scenario, SEED_SETTINGS, backup_priority=100)
    assert prediction.low == 0 and math.isnan(prediction.high)
    assert "no single prediction" in prediction.formula


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown scenario 'reboot-everything'") as raised:
        expected_outage("reboot-everything", SEED_SETTINGS, backup_priority=100)
    for scenario in SCENARIOS:
        assert scenario in str(raised.value)


def test_missing_setting_is_named():
    with pytest.raises(ValueError, match=r"track\.fall"):
        expected_outage("haproxy-stop", {**SEED_SETTINGS, "track": {"mechanism": "script", "interval": 1}}, 100)


# ---------------------------------------------------------------------------- plots


def test_plot_run_writes_a_readable_png(tmp_path):
    samples, events = reference_samples(), reference_events()
    prediction = expected_outage("haproxy-stop", SEED_SETTINGS, backup_priority=100)
    result = summarize(samples, events, INTERVAL, prediction)
    path = plot_run(samples, events, result, tmp_path / "charts" / "run.png", "haproxy-stop on haproxy-1 (seed)")
    assert path == tmp_path / "charts" / "run.png"
    data = Path(path).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 20_000


def anonymous(samples: list[Outcome]) -> list[Outcome]:
    """The same run against an application whose answers name no backend."""
    return [replace(sample, backend=None) for sample in samples]


@pytest.mark.parametrize("case", ["never-recovers", "no-fault", "empty", "anonymous"])
def test_plot_run_copes_with_edge_runs(tmp_path, case):
    samples, events = {
        "never-recovers": (never_recovering_samples(), never_recovering_events()),
        "no-fault": ([ok(index) for index in range(300)], []),
        "empty": ([], reference_events()),
        "anonymous": (anonymous(reference_samples()), reference_events()),
    }[case]
    result = summarize(samples, events, INTERVAL)
    path = plot_run(samples, events, result, tmp_path / f"{case}.png", case)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_answers_that_name_no_backend_are_answers_all_the_same():
    """An application that says nothing of who served it: its answers count, the downtime is the same."""
    samples, events = reference_samples(), reference_events()
    named, unnamed = summarize(samples, events, INTERVAL), summarize(anonymous(samples), events, INTERVAL)
    assert (unnamed["ok"], unnamed["failed"], unnamed["downtime"]) == (named["ok"], named["failed"], named["downtime"])


def test_an_answer_that_arrives_late_does_not_end_the_outage_early():
    """A SYN sent into the outage is retransmitted a second later, after the VIP moved:
    its answer arrives after the first prompt answer, so it cannot shorten the outage."""
    samples = [ok(index) for index in range(100)]
    samples += [failed(index, "refused") for index in range(100, 300)]
    late = Outcome(at(150), at(350) - at(150), status=200, backend="httpd-1")
    samples.append(late)
    samples += [ok(index) for index in range(300, 400)]
    inject = {"t": at(100), "kind": "fault", "phase": "inject", "action": "stop_service",
              "node": "haproxy-1", "target": "haproxy"}
    summary = summarize(samples, [inject], interval=0.01)
    assert summary["downtime"] == pytest.approx(at(300) - at(99), abs=0.001)


def test_a_restart_by_systemd_before_any_takeover_is_shown_and_not_judged_against_theory(tmp_path: Path):
    """kill -9 HAProxy on a host whose unit has Restart=always: systemd brings it back 0.12 s later,
    before Keepalived's check could fail twice, so the VIP never moves. The summary says so and does
    not judge the short outage against the failover theory; the chart draws the restart."""
    samples = [ok(index) if not 100.0 < at(index) < 100.12 else failed(index, "refused") for index in range(2000)]
    events = [*reference_events()[:2],
              {"t": 100.12, "kind": "restart", "node": "haproxy-1", "service": "haproxy", "unit": "haproxy.service",
               "down": 100.0, "up": 100.12, "after": 0.12},
              {**reference_events()[-1], "holders": ["haproxy-1"]}]
    events[1] = {**events[1], "action": "kill_service"}
    result = summarize(samples, events, INTERVAL, expected_outage("haproxy-kill", SEED_SETTINGS, 100))
    assert result["restarts"] == [{"node": "haproxy-1", "service": "haproxy", "unit": "haproxy.service",
                                   "down": 0.0, "up": 0.12, "after": 0.12,
                                   "text": "systemd restarted haproxy on haproxy-1 after 0.12 s"}]
    assert result["within_theory"] is None and "the fault was undone before" in result["theory_note"]
    assert result["downtime"] == pytest.approx(0.12, abs=0.011)
    plot_run(samples, events, result, tmp_path / "restart.png", "restart")
    assert (tmp_path / "restart.png").stat().st_size > 10_000


def test_a_restart_after_the_takeover_leaves_the_judgement_to_theory(summary):
    events = [*reference_events(), {"t": 104.0, "kind": "restart", "node": "haproxy-1", "service": "haproxy",
                                    "unit": "haproxy.service", "down": 100.0, "up": 104.0, "after": 4.0}]
    result = summarize(reference_samples(), events, INTERVAL, expected_outage("haproxy-stop", SEED_SETTINGS, 100))
    assert result["within_theory"] is summary["within_theory"] is True and result["theory_note"] is None
