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
from chaoslab.node import Node
from chaoslab.topology import Profile, Topology

T = TypeVar("T")

REGISTRY = {
    "netns": "chaoslab.providers.netns:NetnsProvider",
    "ssh": "chaoslab.providers.ssh:SshProvider",
    "vagrant": "chaoslab.providers.vagrant:VagrantProvider",
}


class Provider(ABC):
    """Brings a lab up and down and hands out its nodes and its client's vantage point."""

    name: str
    sampler_interval = 0.01  # seconds between the sampler's requests to the VIP
    owns_client = True  # the client is a namespace of the lab's (not this machine's own network)

    def __init__(self, topology: Topology, profile: Profile, prefix: str, state_dir: Path, vrrp_password: str,
                 inventory_path: str | None = None, confirm_hosts: bool = False):
        self.topology = topology
        self.profile = profile
        self.prefix = prefix
        self.state_dir = state_dir
        self.vrrp_password = vrrp_password
        self.inventory_path = inventory_path
        self.confirm_hosts = confirm_hosts

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
