"""The history database: schema and migrations, concurrent writers, rows from summaries, the table (no lab)."""

from __future__ import annotations

import logging
import re
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.measure import history
from chaoslab.measure.history import RunRecord
from tests.helpers import chaoslab_command

RUN = RunRecord(
    experiment="failover: HAProxy stops on the VRRP master", experiment_file="experiments/failover.json",
    scenario="haproxy-stop", profile="seed", provider="netns", prefix="ctx", started_at=1_800_000_000.0,
    duration=14.6, status="completed", aborted_by=None, verdict="valid", requests=1432, failed_requests=362,
    downtime=3.642, downtime_at_least=3.642, downtime_budget=10.0,
    phases={"detection": 3.022, "takeover": 3.643, "answering": 3.638},
    vip_before=["haproxy-1"], vip_after=["haproxy-1"], theory_low=2.0, theory_high=5.21875, theory_expect="recovery",
    haproxy_version="2.6.12-1+deb12u4", keepalived_version="2.2.7", apache2_version="2.4.71",
    git_commit="624b9bc53d3b723a3cfd1adb1df206f32337b8bf", folder="20271115T080000Z-failover",
)


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_history_has_the_latest_schema_in_wal_mode(tmp_path: Path):
    path = tmp_path / "history.sqlite"
    with history.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert user_version(path) == len(history.MIGRATIONS)


def test_a_run_comes_back_as_it_went_in(tmp_path: Path):
    path = tmp_path / "history.sqlite"
    run_id = history.insert(path, RUN)
    assert history.load(path) == [replace(RUN, id=run_id)]
    assert history.load(tmp_path / "none.sqlite") == []


def test_pending_migrations_run_once_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "history.sqlite"
    history.insert(path, RUN)
    newer = [*history.MIGRATIONS, "ALTER TABLE runs ADD COLUMN note TEXT; UPDATE runs SET note = 'migrated'"]
    monkeypatch.setattr(history, "MIGRATIONS", newer)
    history.insert(path, replace(RUN, started_at=RUN.started_at + 60))
    history.insert(path, replace(RUN, started_at=RUN.started_at + 120))  # a second connect: nothing re-applied
    assert user_version(path) == len(newer)
    with sqlite3.connect(path) as connection:
        notes = [row[0] for row in connection.execute("SELECT note FROM runs ORDER BY id")]
    assert notes == ["migrated", None, None]
    assert len(history.load(path)) == 3


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "history.sqlite"
    history.insert(path, RUN)
    monkeypatch.setattr(history, "MIGRATIONS", [*history.MIGRATIONS, "ALTER TABLE runs ADD COLUMN x TEXT; NOT SQL"])
    with pytest.raises(sqlite3.OperationalError):
        history.load(path)
    assert user_version(path) == len(history.MIGRATIONS) - 1
    with sqlite3.connect(path) as connection:
        assert "x" not in [row[1] for row in connection.execute("PRAGMA table_info(runs)")]


def test_a_history_from_a_newer_chaoslab_is_refused(tmp_path: Path):
    path = tmp_path / "history.sqlite"
    history.insert(path, RUN)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(ChaoslabError, match=r"schema version 99, newer than this chaoslab knows \(2\); upgrade"):
        history.load(path)


def test_a_history_of_schema_1_gains_the_partial_outage_columns(tmp_path: Path):
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript(history.MIGRATIONS[0] + "; PRAGMA user_version = 1")
        connection.execute("INSERT INTO runs (recorded_at, experiment, started_at, status, folder) "
                           "VALUES (1, 'old run', 1, 'completed', 'x')")
    history.insert(path, replace(RUN, impact_kind="partial", impact_seconds=4.97, failed_share=0.501,
                                 within_theory=True))
    old, new = history.load(path)
    assert (old.experiment, old.impact_kind, old.within_theory) == ("old run", None, None)
    assert (new.impact_kind, new.impact_seconds, new.failed_share, new.within_theory) == ("partial", 4.97, 0.501, True)
    assert "partial 4.97 s, 50% failed" in history.terminal_rows([new])[1]


def _insert_many(path: Path, writer: int, count: int) -> list[int]:
    return [history.insert(path, replace(RUN, prefix=f"w{writer}", started_at=RUN.started_at + index))
            for index in range(count)]


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    path = tmp_path / "history.sqlite"  # not created yet: the writers race to create and migrate it too
    with ProcessPoolExecutor(max_workers=4) as pool:
        ids = [run_id for ids in pool.map(_insert_many, [path] * 4, range(4), [25] * 4) for run_id in ids]
    assert sorted(ids) == list(range(1, 101))
    runs = history.load(path)
    assert len(runs) == 100
    assert {run.prefix: sum(other.prefix == run.prefix for other in runs) for run in runs} == {
        "w0": 25, "w1": 25, "w2": 25, "w3": 25}


