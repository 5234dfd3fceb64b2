"""How a user starts with their own pair, end to end and in that order: chaoslab import, chaoslab lint,
chaoslab lab up --configs, chaos run experiments/failover.json, on a pair chaoslab never saw
(tests/data/pairs/weighted: multicast adverts, a killall -0 track script with weight -20, a listen
section on port 8080, a persistence cookie), judged by the theory of that pair's own timers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import chaoslab_command, needs_root
from tests.test_experiments import chaos_run, run_folder

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PAIR = Path(__file__).parent / "data" / "pairs" / "weighted"
PREFIX = "ctpair"
ADDRESSES = ["--address", "alpha=172.20.5.11", "--address", "bravo=172.20.5.12"]


def test_import_lint_rehearse_and_fail_over_a_pair_chaoslab_never_saw(tmp_path: Path):
    needs_root()
    pair = shutil.copytree(PAIR, tmp_path / "pair")
    imported = chaoslab_command("import", str(pair), *ADDRESSES)
    assert imported.returncode == 0, imported.stderr
    assert (pair / "topology.json").is_file()
    assert "haproxy-stop      4.61-7.61 s" in imported.stdout, imported.stdout  # 2 s x fall 2, weight -20, skew 0.61
    linted = chaoslab_command("lint", str(pair))
    assert linted.returncode == 0, linted.stdout  # warnings only
    assert "[garp-refresh-none]" in linted.stdout and "[auth-pass-truncated]" in linted.stdout
    environment = {"CHAOSLAB_PREFIX": PREFIX, "CHAOSLAB_RESULTS": str(tmp_path / "results")}
    (tmp_path / "results").mkdir()
    try:
        up = chaoslab_command("lab", "up", "--configs", str(pair), *ADDRESSES, env=environment)
        assert up.returncode == 0, up.stderr
        run = chaos_run("failover", PREFIX, tmp_path / "results")
        journal = json.loads((tmp_path / "results" / "failover-journal.json").read_text())
        assert (journal["status"], journal["deviated"]) == ("completed", False), run.stderr[-3000:]
        folder = run_folder(tmp_path / "results")
        summary = json.loads((folder / "summary.json").read_text())
        events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        states = [(event["node"], event["state"]) for event in events if event["kind"] == "vrrp"]
        assert summary["vip_holder_before"] == ["alpha"] and ("bravo", "MASTER") in states
        # the pair preempts: once HAProxy is back (the rollback), alpha's priority is 110 again and it takes the VIP back
        assert summary["vip_holder_after"] == ["alpha"] and dict(states) == {"alpha": "MASTER", "bravo": "BACKUP"}
        assert summary["run"]["profile"] == "imported"
        assert "track script every 2 s, fall 2, weight -20" in summary["theory"]["formula"]
        assert summary["within_theory"] is True, (summary["downtime"], summary["theory"])
    finally:
        down = chaoslab_command("lab", "down", env=environment)
        assert down.returncode == 0, down.stderr
