"""Nodes and interfaces named by their part in the stack, so that one experiment runs unchanged on any
topology with two load balancers: the lab's, or a user's own pair with its own host and NIC names.

A selector is resolved when the activity runs (chaoslab.lab.lab.Lab.node): by the load balancers'
VRRP states or addresses at that moment, or by the fault the run injected last.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Selector:
    name: str
    role: str | None  # the role of every node it can pick; None: either
    meaning: str


SELECTORS: dict[str, Selector] = {selector.name: selector for selector in (
    Selector("vrrp-master", "loadbalancer", "the load balancer in VRRP state MASTER now"),
    Selector("vrrp-backup", "loadbalancer", "the load balancer in VRRP state BACKUP now"),
    Selector("vip-holder", "loadbalancer", "the load balancer that holds the VIP now"),
    Selector("faulted-node", None, "the node the run's latest fault hit"),
    Selector("other-loadbalancer", "loadbalancer", "the load balancer the run's latest fault did not hit"),
    Selector("webserver", "webserver", "the first web server of the topology"),
)}
STATE_SELECTORS = {"vrrp-master": "MASTER", "vrrp-backup": "BACKUP"}
# an interface named by its part: the node's interface on the VIP's network (eth1, ens5, ...)
VIP_NETWORK_INTERFACE = "vip-network"
