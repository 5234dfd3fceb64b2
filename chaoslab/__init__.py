"""chaoslab: Chaos Toolkit extension that breaks an HAProxy + Keepalived + Apache stack
on purpose and measures how long clients of its virtual IP were hurt."""

from __future__ import annotations

from importlib.util import find_spec

from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result
from chaoslib.types import DiscoveredActivities, Discovery

__version__ = "0.1.0"

ACTIVITY_PACKAGES = ("vip", "service", "keepalived", "node", "network")  # each has probes.py and/or actions.py


def discover(discover_system: bool = True) -> Discovery:
    """What `chaos discover chaoslab` shows: every probe and action, once, under its type."""
    discovery = initialize_discovery_result("chaoslab", __version__, "chaoslab")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> list[DiscoveredActivities]:
    activities: list[DiscoveredActivities] = []
    for package in ACTIVITY_PACKAGES:
        for kind, discover_kind in (("probes", discover_probes), ("actions", discover_actions)):
            module = f"chaoslab.{package}.{kind}"
            if find_spec(module) is not None:
                activities.extend(discover_kind(module))
    return activities
