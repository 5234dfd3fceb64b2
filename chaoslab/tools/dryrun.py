"""A dry run: what each activity of an experiment would do, on which host, without doing it.

Meant for hosts that are not the lab's own (the ssh provider with a user's
inventory): read this, then confirm the faults. Nothing is connected to and
nothing runs; nodes named by role (vrrp-master) are resolved only when the
experiment runs, so the plan lists the hosts they can be.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import replace
from pathlib import Path

from chaoslab.checks import check_experiment, load_experiment
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.roles import SELECTORS
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology


def where(lab: Lab, module_name: str, node: str | None, topology: Topology) -> str:
    """The host(s) an activity's `node` argument means, as the operator will recognise them."""
    def describe(name: str) -> str:
        destination = lab.provider.destination(name)
        return f"{name} ({destination})" if destination else name

    if node is None:
        return "the client" if module_name.startswith("chaoslab.vip.") else "every node it concerns"
    if node in SELECTORS:
        selector = SELECTORS[node]
        candidates = ", ".join(describe(spec.name) for spec in topology.nodes
                               if selector.role in (None, spec.role))
        return f"{node}: {selector.meaning} when it runs, one of {candidates}"
    return describe(node)


def summary_line(module_name: str, function_name: str) -> str:
    function = getattr(importlib.import_module(module_name), function_name)
    return (inspect.getdoc(function) or "").split("\n\n")[0].replace("\n", " ")


def dry_run(path: Path, overrides: dict[str, str | None]) -> list[str]:
    """Two lines per chaoslab activity, the faults marked, in the order Chaos Toolkit runs them.

    The lab is the one the experiment's configuration names, with CHAOSLAB_* variables
    and then `overrides` (provider, prefix, inventory) taking precedence."""
    experiment = load_experiment(path)
    settings = LabSettings.resolve(experiment.get("configuration") or {})
    settings = replace(settings, **{key: value for key, value in overrides.items() if value})
    lab = Lab(settings)
    problems = check_experiment(experiment, lab.topology)
    if problems:
        raise ChaoslabError("; ".join(problems))
    lines = [f"{path}: provider {settings.provider}, lab {settings.prefix!r}, "
             f"profile {lab.requested_profile.name}, VIP {lab.topology.vip}"]
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    sections = {"steady state": hypothesis.get("probes") or [], "method": experiment.get("method") or [],
                "rollbacks": experiment.get("rollbacks") or []}
    for section, activities in sections.items():
        lines.append(f"{section}:")
        for activity in activities:
            provider = activity.get("provider") or {}
            module_name = provider.get("module", "")
            if provider.get("type") != "python" or not module_name.startswith("chaoslab."):
                lines.append(f"  {activity.get('name')}: not chaoslab's ({provider.get('type')}); not planned")
                continue
            arguments = provider.get("arguments") or {}
            kind = "ACTION" if module_name.endswith(".actions") else "probe"
            shown = ", ".join(f"{key}={value}" for key, value in arguments.items())
            lines.append(f"  [{kind}] {activity.get('name')}: {module_name.rsplit('.', 1)[0]}."
                         f"{provider.get('func')}({shown}) on {where(lab, module_name, arguments.get('node'), lab.topology)}")
            lines.append(f"      {summary_line(module_name, provider.get('func', ''))}")
    refusal = lab.provider.fault_refusal()
    lines.append(f"not confirmed: {refusal}" if refusal else "the faults need no confirmation here")
    return lines
