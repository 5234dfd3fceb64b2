"""Faults on whole nodes: halt one as a crashed host dies, boot it back."""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.lab.lab import Lab

__all__ = ["boot_node", "halt_node"]


def halt_node(node: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Halt `node` (a name, or vrrp-master / vrrp-backup) at once: every process
    killed, links down, nothing sent on the way out. Returns the node halted.
    Undo with boot_node."""
    target = Lab.for_faults(configuration).fault_node("halt_node", node)
    target.halt()
    return target.name


def boot_node(node: str | None = None, configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Boot `node`, or every halted node: links up, services started in order
    (httpd; haproxy, then keepalived). Returns the nodes booted."""
    lab = Lab.for_faults(configuration)
    targets = [lab.node(node)] if node else lab.nodes()
    booted = []
    for target in targets:
        if target.is_halted():
            target.boot()
            lab.record_fault("heal", "boot_node", target.name)
            booted.append(target.name)
    return booted
