"""What CI and dashboards read of a run: JUnit XML checked against a JUnit schema, Prometheus
metrics parsed by prometheus_client's own parser, the Grafana dashboard against those metrics.
Hand-made summaries; the real run's files are checked in tests/test_experiments.py."""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import xmlschema
from prometheus_client.parser import text_string_to_metric_families

from chaoslab.measure import junit, metrics
from chaoslab.paths import PROJECT_DIR

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "data" / "junit" / "junit-10.xsd")
DASHBOARD = PROJECT_DIR / "docs" / "grafana-dashboard.json"


def summary(status: str = "completed", downtime: float | None = 3.52, budget: float | None = 5.0,
            steady: bool | None = True, **extra: object) -> dict:
    return {
        "requests": 1500, "failed": 340, "downtime": downtime, "downtime_at_least": downtime if downtime else 9.9,
        "verdict": "valid", "verdict_reason": "the VIP answered at the end of the run after the fault",
        "phases": {"detection": 2.61, "takeover": 3.22, "answering": 3.5},
        "theory": {"scenario": "haproxy-stop", "low": 2.609, "high": 4.609, "formula": "track script every 2 s"},
        "within_theory": True,
        "impact": {"kind": "whole", "seconds": 3.5, "failed_share": 0.99},
        "fault_window": {"answered_share": 0.62},
        "run": {"experiment": "failover: HAProxy stops on the VRRP master", "experiment_file": "experiments/failover.json",
                "scenario": "haproxy-stop", "profile": "seed", "provider": "netns", "status": status,
                "steady_state_before": steady, "started": 1000.0, "ended": 1014.25, "downtime_budget": budget,
                "target": "http://192.168.1.10:80/", "folder": "results/20261202T120000Z-failover"},
        **extra,
    }


def parsed(document: bytes) -> ET.Element:
    SCHEMA.validate(document.decode())
    return ET.fromstring(document)


# ---------------------------------------------------------------------------- JUnit


def test_a_passing_run_is_a_passing_test_case_with_its_numbers():
    root = parsed(junit.junit_document([junit.run_case(summary())]))
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")
    [suite] = root.findall("testsuite")
    [case] = suite.findall("testcase")
    assert case.get("name") == "failover [seed]" and case.get("classname") == "chaoslab.failover"
    assert case.get("time") == "14.250" and case.find("failure") is None
    properties = {item.get("name"): item.get("value") for item in suite.iter("property")}
    assert properties["downtime_seconds"] == "3.52" and properties["failed_requests"] == "340"
    assert properties["verdict"] == "valid" and properties["within_budget"] == "true"
    assert properties["phase_takeover_seconds"] == "3.22"
    assert "downtime 3.520 s, 340 of 1500 requests failed" in case.find("system-out").text


@pytest.mark.parametrize(("run", "kind", "why"), [
    (summary(status="deviated"), "failure", "the experiment deviated"),
    (summary(status="failed", steady=False), "failure", "the steady state did not hold"),
    (summary(downtime=6.2), "failure", "downtime 6.200 s exceeded the downtime budget of 5 s"),
    (summary(downtime=None), "failure", "no recovery for at least 9.900 s exceeded the downtime budget"),
    (summary(status="interrupted"), "error", "the run was interrupted"),
    (summary(status="aborted"), "error", "the run was aborted"),
])
def test_a_run_that_deviated_failed_its_steady_state_or_its_budget_is_a_failed_case(run, kind, why):
    root = parsed(junit.junit_document([junit.run_case(run)]))
    element = root.find(f"testsuite/testcase/{kind}")
    assert element is not None and why in element.get("message")
    assert root.get("failures" if kind == "failure" else "errors") == "1"


def test_a_schedule_is_one_document_of_every_run(tmp_path: Path):
    path = junit.write_junit(tmp_path / "ci" / "junit.xml", [summary(), summary(status="deviated"), summary()])
    root = parsed(path.read_bytes())
    assert (root.get("tests"), root.get("failures")) == ("3", "1")
    assert len(root.findall("testsuite")) == 3 and oct(path.stat().st_mode & 0o777) == "0o644"


# ---------------------------------------------------------------------------- Prometheus


def families(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_the_metrics_parse_and_carry_the_labels():
    text = metrics.generate_latest(metrics.registry_of(summary())).decode()
    found = families(text)
    labels = {"experiment": "failover", "profile": "seed", "target": "http://192.168.1.10:80/"}
    [downtime] = found["chaoslab_failover_downtime_seconds"]
    assert downtime.labels == labels and downtime.value == 3.52
    assert {sample.labels["phase"]: sample.value for sample in found["chaoslab_failover_phase_seconds"]} == \
        {"detection": 2.61, "takeover": 3.22, "answering": 3.5}
    statuses = {sample.labels["status"]: sample.value for sample in found["chaoslab_last_run_status"]}
    assert statuses["completed"] == 1.0 and statuses["deviated"] == 0.0
    assert found["chaoslab_last_run_success"][0].value == 1.0
    assert found["chaoslab_availability_ratio"][0].value == 0.62
    assert found["chaoslab_last_run_timestamp_seconds"][0].value == 1014.25


def test_a_run_that_never_recovered_has_no_downtime_but_its_lower_bound():
    found = families(metrics.generate_latest(metrics.registry_of(summary(downtime=None))).decode())
    assert "chaoslab_failover_downtime_seconds" not in found or not found["chaoslab_failover_downtime_seconds"]
    assert found["chaoslab_failover_downtime_at_least_seconds"][0].value == 9.9
    assert found["chaoslab_last_run_success"][0].value == 0.0


class Pushgateway(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_export_writes_the_run_folder_the_textfile_collector_and_pushes(tmp_path: Path):
    """A Pushgateway on loopback, as a test may send to it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pushgateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        gateway = f"http://127.0.0.1:{server.server_port}"
        written = metrics.export(summary(), tmp_path / "run", str(tmp_path / "textfile"), gateway)
    finally:
        server.shutdown()
        server.server_close()
    assert written[-1] == gateway
    folder_text = (tmp_path / "run" / metrics.METRICS).read_text()
    [collected] = (tmp_path / "textfile").glob("*.prom")
    assert collected.name == "chaoslab-failover-seed-http-192-168-1-10-80.prom"
    assert collected.read_text() == folder_text and "chaoslab_failover_downtime_seconds" in families(folder_text)
    [(path, body)] = Pushgateway.received
    assert path.startswith("/metrics/job/chaoslab/") and "experiment/failover" in path and "profile/seed" in path
    assert "chaoslab_failed_requests" in families(body.decode())


# ---------------------------------------------------------------------------- Grafana


def test_the_dashboard_charts_only_metrics_a_run_writes():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expression in expressions for name in re.findall(r"\bchaoslab_[a-z_]+", expression)}
    assert named and named <= set(metrics.DEFINITIONS)
    assert "chaoslab_failover_downtime_seconds" in named
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "experiment", "profile", "target"} <= variables
    assert all(set(re.findall(r"\$(\w+)", expression)) <= variables | {"__interval"} for expression in expressions)
