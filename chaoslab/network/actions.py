"""Faults on the network: pull a cable, degrade a link, cut VRRP between the load balancers."""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.lab.lab import Lab

__all__ = ["degrade_link", "heal_partition", "link_down", "link_up", "partition_vrrp", "restore_link"]


def link_down(node: str, interface: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Pull the cable of `node` on `interface` (a name such as eth1, or vip-network: the
    node's interface on the VIP's network), from the switch's side. Returns the node. Undo with link_up."""
    target = Lab.for_faults(configuration).fault_node("link_down", node, interface=interface)
    target.link_down(interface)
    return target.name


def link_up(node: str | None = None, interface: str | None = None,
            configuration: Configuration = None, secrets: Secrets = None) -> None:
    """Plug the cable back in: one interface, every interface of `node`, or every
    interface of every node when nothing is given."""
    lab = Lab.for_faults(configuration)
    for target in [lab.node(node)] if node else lab.nodes():
        for name in [target.check_interface(interface)] if interface else [i.name for i in target.spec.interfaces]:
            target.link_up(name)
    lab.record_fault("heal", "link_up", node, interface)


def degrade_link(node: str, interface: str, delay_ms: float = 0, loss_percent: float = 0,
                 configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Delay (ms) and/or drop (percent) the packets `node` sends on `interface` (a name, or
    vip-network), with tc netem; on a kernel without netem, loss only (iptables statistic).
    Returns the mechanism used. Undo with restore_link."""
    target = Lab.for_faults(configuration).fault_node("degrade_link", node, interface=interface,
                                                     delay_ms=delay_ms, loss_percent=loss_percent)
    return target.degrade_link(interface, delay_ms, loss_percent)


def restore_link(node: str | None = None, interface: str | None = None,
                 configuration: Configuration = None, secrets: Secrets = None) -> None:
    """Remove any degradation from one interface, from every interface of `node`,
    or from every node."""
    lab = Lab.for_faults(configuration)
    for target in [lab.node(node)] if node else lab.nodes():
        for name in [target.check_interface(interface)] if interface else [i.name for i in target.spec.interfaces]:
            target.restore_link(name)
    lab.record_fault("heal", "restore_link", node, interface)


def partition_vrrp(configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Cut VRRP (IP protocol 112) between the load balancers while clients' traffic
    flows: each stops hearing the other and may become MASTER (split brain).
    Returns the load balancers cut. Undo with heal_partition."""
    lab = Lab.for_faults(configuration)
    balancers = lab.loadbalancers()
    network = lab.topology.vip_network
    lab.record_fault("inject", "partition_vrrp", None, "vrrp")
    for target in balancers:
        target.block_vrrp([peer.spec.address(network) for peer in balancers if peer is not target])
    return [target.name for target in balancers]


def heal_partition(configuration: Configuration = None, secrets: Secrets = None) -> None:
    """Let VRRP flow between the load balancers again."""
    lab = Lab.for_faults(configuration)
    for target in lab.loadbalancers():
        target.unblock_vrrp()
    lab.record_fault("heal", "partition_vrrp", None, "vrrp")
