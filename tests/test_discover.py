"""`chaos discover chaoslab` lists every activity once, under the right type, with its docstring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import chaoslab

CHAOS = str(Path(sys.executable).parent / "chaos")


def test_discover_lists_every_activity_once_with_its_doc(tmp_path: Path):
    result = subprocess.run(
        [CHAOS, "discover", "chaoslab", "--no-system-info", "--no-install", "--discovery-path",
         str(tmp_path / "discovery.json")], capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    activities = json.loads((tmp_path / "discovery.json").read_text())["activities"]
    listed = [(activity["type"], activity["mod"].split(".")[-1], activity["name"]) for activity in activities]
    assert len(listed) == len(set(listed))
    for kind, module, name in listed:
        assert f"{kind}s" == module, f"{name} is listed as a {kind} but lives in {module}.py"
    expected = set()
    for package in chaoslab.ACTIVITY_PACKAGES:
        for kind in ("probes", "actions"):
            try:
                module = __import__(f"chaoslab.{package}.{kind}", fromlist=["__all__"])
            except ModuleNotFoundError:
                continue
            expected |= {(kind[:-1], kind, name) for name in module.__all__}
    assert set(listed) == expected
    for activity in activities:
        assert activity["doc"] and len(activity["doc"]) > 30, activity["name"]
        names = [argument["name"] for argument in activity["arguments"]]
        assert names[-2:] == ["configuration", "secrets"], activity["name"]
    names = {name for _, _, name in listed}
    assert {"vip_answers", "vip_alternates", "vip_holder", "single_vip_holder", "vrrp_state", "service_running",
            "stop_service", "start_service", "kill_service", "freeze_service", "thaw_service", "halt_node",
            "boot_node", "link_down", "link_up", "degrade_link", "restore_link", "partition_vrrp",
            "heal_partition"} <= names
