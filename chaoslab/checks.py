"""Pre-flight checks of an experiment against chaoslab and the topology, before any lab is touched.

Chaos Toolkit validates an experiment's shape; this checks what it cannot know:
that each chaoslab activity exists and gets arguments it takes, that nodes,
services, interfaces, signals and profiles name things of this topology. Each
problem is one line that says what is wrong and what would be right.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path

from chaoslab.errors import ChaoslabError
from chaoslab.lab.node import VRRP_DIRECTIONS, parse_signal
from chaoslab.lab.providers import REGISTRY
from chaoslab.lab.roles import SELECTORS, VIP_NETWORK_INTERFACE
from chaoslab.lab.settings import PREFIX_PATTERN
from chaoslab.lab.topology import Topology
from chaoslab.stack import SERVICES


def load_experiment(path: Path) -> dict:
    """The experiment as a dict, or one line saying where its JSON is broken."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ChaoslabError(f"cannot read the experiment: {error.strerror}") from None
    try:
        experiment = json.loads(text)
    except json.JSONDecodeError as error:
        raise ChaoslabError(
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(experiment, dict):
        raise ChaoslabError(f"an experiment is a JSON object, not a {type(experiment).__name__}")
    return experiment


def file_problems(path: Path, topology: Topology) -> list[str]:
    """Every problem of an experiment file, unreadable or broken JSON included."""
    try:
        return check_experiment(load_experiment(path), topology)
    except ChaoslabError as error:
        return [str(error)]


def activities(experiment: dict) -> Iterator[dict]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    for section in (hypothesis.get("probes") or [], experiment.get("method") or [], experiment.get("rollbacks") or []):
        yield from (activity for activity in section if isinstance(activity, dict))


def check_experiment(experiment: dict, topology: Topology) -> list[str]:
    """Every problem found, one line each (empty when the experiment is fine)."""
    problems = check_configuration(experiment.get("configuration") or {}, topology)
    for activity in activities(experiment):
        provider = activity.get("provider") or {}
        module_name = provider.get("module", "")
        if provider.get("type") == "python" and module_name.startswith("chaoslab."):
            problems += check_activity(activity.get("name", "?"), module_name, provider.get("func", ""),
                                       provider.get("arguments") or {}, topology)
    return problems


def check_configuration(configuration: dict, topology: Topology) -> list[str]:
    problems = []
    profile = configuration.get("chaoslab_profile")
    if isinstance(profile, str) and profile and profile not in topology.profile_names:  # "": the topology's default
        problems.append(f"configuration: unknown profile {profile!r}; known profiles: {', '.join(topology.profile_names)}")
    provider = configuration.get("chaoslab_provider")
    if isinstance(provider, str) and provider not in REGISTRY:
        problems.append(f"configuration: unknown provider {provider!r}; known providers: {', '.join(sorted(REGISTRY))}")
    prefix = configuration.get("chaoslab_prefix")
    if isinstance(prefix, str) and not PREFIX_PATTERN.match(prefix):
        problems.append(f"configuration: invalid prefix {prefix!r}; use 1 to 12 lower-case letters and digits")
    return problems


def check_activity(name: str, module_name: str, function_name: str, arguments: dict, topology: Topology) -> list[str]:
    where = f"activity {name!r} ({module_name}.{function_name})"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return [f"{where}: no module {module_name}; chaos discover chaoslab lists the modules"]
    exported = getattr(module, "__all__", [])
    if function_name not in exported:
        return [f"{where}: {module_name} has no activity {function_name!r}; it has: {', '.join(exported)}"]
    parameters = inspect.signature(getattr(module, function_name)).parameters
    takes = [p for p in parameters if p not in ("configuration", "secrets")]
    problems = [
        f"{where}: unknown argument {argument!r}; it takes: {', '.join(takes)}"
        for argument in arguments if argument not in parameters
    ]
    missing = [p for p in takes if parameters[p].default is inspect.Parameter.empty and p not in arguments]
    problems += [f"{where}: missing argument {argument!r}" for argument in missing]
    return problems + check_values(where, arguments, topology)


def check_values(where: str, arguments: dict, topology: Topology) -> list[str]:
    problems = []
    node = arguments.get("node")
    for key in ("node", "from_node", "to_node"):
        named = arguments.get(key)
        if isinstance(named, str) and named not in (*topology.node_names, *SELECTORS):
            problems.append(f"{where}: unknown {key.replace('_', ' ')} {named!r}; known nodes: "
                            f"{', '.join(topology.node_names)}, or by part: {', '.join(SELECTORS)}")
    direction = arguments.get("direction")
    if direction is not None and direction not in VRRP_DIRECTIONS:
        problems.append(f"{where}: unknown direction {direction!r}; use one of: {', '.join(VRRP_DIRECTIONS)}")
    service = arguments.get("service")
    if isinstance(service, str) and service not in SERVICES:
        problems.append(f"{where}: unknown service {service!r}; known services: {', '.join(sorted(SERVICES))}")
    role = topology.node(node).role if node in topology.node_names else getattr(SELECTORS.get(node), "role", None)
    if isinstance(service, str) and service in SERVICES and role and SERVICES[service].role != role:
        problems.append(f"{where}: {node} is a {role}, which runs no {service}")
    interface = arguments.get("interface")
    if isinstance(interface, str) and isinstance(node, str) and node in topology.node_names \
            and interface != VIP_NETWORK_INTERFACE:
        known = [each.name for each in topology.node(node).interfaces]
        if interface not in known:
            problems.append(f"{where}: node {node} has no interface {interface!r}; its interfaces: "
                            f"{', '.join(known)} (or {VIP_NETWORK_INTERFACE}: its interface on the VIP's network)")
    if "signal" in arguments:
        try:
            parse_signal(arguments["signal"])
        except ChaoslabError as error:
            problems.append(f"{where}: {error}")
    return problems
