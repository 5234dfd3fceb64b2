"""Providers run the lab: netns (the embedded default), and more behind the same interface.

Chosen by name from a registry and imported lazily, the way testinfra picks
its backends: nothing above this package knows which one runs.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chaoslab.errors import ChaoslabError
from chaoslab.lab.node import Node
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Profile, Topology

T = TypeVar("T")

REGISTRY = {
    "netns": "chaoslab.lab.providers.netns:NetnsProvider",
    "ssh": "chaoslab.lab.providers.ssh:SshProvider",
    "vagrant": "chaoslab.lab.providers.vagrant:VagrantProvider",
}


class Provider(ABC):
    """Brings a lab up and down and hands out its nodes and its client's vantage point."""

    name: str
    sampler_interval = 0.01  # seconds between the sampler's requests to the VIP

    def __init__(self, topology: Topology, profile: Profile, settings: LabSettings, state_dir: Path):
        self.topology = topology
        self.profile = profile
        self.settings = settings
        self.prefix = settings.prefix
        self.state_dir = state_dir

    @abstractmethod
    def up(self) -> list[str]:
        """Build the stack and start its services; return what was done, line by line."""

    @abstractmethod
    def down(self) -> list[str]:
        """Remove everything the lab made; return what was removed, line by line."""

    @abstractmethod
    def is_up(self) -> bool:
        """True if the lab's machines exist."""

    @abstractmethod
    def node(self, name: str) -> Node:
        """The node of that name."""

    @abstractmethod
    def client_command(self, argv: Sequence[str]) -> list[str]:
        """argv wrapped so that it runs at the client's vantage point."""

    @abstractmethod
    def in_client(self, function: Callable[[], T]) -> T:
        """Call function with its network traffic leaving from the client."""

    def lab_info(self) -> dict:
        """What up() recorded (lab.json): provider, prefix, profile, and the provider's own facts."""
        try:
            return json.loads((self.state_dir / "lab.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def write_info(self, **facts: object) -> None:
        """Record the lab as up, atomically: a crash leaves the old file or the new one."""
        info = {"provider": self.name, "prefix": self.prefix, "profile": self.profile.name,
                "created": time.time(), **facts}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        target = self.state_dir / "lab.json"
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(info), encoding="utf-8")
        os.replace(temporary, target)

    def after_heal(self) -> None:  # noqa: B027 - most providers need nothing here
        """What the lab's client needs once the lab is healed (nothing, unless the client is the lab's own)."""

    def destination(self, node: str) -> str | None:
        """Where a node is, as its operator knows it (a namespace, user@host), if known."""
        return None

    def fault_refusal(self) -> str | None:
        """Why faults may not be injected here yet (hosts that are not the lab's own), or None."""
        return None


def provider_class(name: str) -> type[Provider]:
    if name not in REGISTRY:
        raise ChaoslabError(f"unknown provider {name!r}; known providers: {', '.join(sorted(REGISTRY))}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)
