"""The history of runs: one SQLite file, results/history.sqlite, one row per run.

Every run is recorded, scheduled or a plain `chaos run`: the control calls
record_run() once it has written the run's summary. A row keeps what a trend
needs (experiment, profile, start, duration, journal status, downtime, failed
requests, phases, VIP holders, theory, downtime budget, the impact window and
failed share of a partial outage), what changed between
runs (versions of haproxy, keepalived and apache2, the project's commit), and
where the run's own files are (its folder, relative to the results folder).

The schema is versioned with PRAGMA user_version: MIGRATIONS[i] takes a
database from version i to i + 1, and connect() applies the missing ones in
one transaction. Several processes may write at once (runs of labs with other
prefixes): the database is in WAL mode, writers wait for each other
(busy_timeout), and each insert is one transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path

from chaoslab.errors import ChaoslabError
from chaoslab.measure.results import slug
from chaoslab.paths import PROJECT_DIR, results_dir

__all__ = ["RunRecord", "connect", "history_path", "insert", "load", "met_budget", "record_from_summary", "record_run",
           "terminal_rows"]

logger = logging.getLogger("chaostoolkit")

HISTORY_FILE = "history.sqlite"
BUSY_TIMEOUT_MS = 30_000
UNKNOWN = "unknown"

MIGRATIONS: list[str] = [
    # 0 -> 1: the runs table
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recorded_at REAL NOT NULL,
        experiment TEXT NOT NULL,
        experiment_file TEXT,
        scenario TEXT,
        profile TEXT,
        provider TEXT,
        prefix TEXT,
        started_at REAL NOT NULL,
        duration REAL,
        status TEXT NOT NULL,
        aborted_by TEXT,
        verdict TEXT,
        requests INTEGER,
        failed_requests INTEGER,
        downtime REAL,
        downtime_at_least REAL,
        downtime_budget REAL,
        phases TEXT NOT NULL DEFAULT '{}',
        vip_before TEXT,
        vip_after TEXT,
        theory_low REAL,
        theory_high REAL,
        theory_expect TEXT,
        haproxy_version TEXT,
        keepalived_version TEXT,
        apache2_version TEXT,
        git_commit TEXT,
        folder TEXT NOT NULL
    );
    CREATE INDEX runs_by_experiment ON runs (experiment, started_at);
    CREATE INDEX runs_by_start ON runs (started_at);
    """,
    # 1 -> 2: what clients lived through besides the longest outage (a partial outage)
    """
    ALTER TABLE runs ADD COLUMN impact_kind TEXT;
    ALTER TABLE runs ADD COLUMN impact_seconds REAL;
    ALTER TABLE runs ADD COLUMN failed_share REAL;
    ALTER TABLE runs ADD COLUMN within_theory INTEGER
    """,
]

JSON_COLUMNS = ("phases", "vip_before", "vip_after")



@dataclass(frozen=True)
class RunRecord:
    """One run as the history keeps it. Times are unix times, durations seconds."""

    experiment: str
    experiment_file: str | None
    scenario: str | None
    profile: str | None
    provider: str | None
    prefix: str | None
    started_at: float
    duration: float | None
    status: str
    aborted_by: str | None
    verdict: str | None
    requests: int | None
    failed_requests: int | None
    downtime: float | None
    downtime_at_least: float | None
    downtime_budget: float | None
    phases: dict = field(default_factory=dict)
    vip_before: list[str] | None = None
    vip_after: list[str] | None = None
    theory_low: float | None = None
    theory_high: float | None = None
    theory_expect: str | None = None
    haproxy_version: str = UNKNOWN
    keepalived_version: str = UNKNOWN
    apache2_version: str = UNKNOWN
    git_commit: str = UNKNOWN
    folder: str = ""
    impact_kind: str | None = None  # none, whole or partial (chaoslab.measure.availability)
    impact_seconds: float | None = None
    failed_share: float | None = None
    within_theory: bool | None = None
    recorded_at: float = field(default_factory=time.time)
    id: int | None = None

    @property
    def name(self) -> str:
        """The experiment's short name: its file's stem (failover), else a slug of its title."""
        return Path(self.experiment_file).stem if self.experiment_file else slug(self.experiment)

    @property
    def partial(self) -> bool:
        return self.impact_kind == "partial"

    @property
    def measured(self) -> bool:
        """Whether the run measured an outage against its fault (else it has nothing to judge)."""
        return self.downtime is not None or self.downtime_at_least is not None

    @property
    def met_budget(self) -> bool | None:
        """True if the downtime stayed within the budget; False if not, or if the VIP never recovered;
        None without a budget or a measurement."""
        return met_budget(self.downtime, self.downtime_at_least, self.downtime_budget)

    def matches(self, experiment: str) -> bool:
        """Whether --experiment X means this run: X is its short name, title or file."""
        return experiment in (self.name, self.experiment, self.experiment_file)


