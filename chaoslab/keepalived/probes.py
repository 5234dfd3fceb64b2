"""Probes of Keepalived's VRRP state on the load balancers."""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.lab.lab import Lab

__all__ = ["vrrp_masters", "vrrp_state", "vrrp_states"]


def vrrp_state(node: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """The VRRP state of load balancer `node`: MASTER, BACKUP, FAULT (its tracked
    check fails), or STOPPED when Keepalived does not run there."""
    return Lab.running(configuration).node(node).vrrp_state()


def vrrp_states(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, str]:
    """The VRRP state of every load balancer, by node name."""
    return Lab.running(configuration).vrrp_states()


def vrrp_masters(configuration: Configuration = None, secrets: Secrets = None) -> int:
    """How many load balancers are VRRP MASTER now (1 in steady state, 2 in split brain)."""
    return sum(state == "MASTER" for state in Lab.running(configuration).vrrp_states().values())
