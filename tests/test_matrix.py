"""The failover benchmark matrix: its judgement on hand-made runs, the capture's parsing and
cross-check, the report it writes, and `chaoslab bench matrix` end to end on a small matrix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.measure.client import Outcome
from chaoslab.measure.theory import Prediction
from chaoslab.tools import matrix, matrix_docs
from chaoslab.tools.capture import Advert, Announcement, CrossCheck, cross_check, parse_advert, parse_announcement

VIP = "192.168.1.10"
GARP = ("1795639415.260560 7e:fe:e9:30:ca:84 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
        "Request who-has 192.168.1.10 (ff:ff:ff:ff:ff:ff) tell 192.168.1.10, length 28")


# --- the capture ------------------------------------------------------------------------------------


def test_a_gratuitous_arp_for_the_vip_is_an_announcement():
    assert parse_announcement(GARP, VIP) == Announcement(1795639415.26056, "7e:fe:e9:30:ca:84")


@pytest.mark.parametrize("line", [
    "1795639415.3 c6:c5:99:3d:21:ca > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
    "Request who-has 192.168.1.10 tell 192.168.1.50, length 28",  # the client asking
    "1795639415.3 4e:cd:ef:89:71:38 > c6:c5:99:3d:21:ca, ethertype ARP (0x0806), length 42: "
    "Reply 192.168.1.10 is-at 4e:cd:ef:89:71:38, length 28",  # an answer to it
    "1795639415.3 4e:cd:ef:89:71:38 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
    "Request who-has 192.168.1.13 (ff:ff:ff:ff:ff:ff) tell 192.168.1.13, length 28",  # another address
    "listening on eth1, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
    "",
])
def test_other_lines_are_not_announcements(line: str):
    assert parse_announcement(line, VIP) is None


def test_a_vrrp_advert_line_is_parsed():
    line = ("1795640606.667819 IP 192.168.1.13 > 192.168.1.14: VRRPv3, Advertisement, vrid 51, prio 103, "
            "intvl 10cs, length 12")
    assert parse_advert(line) == Advert(1795640606.667819, "192.168.1.13", 103)
    assert parse_advert(line.replace("prio 103", "prio 0")).priority == 0
    assert parse_advert("tcpdump: verbose output suppressed, use -v[v]... for full protocol decode") is None
    assert parse_advert(GARP) is None


def run_summary(inject: float, outages: list[dict], heal: float | None = None, timeline: list[dict] | None = None,
                main: int | None = 0, downtime: float | None = None) -> dict:
    return {
        "fault": {"inject": inject, "heal": heal},
        "outages": outages,
        "main_outage": main,
        "downtime": downtime,
        "vip_holder_before": ["haproxy-1"],
        "vip_timeline": timeline or [],
        "phases": {"answering": None},
        "within_theory": True,
        "run": {"status": "completed"},
    }


EVENTS = [
    {"t": 99.0, "kind": "run", "phase": "start", "holders": ["haproxy-1"],
     "states": {"haproxy-1": "MASTER", "haproxy-2": "BACKUP"}},
    {"t": 100.0, "kind": "fault", "phase": "inject", "node": "haproxy-1"},
    {"t": 100.30, "kind": "vrrp", "node": "haproxy-2", "state": "MASTER"},
]
MACS = {"haproxy-1": "aa:aa:aa:aa:aa:01", "haproxy-2": "aa:aa:aa:aa:aa:02"}
ADDRESSES = {"haproxy-1": "192.168.1.13", "haproxy-2": "192.168.1.14"}
ADVERTS = [Advert(99.8, "192.168.1.13", 103), Advert(99.9, "192.168.1.13", 103),
           Advert(100.02, "192.168.1.13", 0), Advert(100.305, "192.168.1.14", 100)]


def test_cross_check_lines_up_the_witnesses():
    outage = {"start": 100.0, "end": 100.31, "failed": 30}
    announcements = [Announcement(99.5, MACS["haproxy-1"]), Announcement(100.29, MACS["haproxy-2"])]
    check = cross_check(run_summary(100.0, [outage]), EVENTS, announcements, ADVERTS, MACS, ADDRESSES)
    assert check.new_master == "haproxy-2"
    assert check.announcement_after_master == pytest.approx(-0.01)
    assert check.advert_after_master == pytest.approx(0.005)
    assert check.answer_after_announcement == pytest.approx(0.02)
    assert check.last_master_advert == 99.9  # the priority-0 advert after the fault is no advert of a live master


def test_cross_check_without_takeover_or_outage():
    assert cross_check(run_summary(100.0, []), EVENTS[:2], [], [], MACS, ADDRESSES) is None
    check = cross_check(run_summary(100.0, []), EVENTS, [], [], MACS, ADDRESSES)
    assert check.announcement is None and check.first_advert is None and check.answer_after_announcement is None


# --- judging a cell ----------------------------------------------------------------------------------


def measured(downtime: float | None, failed: int = 0, moved: float | None = None, answering: float | None = None,
             check: CrossCheck | None = None, from_last_advert: float | None = None) -> matrix.Measurement:
    return matrix.Measurement("fast", "halt-master", "completed", downtime, failed, moved, answering, True, 0.01,
                              from_last_advert, "/tmp", check)


def cell(profile: str, scenario: str, runs: list[matrix.Measurement]) -> matrix.Cell:
    target = next((t for t in matrix.targets(Topology.load()) if (t.profile, t.scenario) == (profile, scenario)), None)
    return matrix.Cell(profile, scenario, Prediction(scenario, 0.26, 0.36, "x"), target, runs)


def test_percentiles_are_nearest_rank():
    assert matrix.percentile([0.3, 0.1, 0.2], 0.95) == 0.3
    assert matrix.percentile(list(range(1, 21)), 0.95) == 19
    assert matrix.percentile([], 0.95) is None and matrix.median([]) is None


def test_the_seed_target_is_ten_percent_around_the_master_down_interval_from_the_last_advert():
    def judged(*values):
        return cell("seed", "halt-master", [measured(5.5, from_last_advert=value) for value in values])

    assert "from the master's last advert" in judged().target.text and "6.61 s (5.95-7.27 s)" in judged().target.text
    assert judged(6.7, 6.5, 9.9).verdict == "PASS"
    assert judged(6.7, 6.5, 9.9).target.value_text(judged(6.7, 6.5, 9.9).runs) == "6.70 s"
    assert judged(8.0, 8.1, 7.0).verdict == "FAIL"
    assert judged(7.2, None, 7.2).verdict == "FAIL"


def test_fast_targets():
    assert cell("fast", "halt-master", [measured(0.33), measured(0.6), measured(0.31)]).verdict == "PASS"
    assert cell("fast", "halt-master", [measured(0.6), measured(0.6), measured(0.31)]).verdict == "FAIL"
    assert cell("fast", "backend-down", [measured(0.0), measured(0.02, failed=1)]).verdict == "FAIL"
    assert cell("fast", "backend-down", [measured(0.0, failed=2)]).target.value_text([measured(0.0, failed=2)]) \
        == "2 failed (worst run)"
    assert cell("fast", "backend-down", [measured(0.0), measured(0.0)]).verdict == "PASS"
    assert cell("fast", "haproxy-freeze", [measured(0.3, moved=0.29, answering=0.3)]).verdict == "PASS"
    assert cell("fast", "haproxy-freeze", [measured(0.3, moved=None, answering=0.3)]).verdict == "FAIL"
    assert cell("fast", "keepalived-stop", [measured(0.1)]).verdict == "-"
    assert cell("fast", "halt-master", []).verdict == "FAIL"


def test_cross_check_verdict():
    agreeing = CrossCheck("haproxy-2", 100.0, 99.99, 100.01, 100.02, 95.0)
    no_outage = CrossCheck("haproxy-2", 100.0, 100.01, 100.0, None, None)
    late_answer = CrossCheck("haproxy-2", 100.0, 99.99, 100.01, 100.3, 95.0)
    unseen = CrossCheck("haproxy-2", 100.0, None, 100.01, None, 95.0)
    assert cell("fast", "halt-master", [measured(0.3, check=agreeing), measured(0.3, check=no_outage)]
                ).cross_check_verdict == "PASS"
    assert cell("fast", "halt-master", [measured(0.3, check=late_answer)]).cross_check_verdict == "FAIL"
    assert cell("fast", "halt-master", [measured(0.3, check=unseen)]).cross_check_verdict == "FAIL"
    assert cell("fast", "halt-master", [measured(0.3)]).cross_check_verdict == "-"


def test_vip_moved_and_send_gap():
    timeline = [{"t": 99.0, "holders": ["haproxy-1"]}, {"t": 100.05, "holders": []},
                {"t": 100.3, "holders": ["haproxy-2"]}]
    summary = run_summary(100.0, [], heal=101.0, timeline=timeline)
    assert matrix.vip_moved(summary) == pytest.approx(0.3)
    samples = [Outcome(sent, 0.001, 200, "httpd-1") for sent in (99.9, 100.0, 100.01, 100.4, 100.41, 101.5)]
    assert matrix.send_gap(samples, summary) == pytest.approx(0.39)


def test_a_measurement_without_an_outage_answers_at_once():
    files = matrix.RunFiles(run_summary(100.0, [], main=None, downtime=0.0), [], None)
    run = matrix.measurement("fast", "keepalived-crash", files, Path("/tmp"))
    assert (run.downtime, run.failed, run.answering, run.cross_check) == (0.0, 0, 0.0, None)


@pytest.mark.parametrize(("profiles", "scenarios", "repeats", "message"), [
    (["warp"], ["halt-master"], 1, "unknown profile 'warp'"),
    (["fast"], ["meteor"], 1, "unknown scenario 'meteor'"),
    (["fast"], ["halt-master"], 0, "at least one profile, one scenario and one repeat"),
])
def test_plan_refuses_what_it_cannot_run(profiles, scenarios, repeats, message):
    with pytest.raises(ChaoslabError, match=message):
        matrix.cells_of(Topology.load(), profiles, scenarios, repeats)


def test_every_scenario_has_its_experiment_and_a_prediction():
    cells = matrix.cells_of(Topology.load(), list(matrix.PROFILES), list(matrix.SCENARIOS), 3)
    assert len(cells) == len(matrix.PROFILES) * len(matrix.SCENARIOS)
    for each in cells:
        assert matrix.find_experiment(each.scenario).is_file()
        assert each.prediction.has_bounds
    assert math.isinf(next(c for c in cells if (c.profile, c.scenario) == ("seed", "haproxy-freeze")).prediction.high)


# --- the report ----------------------------------------------------------------------------------


def test_the_report_writes_the_tables_and_the_chart(tmp_path: Path):
    check = CrossCheck("haproxy-2", 100.0, 99.99, 100.005, 100.02, 99.7)
    cells = [cell("fast", "halt-master", [measured(0.33, check=check), measured(0.31, check=check)]),
             cell("fast", "backend-down", [measured(0.0), measured(0.0)])]
    context = matrix_docs.RunContext.now("chaoslab bench matrix --profiles fast")
    context.finish()
    markdown, chart = matrix_docs.write_docs(cells, context, Topology.load(), tmp_path)
    text = markdown.read_text()
    assert "`chaoslab bench matrix --profiles fast`" in text
    assert ("| fast | halt-master | 2 | 0.32 s | 0.33 s | 0 | 0 | - | 0.26-0.36 s | 2/2 | median ≤ 0.5 s | 0.32 s | PASS |"
            in text)
    assert "| fast | halt-master | 2 | -10 (max 10) | +5 (max 5) | +30 (max 30) | PASS | 10 |" in text
    assert "**fast**: Sub-second failover" in text
    assert chart.read_bytes().startswith(b"\x89PNG") and chart.stat().st_size > 10_000


@pytest.mark.lab
def test_bench_matrix_end_to_end(cli, tmp_path: Path):
    """A small matrix for real: one fast-profile scenario, one run; its lab comes and goes."""
    result = cli("bench", "matrix", "--profiles", "fast", "--scenarios", "keepalived-stop", "--repeats", "1",
                 "--prefix", "ctfastm", "--docs", str(tmp_path / "docs"),
                 env={"CHAOSLAB_RESULTS": str(tmp_path / "results")}, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[fast 1/1] keepalived-stop: completed" in result.stdout
    text = (tmp_path / "docs" / "BENCHMARKS.md").read_text()
    assert "`chaoslab bench matrix --profiles fast --scenarios keepalived-stop --repeats 1`" in text
    assert "| fast | keepalived-stop | 1 |" in text and "| PASS |" in text
    assert (tmp_path / "docs" / "benchmarks.png").stat().st_size > 10_000
    runs = list((tmp_path / "results").glob("matrix-*/fast/keepalived-stop-1/*/summary.json"))
    assert len(runs) == 1 and list((tmp_path / "results").glob("matrix-*/matrix.json"))
    assert not Lab(LabSettings(prefix="ctfastm")).is_up()