def met_budget(downtime: float | None, downtime_at_least: float | None, budget: float | None) -> bool | None:
    """True if the downtime stayed within the budget; False if not, or if the VIP never recovered
    (only a lower bound is known); None without a budget or a measurement."""
    if budget is None or (downtime is None and downtime_at_least is None):
        return None
    return downtime is not None and downtime <= budget


# ---------------------------------------------------------------------------- the database


def history_path(root: Path | None = None) -> Path:
    """results/history.sqlite under the results folder ($CHAOSLAB_RESULTS or results/)."""
    return (root or results_dir()) / HISTORY_FILE


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """An open connection to the history at path, created and migrated as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)) as connection:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        use_wal(connection)
        migrate(connection, path)
        yield connection


def use_wal(connection: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging (readers and a writer at once), once for good.
    The switch needs the file alone for a moment, and SQLite does not wait for that with its
    busy timeout: writers racing to create a new history retry here instead."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def migrate(connection: sqlite3.Connection, path: Path) -> int:
    """Apply the migrations the database lacks, in one transaction; return the schema version."""
    target = len(MIGRATIONS)
    if schema_version(connection) == target:
        return target
    connection.execute("BEGIN IMMEDIATE")  # one migrating process at a time; the others wait
    try:
        version = schema_version(connection)
        if version > target:
            raise ChaoslabError(
                f"history {path} has schema version {version}, newer than this chaoslab knows ({target}); "
                "upgrade chaoslab, or point CHAOSLAB_RESULTS at another folder"
            )
        for script in MIGRATIONS[version:]:
            for statement in filter(str.strip, script.split(";")):
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {target}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return target


def schema_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def insert(path: Path, record: RunRecord) -> int:
    """Add one run (one transaction) and return its id."""
    row = {name: value for name, value in asdict(record).items() if name != "id"}
    for column in JSON_COLUMNS:
        row[column] = json.dumps(row[column]) if row[column] is not None else None
    columns = ", ".join(row)
    placeholders = ", ".join(f":{name}" for name in row)
    with connect(path) as connection:
        cursor = connection.execute(f"INSERT INTO runs ({columns}) VALUES ({placeholders})", row)
        return cursor.lastrowid


def load(path: Path, experiment: str | None = None, last: int | None = None) -> list[RunRecord]:
    """The runs in the history, oldest first; only those of one experiment, only the last few.
    A history that does not exist yet has no runs."""
    if not path.exists():
        return []
    columns = [item.name for item in fields(RunRecord)]
    with connect(path) as connection:
        rows = connection.execute(f"SELECT {', '.join(columns)} FROM runs ORDER BY started_at, id").fetchall()
    records = [_record(dict(zip(columns, row))) for row in rows]
    if experiment is not None:
        records = [record for record in records if record.matches(experiment)]
    return records[-last:] if last else records


def _record(values: dict) -> RunRecord:
    for column in JSON_COLUMNS:
        values[column] = json.loads(values[column]) if values[column] is not None else None
    if values["within_theory"] is not None:
        values["within_theory"] = bool(values["within_theory"])
    return RunRecord(**values)


def terminal_rows(runs: list[RunRecord]) -> list[tuple[str, ...]]:
    """The runs as rows of text for a terminal table, a header first."""
    rows = [("ID", "STARTED (UTC)", "EXPERIMENT", "PROFILE", "STATUS", "DOWNTIME", "BUDGET", "FAILED",
             "DETECT/TAKEOVER/ANSWER", "VIP BEFORE>AFTER", "HAPROXY/KEEPALIVED/APACHE2", "COMMIT")]
    for run in runs:
        if run.partial and run.impact_seconds is not None:
            downtime = f"partial {run.impact_seconds:.2f} s, {run.failed_share:.0%} failed"
        elif run.downtime is not None:
            downtime = f"{run.downtime:.2f} s"
        elif run.downtime_at_least is not None:
            downtime = f">{run.downtime_at_least:.2f} s"
        else:
            downtime = "-"
        verdict = {True: " met", False: " missed", None: ""}[run.met_budget]
        budget = f"{run.downtime_budget:g} s{verdict}" if run.downtime_budget is not None else "-"
        phases = "/".join(_seconds(run.phases.get(name)) for name in ("detection", "takeover", "answering"))
        rows.append((
            str(run.id),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started_at)),
            run.name,
            run.profile or "-",
            run.status + (f" ({run.aborted_by})" if run.aborted_by else ""),
            downtime,
            budget,
            str(run.failed_requests) if run.failed_requests is not None else "-",
            phases,
            f"{_holders(run.vip_before)}>{_holders(run.vip_after)}",
            f"{run.haproxy_version}/{run.keepalived_version}/{run.apache2_version}",
            run.git_commit[:10],
        ))
    return rows


def _seconds(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _holders(holders: list[str] | None) -> str:
    if holders is None:
        return "?"
    return ",".join(holders) or "nobody"


# ---------------------------------------------------------------------------- a run into a row


def record_from_summary(
    summary: dict,
    budget: float | None,
    experiment_file: str | None,
    versions: dict[str, str | None],
    commit: str,
    root: Path,
) -> RunRecord:
    """The history's row for a run, from the summary the control wrote (pure)."""
    run = summary.get("run") or {}
    theory = summary.get("theory") or {}
    impact = summary.get("impact") or {}
    folder = Path(run.get("folder") or "")
    if folder.is_relative_to(root):  # both come from results_dir(): absolute or relative alike
        folder = folder.relative_to(root)
    started = run.get("started")
    ended = run.get("ended")
    return RunRecord(
        experiment=run.get("experiment") or "experiment",
        experiment_file=experiment_file,
        scenario=run.get("scenario"),
        profile=run.get("profile"),
        provider=run.get("provider"),
        prefix=run.get("prefix"),
        started_at=started if started is not None else time.time(),
        duration=round(ended - started, 3) if started is not None and ended is not None else None,
        status=run.get("status") or UNKNOWN,
        aborted_by=run.get("aborted_by"),
        verdict=summary.get("verdict"),
        requests=summary.get("requests"),
        failed_requests=summary.get("failed"),
        downtime=summary.get("downtime"),
        downtime_at_least=summary.get("downtime_at_least"),
        downtime_budget=float(budget) if budget is not None else None,
        phases=summary.get("phases") or {},
        vip_before=summary.get("vip_holder_before"),
        vip_after=summary.get("vip_holder_after"),
        theory_low=theory.get("low"),
        theory_high=theory.get("high"),
        theory_expect=theory.get("expect"),
        haproxy_version=versions.get("haproxy") or UNKNOWN,
        keepalived_version=versions.get("keepalived") or UNKNOWN,
        apache2_version=versions.get("httpd") or UNKNOWN,
        git_commit=commit,
        folder=str(folder),
        impact_kind=impact.get("kind"),
        impact_seconds=impact.get("seconds"),
        failed_share=impact.get("failed_share"),
        within_theory=summary.get("within_theory"),
    )


def record_run(summary: dict, budget: float | None, experiment_file: str | None,
               versions: dict[str, str | None]) -> int | None:
    """Add the run the control just finished to the history; its id, or None if it could not.
    versions: each service's version (chaoslab.stack names), None where unknown.

    Never raises: a history that cannot be written is logged, and the run's own
    files (journal, samples, events, summary, chart) are complete without it."""
    try:
        root = results_dir()
        record = record_from_summary(summary, budget, experiment_file, versions, project_commit(), root)
        run_id = insert(history_path(root), record)
        logger.info(f"chaoslab: recorded as run {run_id} in the history {history_path(root)}")
        return run_id
    except Exception as error:
        logger.error(f"chaoslab: could not record the run in the history ({error!r}); its own results are complete")
        return None


# ---------------------------------------------------------------------------- facts about the run


@cache
def project_commit() -> str:
    """The project's git commit (HEAD), or "unknown" if it is not a git checkout."""
    try:
        result = subprocess.run(["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else UNKNOWN
