"""Bad input on the command line and in activities: one clear line, never a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.node import parse_signal
from chaoslab.lab.settings import LabSettings
from chaoslab.network import actions as network_actions
from chaoslab.service import actions as service_actions
from chaoslab.vip import probes as vip_probes
from tests.helpers import chaoslab_command


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unknown_node_lists_the_known():
    line = one_line_error(chaoslab_command("lab", "exec", "web-9", "--", "true", env={"CHAOSLAB_PREFIX": "ctnone"}))
    assert line == ("chaoslab: unknown node 'web-9'; known nodes: haproxy-1, haproxy-2, httpd-1, httpd-2, "
                    "or by part: vrrp-master, vrrp-backup, vip-holder, faulted-node, other-loadbalancer, webserver")


def test_unknown_profile_lists_the_profiles():
    line = one_line_error(chaoslab_command("lab", "up", "--profile", "turbo", "--prefix", "ctnone"))
    assert "unknown profile 'turbo'; known profiles:" in line and "seed" in line


def test_unknown_provider_lists_the_providers():
    line = one_line_error(chaoslab_command("lab", "up", "--provider", "docker", "--prefix", "ctnone"))
    assert "unknown provider 'docker'; known providers: netns" in line


def test_bad_prefix_says_what_is_allowed():
    line = one_line_error(chaoslab_command("lab", "up", "--prefix", "Bad-Prefix"))
    assert "invalid lab prefix 'Bad-Prefix'" in line and "lower-case letters and digits" in line


def test_not_root_says_the_netns_lab_needs_root():
    if os.geteuid() != 0:
        result = chaoslab_command("lab", "up", "--prefix", "ctnone")
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to drop root")
        result = chaoslab_command("lab", "up", "--prefix", "ctnone", env={"CHAOSLAB_STATE_ROOT": "/tmp/ctnone-state"},
                                  prefix_argv=[setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert "the netns lab needs root" in one_line_error(result)


def test_missing_daemon_names_the_package(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("the binary check comes after the root check")
    for binary in ("ip", "keepalived", "apache2", "pgrep", "iptables", "setsid", "python3", "bash"):
        found = shutil.which(binary)
        if found:
            (tmp_path / binary).symlink_to(found)
    line = one_line_error(chaoslab_command("lab", "up", "--prefix", "ctnone", env={"PATH": str(tmp_path)}))
    assert "missing haproxy" in line and "apt-get install haproxy" in line


def test_unknown_signal_lists_usable_ones():
    with pytest.raises(ChaoslabError, match="unknown signal 'SIGFOO'; use a name or number such as SIGTERM, SIGKILL"):
        parse_signal("SIGFOO")
    assert parse_signal("9").name == "SIGKILL" and parse_signal("stop").name == "SIGSTOP"


@pytest.mark.lab
def test_activities_validate_nodes_and_services(shared_lab: Lab):
    configuration = {"chaoslab_prefix": shared_lab.prefix}
    with pytest.raises(ChaoslabError, match="unknown node 'db-1'; known nodes: haproxy-1"):
        service_actions.stop_service(service="haproxy", node="db-1", configuration=configuration)
    with pytest.raises(ChaoslabError, match="node httpd-1 runs no service 'haproxy'; it runs: httpd"):
        service_actions.stop_service(service="haproxy", node="httpd-1", configuration=configuration)
    with pytest.raises(ChaoslabError, match="unknown service 'nginx'; known services: haproxy, httpd, keepalived"):
        service_actions.start_service(service="nginx", configuration=configuration)
    with pytest.raises(ChaoslabError, match="unknown signal"):
        service_actions.kill_service(service="haproxy", node="haproxy-2", signal="SIGNOPE", configuration=configuration)
    with pytest.raises(ChaoslabError, match="keepalived cannot be reloaded on haproxy-2: .*only haproxy can"):
        service_actions.reload_service(service="keepalived", node="haproxy-2", configuration=configuration)
    with pytest.raises(ChaoslabError, match="unknown direction 'sideways'; use one of: in, out, both"):
        network_actions.block_vrrp(node="haproxy-2", direction="sideways", configuration=configuration)
    with pytest.raises(ChaoslabError, match="node httpd-1 is a webserver: it runs no VRRP to block"):
        network_actions.block_vrrp(node="httpd-1", configuration=configuration)
    assert shared_lab.node("haproxy-2").service_running("haproxy")


def test_activities_on_a_lab_that_is_down_say_how_to_start_it():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(ChaoslabError, match="lab 'ctnone' is not up; start it with: chaoslab lab up"):
        vip_probes.vip_answers(configuration={"chaoslab_prefix": "ctnone"})


def test_environment_overrides_the_experiment_configuration(monkeypatch):
    monkeypatch.setenv("CHAOSLAB_PREFIX", "ctenv")
    settings = LabSettings.resolve({"chaoslab_prefix": "fromexperiment", "chaoslab_profile": "seed"})
    assert (settings.prefix, settings.profile, settings.provider) == ("ctenv", "seed", "netns")


@pytest.mark.parametrize("value", ["0", "fast", "2"])
def test_a_bad_sampler_interval_names_the_range(monkeypatch, value: str):
    monkeypatch.setenv("CHAOSLAB_SAMPLER_INTERVAL", value)
    with pytest.raises(ChaoslabError, match=rf"chaoslab_sampler_interval must be seconds within 0.001..1, not '{value}'"):
        LabSettings.resolve({})


def test_the_sampler_interval_is_the_providers_unless_set(monkeypatch):
    monkeypatch.delenv("CHAOSLAB_SAMPLER_INTERVAL", raising=False)
    assert Lab(LabSettings(prefix="ctnone")).provider.sampler_interval == 0.01
    assert Lab(LabSettings(provider="vagrant", prefix="ctnone")).provider.sampler_interval == 0.05
    monkeypatch.setenv("CHAOSLAB_SAMPLER_INTERVAL", "0.02")
    assert Lab(LabSettings.resolve({"chaoslab_prefix": "ctnone"})).provider.sampler_interval == 0.02
