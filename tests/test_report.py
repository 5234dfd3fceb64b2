"""The report: score, theory, changes; the page opened in a real headless Chromium (no lab)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from chaoslab.measure import history
from chaoslab.measure.history import RunRecord
from chaoslab.tools import report
from chaoslab.tools.report import by_experiment, changes, resilience_score, theory_window
from tests.helpers import chaoslab_command
from tests.test_history import RUN

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


# ---------------------------------------------------------------------------- the browser


def chromium(page: Path, scratch: Path) -> tuple[str, Path]:
    """Open page in headless Chromium: (the DOM after the load event, a screenshot 1400 x 2000)."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("Debian's chromium package is needed: apt-get install -y --no-install-recommends chromium")
    flags = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={scratch / 'chromium-profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    screenshot = scratch / "screenshot.png"
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1400,2000", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    return dom.stdout, screenshot


class Page(HTMLParser):
    """What the tests read back from a rendered report: body, sections and run rows, their data attributes."""

    def __init__(self, dom: str):
        super().__init__()
        self.body: dict[str, str] = {}
        self.sections: dict[str, dict[str, str]] = {}
        self.rows: dict[int, dict[str, str]] = {}
        self.links: list[str] = []
        self.text: list[str] = []
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "body":
            self.body = attributes
        elif tag == "section":
            self.sections[attributes["data-experiment"]] = attributes
        elif tag == "tr" and "data-run-id" in attributes:
            self.rows[int(attributes["data-run-id"])] = attributes
        elif tag == "a" and not attributes.get("href", "#").startswith("#"):
            self.links.append(attributes["href"])

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def plain_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def check_page_against_history(page: Path, dom: str, screenshot: Path, history_file: Path) -> Page:
    """Every image loaded, the screenshot is not blank, and the page's numbers are the database's."""
    parsed = Page(dom)
    runs = history.load(history_file)
    experiments = by_experiment(runs)
    assert parsed.body["data-broken-images"] == "0"
    assert parsed.body["data-images"] == str(len(experiments))
    assert parsed.body["data-runs"] == str(len(runs))
    for experiment in experiments:
        section = parsed.sections[experiment.name]
        score = resilience_score(experiment.runs)
        assert (section["data-runs"], section["data-met"], section["data-missed"], section["data-unjudged"]) == (
            str(len(experiment.runs)), str(score.met), str(score.missed), str(score.unjudged))
        assert section["data-latest-status"] == experiment.latest.status
        assert f"Resilience score {score.text()}" in parsed.plain_text
    assert sorted(parsed.rows) == sorted(run.id for run in runs)
    for run in runs:
        row = parsed.rows[run.id]
        assert row["data-status"] == run.status
        assert (float(row["data-downtime"]) if row["data-downtime"] else None) == run.downtime
        if run.downtime is not None:
            assert f"{run.downtime:.2f} s" in parsed.plain_text
    for link in parsed.links:
        assert (page.parent / link).is_file(), link
    with Image.open(screenshot) as image:
        assert image.size == (1400, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 200, "the screenshot is nearly blank"
    assert max(count for count, _ in colours) < 0.97 * 1400 * 2000, "the screenshot is nearly one colour"
    return parsed


# ---------------------------------------------------------------------------- judging runs


def test_the_score_counts_runs_within_budget():
    runs = [
        RUN,  # 3.64 s of 10 s: met
        replace(RUN, downtime=9.99),  # met
        replace(RUN, downtime=10.2),  # missed
        replace(RUN, downtime=None, downtime_at_least=15.0),  # never recovered: missed
        replace(RUN, downtime=None, downtime_at_least=None),  # nothing measured: not judged
        replace(RUN, downtime_budget=None),  # no budget: not judged
    ]
    score = resilience_score(runs)
    assert (score.met, score.missed, score.unjudged, score.judged) == (2, 2, 2, 4)
    assert score.percent == 50.0
    assert score.text() == "50% (2 of 4 runs within budget)"
    assert resilience_score([replace(RUN, downtime_budget=None)]).text() == "no run to judge yet"


def test_theory_comes_from_the_topology_else_from_the_runs():
    assert theory_window("haproxy-stop", "seed", []) == pytest.approx((2.609375, 4.609375))
    assert theory_window("haproxy-freeze", "seed", [])[1] == math.inf  # a pid check never sees a frozen HAProxy
    assert theory_window("split-brain", "seed", []) is None  # no single prediction
    gone = replace(RUN, profile="retired", theory_low=0.5, theory_high=1.5)
    assert theory_window("haproxy-stop", "retired", [gone]) == (0.5, 1.5)
    assert theory_window("haproxy-stop", "retired", [replace(gone, theory_expect="no-recovery")])[1] == math.inf
    assert theory_window("haproxy-stop", "retired", []) is None


def test_version_and_commit_changes_are_found():
    runs = [RUN, replace(RUN, started_at=2.0), replace(RUN, started_at=3.0, haproxy_version="2.8.1"),
            replace(RUN, started_at=4.0, haproxy_version="2.8.1", git_commit="abcdef1234")]
    assert changes(runs) == [(3.0, "haproxy 2.8.1"), (4.0, "commit abcdef1")]


# ---------------------------------------------------------------------------- the page


def test_a_report_of_100_runs_reads_well_in_chromium(tmp_path: Path):
    history_file = tmp_path / "results" / history.HISTORY_FILE
    report.synthetic_history(history_file, 100)
    page = report.build_report(history_file)
    assert page == tmp_path / "results" / "report.html"
    dom, screenshot = chromium(page, tmp_path)
    parsed = check_page_against_history(page, dom, screenshot, history_file)
    assert len(parsed.sections) == len(by_experiment(history.load(history_file))) > 5
    assert "<script src" not in page.read_text() and "<link" not in page.read_text()  # self-contained


def test_each_run_links_its_own_chart_relatively(tmp_path: Path):
    results = tmp_path / "results"
    folder = results / RUN.folder
    folder.mkdir(parents=True)
    (folder / "downtime.png").write_bytes(b"png")
    (folder / "summary.json").write_text(json.dumps({}))
    history.insert(results / history.HISTORY_FILE, RUN)
    history.insert(results / history.HISTORY_FILE, replace(RUN, folder="gone", started_at=RUN.started_at + 1))
    page = report.build_report(results / history.HISTORY_FILE, tmp_path / "elsewhere" / "page.html")
    links = Page(page.read_text()).links
    assert links == [f"../results/{RUN.folder}/downtime.png", f"../results/{RUN.folder}/summary.json"]
    assert "folder gone" in Page(page.read_text()).plain_text


def test_a_broken_image_is_caught_by_the_page_itself(tmp_path: Path):
    page = tmp_path / "broken.html"
    page.write_text(f'<html><body><img src="missing.png"><script>{report.SCRIPT}</script></body></html>')
    dom, _ = chromium(page, tmp_path)
    assert Page(dom).body["data-broken-images"] == "1"


def test_the_report_command_writes_the_page_or_says_why_not(tmp_path: Path):
    history.insert(tmp_path / history.HISTORY_FILE, RUN)
    result = chaoslab_command("report", "--output", str(tmp_path / "out.html"), env={"CHAOSLAB_RESULTS": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"report written to {tmp_path / 'out.html'}\n"
    empty = chaoslab_command("report", env={"CHAOSLAB_RESULTS": str(tmp_path / "none")})
    assert empty.returncode == 2
    assert empty.stderr == (f"chaoslab: no runs recorded in {tmp_path / 'none' / history.HISTORY_FILE}; "
                            "run an experiment first (chaos run or chaoslab schedule)\n")


def test_the_benchmark_prints_its_time():
    result = subprocess.run([sys.executable, "-m", "chaoslab.tools.report", "--bench", "--runs", "20"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("report over 20 runs of ") and "experiments, charts included: " in result.stdout


def test_runs_group_by_experiment_oldest_first():
    later = replace(RUN, started_at=RUN.started_at + 5, id=2)
    other: RunRecord = replace(RUN, experiment_file="experiments/halt-master.json", id=3)
    groups = by_experiment([later, other, replace(RUN, id=1)])
    assert [(group.name, [run.id for run in group.runs]) for group in groups] == [("failover", [1, 2]), ("halt-master", [3])]