def test_load_filters_by_experiment_and_keeps_the_last(tmp_path: Path):
    path = tmp_path / "history.sqlite"
    for index in range(5):
        history.insert(path, replace(RUN, started_at=RUN.started_at + index, failed_requests=index))
    history.insert(path, replace(RUN, experiment="backend-down: httpd stops on httpd-1",
                                 experiment_file="experiments/backend-down.json"))
    assert [run.failed_requests for run in history.load(path, "failover", last=2)] == [3, 4]
    assert len(history.load(path, "experiments/failover.json")) == 5
    assert len(history.load(path, RUN.experiment)) == 5
    assert [run.name for run in history.load(path, "backend-down")] == ["backend-down"]
    assert history.load(path, "fail") == []


def test_a_summary_becomes_a_row():
    root = Path("/srv/results")
    summary = {
        "requests": 1432, "failed": 362, "downtime": 3.642, "downtime_at_least": 3.642, "verdict": "valid",
        "phases": RUN.phases, "vip_holder_before": ["haproxy-1"], "vip_holder_after": ["haproxy-1"],
        "theory": {"scenario": "haproxy-stop", "low": 2.0, "high": 5.21875, "expect": "recovery", "formula": "..."},
        "run": {"experiment": RUN.experiment, "scenario": "haproxy-stop", "profile": "seed", "provider": "netns",
                "prefix": "ctx", "started": RUN.started_at, "ended": RUN.started_at + 14.6, "status": "completed",
                "folder": f"{root}/{RUN.folder}", "aborted_by": None},
    }
    versions = {"haproxy": RUN.haproxy_version, "keepalived": RUN.keepalived_version, "httpd": RUN.apache2_version}
    record = history.record_from_summary(summary, 10, "experiments/failover.json", versions, RUN.git_commit, root)
    assert replace(record, recorded_at=0) == replace(RUN, recorded_at=0)


def test_budgets_are_met_missed_or_not_judged():
    assert RUN.met_budget is True
    assert replace(RUN, downtime=10.5).met_budget is False
    assert replace(RUN, downtime=None, downtime_at_least=12.0).met_budget is False  # never recovered
    assert replace(RUN, downtime=None, downtime_at_least=None).met_budget is None  # nothing measured
    assert replace(RUN, downtime_budget=None).met_budget is None


def test_recording_never_raises(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CHAOSLAB_RESULTS", str(tmp_path / "file" / "results"))  # not a folder: cannot be written
    with caplog.at_level(logging.ERROR, logger="chaostoolkit"):
        assert history.record_run({"run": {"experiment": "x"}}, None, None, {}) is None
    assert "could not record the run in the history" in caplog.text


def test_the_project_commit_is_known():
    commit = history.project_commit()
    assert commit == "unknown" or (len(commit) == 40 and set(commit) <= set("0123456789abcdef"))


def test_the_history_command_prints_a_table(tmp_path: Path):
    for index in range(3):
        history.insert(tmp_path / "history.sqlite", replace(RUN, started_at=RUN.started_at + index))
    history.insert(tmp_path / "history.sqlite", replace(RUN, downtime=None, downtime_at_least=12.27,
                                                        started_at=RUN.started_at + 10, status="interrupted",
                                                        aborted_by="safeguard"))
    result = chaoslab_command("history", "--experiment", "failover", "--last", "2",
                              env={"CHAOSLAB_RESULTS": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["ID", "STARTED", "(UTC)", "EXPERIMENT"]
    assert len(rows) == 2
    assert "failover" in rows[0] and "3.64 s" in rows[0] and "10 s met" in rows[0] and "3.02/3.64/3.64" in rows[0]
    assert "interrupted (safeguard)" in rows[1] and ">12.27 s" in rows[1] and "10 s missed" in rows[1]
    assert "haproxy-1>haproxy-1" in rows[1] and "2.6.12-1+deb12u4/2.2.7/2.4.71" in rows[1]
    empty = chaoslab_command("history", env={"CHAOSLAB_RESULTS": str(tmp_path / "none")})
    assert empty.returncode == 0 and empty.stdout.startswith("no runs recorded in ")
    bad = chaoslab_command("history", "--last", "0", env={"CHAOSLAB_RESULTS": str(tmp_path)})
    assert (bad.returncode, bad.stderr) == (2, "chaoslab: --last must be at least 1, not 0\n")


@pytest.mark.lab
def test_versions_are_read_from_the_nodes(shared_lab):
    """What the lab's real daemons say of themselves (keepalived on stderr), from the services' one table."""
    versions = shared_lab.software_versions()
    assert set(versions) == {"haproxy", "keepalived", "httpd"}
    assert re.fullmatch(r"2\.\d+\.\S+", versions["haproxy"]) and re.fullmatch(r"2\.\d+\.\d+", versions["keepalived"])
    assert re.fullmatch(r"2\.4\.\d+", versions["httpd"])
