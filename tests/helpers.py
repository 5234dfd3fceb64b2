"""Helpers the tests share: the command line, fresh labs, and what a lab may leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoslab.configs.importer import import_pair
from chaoslab.configs.sources import read_pair
from chaoslab.lab.lab import Lab
from chaoslab.lab.libvirt_host import DATA_ROOT
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.paths import PROJECT_DIR, STATE_ROOT

SHARED_PREFIX = "ctshared"
TEST_PREFIXES = ("ctnone", "ctshared", "ctfresh", "ctkill", "ctkillup", "ctkilled", "ctexp", "ctother", "ctsched", "ctsafe",
                 "ctfast", "ctvm", "ctvmssh", "ctplan", "ctzone", "ctlock", "ctvmlog", "ctssh", "ctowned", "ctpair", "ctreh",
                 "ctdry")
LAB_PROCESSES = ("haproxy", "keepalived", "apache2", "haproxy-health", "libvirtd", "virtlogd", "qemu-system-x86")
VENV_BIN = Path(sys.executable).parent
REHEARSAL_CONFIGS = Path(__file__).parent / "data/rehearsal"  # a pair's own configs, DIR/<node>/keepalived|haproxy


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")


def chaoslab_command(*args: str, env: dict | None = None, prefix_argv: list[str] | None = None,
                     **kwargs) -> subprocess.CompletedProcess:
    """Run the installed chaoslab command line, as a user would (prefix_argv: e.g. setpriv)."""
    return subprocess.run(
        [*(prefix_argv or []), str(VENV_BIN / "chaoslab"), *args], capture_output=True, text=True, cwd=PROJECT_DIR,
        env={**os.environ, **(env or {})}, timeout=kwargs.pop("timeout", 120), **kwargs,
    )


def lab_leftovers() -> dict[str, list[str]]:
    """Namespaces, processes and state of any test lab that still exist."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    names = [line.split()[0] for line in namespaces if line.strip()]
    processes = subprocess.run(["ps", "-eo", "pid=,comm=,args="], capture_output=True, text=True).stdout.splitlines()
    test_state = (f"{STATE_ROOT}/ct", f"{DATA_ROOT}/ct")
    return {
        "namespaces": [name for name in names if name.startswith(TEST_PREFIXES)],
        "processes": [
            line.strip() for line in processes
            if line.split()[1] in LAB_PROCESSES and any(state in line for state in test_state)
        ],
        "state": [str(path) for root in (STATE_ROOT, DATA_ROOT) if root.exists() for path in root.glob("ct*")],
    }


def fresh_lab(prefix: str, profile: str | None = None) -> Iterator[Lab]:
    needs_root()
    lab = Lab(LabSettings(prefix=prefix, profile=profile))
    lab.down()
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def rehearsal_topology(configs: Path = REHEARSAL_CONFIGS) -> Topology:
    """The topology chaoslab import makes of a pair's configs."""
    return Topology(import_pair(read_pair(configs)).topology, configs / "topology.json")


def rehearsal_lab(prefix: str, configs: Path = REHEARSAL_CONFIGS) -> Lab:
    """A rehearsal lab (not up yet) of tests/data/rehearsal's pair as imported, running the configs
    in `configs` (the pair's, or a copy a test broke after the import)."""
    return Lab(LabSettings(prefix=prefix, configs=str(configs)), rehearsal_topology())
