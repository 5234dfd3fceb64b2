"""The keep-alive load: its checker on hand-made records, its bad input, its options, and a short real load
on the shared lab (the load during a fault runs in tests/test_experiments.py's haproxy-reload run)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaoslab.control import LoadOptions, load_options
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.measure.load_analysis import load_records, summarize_load


def record(client: int, connection: int, reused: bool, sent: float, latency: float = 0.002,
           error: str | None = None) -> dict:
    outcome = {"error": error} if error else {"status": 200, "backend": f"httpd-{client % 2 + 1}"}
    return {"client": client, "connection": connection, "reused": reused, "sent": sent, "latency": latency, **outcome}


def test_the_load_s_summary_tells_closed_idle_connections_from_requests_lost_in_flight():
    records = [
        *(record(1, 1, index > 0, 100.0 + index * 0.1) for index in range(10)),  # 100.0 .. 100.9
        record(1, 1, True, 101.0, error="closed"),  # the server closed the idle connection: never reached it
        record(1, 2, False, 101.1, latency=0.3),
        record(2, 1, False, 100.05),
        record(2, 1, True, 100.55, latency=1.0, error="timeout"),  # a live connection: the request was lost
        record(2, 2, False, 101.6, error="refused"),  # a new connection refused: no connection broke
        record(2, 3, False, 101.8),
    ]
    summary = summarize_load(records, fault_inject=100.5, fault_end=101.5)
    assert (summary["clients"], summary["requests"], summary["answered"], summary["failed"]) == (2, 16, 13, 3)
    assert summary["failed_by_kind"] == {"closed": 1, "refused": 1, "timeout": 1}
    assert (summary["connections"], summary["connections_reset"], summary["in_flight_lost"]) == (5, 2, 1)
    assert summary["latency"]["before"]["answers"] == 6 and summary["latency"]["during"]["max_ms"] == 300.0
    assert summary["latency"]["after"]["answers"] == 1
    assert list(summarize_load(records, None, None)["latency"]) == ["whole run"]


def test_load_options_come_from_the_experiment_and_the_configuration(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CHAOSLAB_LOAD_CLIENTS", raising=False)
    assert load_options({"load": {"clients": 20}}, {}) == LoadOptions(20, 0.1)
    assert load_options({"load": {"clients": 20}}, {"chaoslab_load_clients": ""}) == LoadOptions(20, 0.1)
    assert load_options({"load": {"clients": 20}}, {"chaoslab_load_clients": 0}) is None
    assert load_options({}, {"chaoslab_load_clients": "5"}) == LoadOptions(5, 0.1)
    assert load_options({}, {}) is None
    monkeypatch.setenv("CHAOSLAB_LOAD_CLIENTS", "7")
    assert load_options({"load": {"clients": 20, "pause": 0.5}}, {}) == LoadOptions(7, 0.5)
    for wrong in ("many", "501", "-1"):
        monkeypatch.setenv("CHAOSLAB_LOAD_CLIENTS", wrong)
        with pytest.raises(ChaoslabError, match=r"chaoslab_load_clients, CHAOSLAB_LOAD_CLIENTS .* within 0\.\.500"):
            load_options({}, {})


@pytest.mark.parametrize(("argument", "message"), [
    (["--clients", "0"], "--clients must be within 1..500"),
    (["--clients", "2", "--pause", "-1"], "pause must be within 0..60 s"),
    (["--clients", "2", "--max-count", "0"], "--max-count must be at least 1"),
])
def test_bad_load_arguments_say_what_would_be_right(argument: list[str], message: str, tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "chaoslab.measure.load", "--output", str(tmp_path / "x.jsonl"),
                             "--target", '{"url": "http://127.0.0.1:9/"}', *argument],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.lab
def test_keep_alive_clients_reuse_their_connections_and_stop_by_themselves(shared_lab: Lab, tmp_path: Path):
    output = tmp_path / "load.jsonl"
    started = time.monotonic()
    process = subprocess.Popen(shared_lab.provider.client_command([
        sys.executable, "-m", "chaoslab.measure.load", "--output", str(output), *shared_lab.topology.target().arguments(),
        "--clients", "5", "--pause", "0.05", "--max-duration", "2"]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, errors = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, errors
    assert time.monotonic() - started < 15  # 2 s of load, the interpreter's start and a last request
    records = load_records(output)
    assert {entry["client"] for entry in records} == {1, 2, 3, 4, 5}
    assert all(entry["connection"] == 1 and entry["status"] == 200 for entry in records)  # one connection each
    assert {entry["backend"] for entry in records} == {"httpd-1", "httpd-2"}
    assert sum(entry["reused"] for entry in records) == len(records) - 5
    summary = summarize_load(records, None, None)
    assert summary["failed"] == 0 and summary["connections"] == 5 and summary["answers_per_second"] > 20
    assert json.loads(output.read_text().splitlines()[0])["client"] in range(1, 6)
