"""Probes of whole nodes."""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.lab.lab import Lab

__all__ = ["node_halted"]


def node_halted(node: str, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True if `node` is halted (no process, links down)."""
    return Lab.running(configuration).node(node).is_halted()
