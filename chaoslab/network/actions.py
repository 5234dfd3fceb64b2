"""Faults on the network: pull a cable, degrade a link, cut VRRP between the load balancers, block
VRRP on one of them, cut one way between two nodes.

Each undo records one heal per (node, target) it undid, the same pair its fault recorded, so the
analysis pairs every fault with its heal; an undo that found nothing to undo records nothing.
"""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.node import VRRP_BLOCK_CHAIN, Node, vrrp_hooks

__all__ = [
    "block_vrrp",
    "degrade_link",
    "heal_one_way",
    "heal_partition",
    "link_down",
    "link_up",
    "partition_one_way",
    "partition_vrrp",
    "restore_link",
    "unblock_vrrp",
]

VRRP = "vrrp"  # the target a VRRP fault records


def _interfaces(lab: Lab, node: str | None, interface: str | None) -> list[tuple[Node, str]]:
    """(node, interface name) for one interface, every interface of `node`, or of every node."""
    return [(target, name) for target in ([lab.node(node)] if node else lab.nodes())
            for name in ([target.check_interface(interface)] if interface else [i.name for i in target.spec.interfaces])]


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
    for target, name in _interfaces(lab, node, interface):
        target.link_up(name)
        lab.record_fault("heal", "link_up", target.name, name)


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
    for target, name in _interfaces(lab, node, interface):
        target.restore_link(name)
        lab.record_fault("heal", "restore_link", target.name, name)


def partition_vrrp(configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Cut VRRP (IP protocol 112) between the load balancers while clients' traffic
    flows: each stops hearing the other and may become MASTER (split brain).
    Returns the load balancers cut. Undo with heal_partition."""
    lab = Lab.for_faults(configuration)
    balancers = lab.loadbalancers()
    network = lab.topology.vip_network
    lab.record_fault("inject", "partition_vrrp", None, VRRP)
    for target in balancers:
        target.block_vrrp([peer.spec.address(network) for peer in balancers if peer is not target])
    return [target.name for target in balancers]


def heal_partition(configuration: Configuration = None, secrets: Secrets = None) -> None:
    """Let VRRP flow between the load balancers again (undoes partition_vrrp, not block_vrrp)."""
    lab = Lab.for_faults(configuration)
    undone = [target.unblock_vrrp() for target in lab.loadbalancers()]
    if any(undone):
        lab.record_fault("heal", "partition_vrrp", None, VRRP)


def block_vrrp(node: str, direction: str = "in", configuration: Configuration = None, secrets: Secrets = None) -> str:
    """A firewall on one load balancer drops VRRP (IP protocol 112): iptables on `node` (a name, or
    vrrp-master, vrrp-backup, ...) drops the adverts it receives from the other load balancers
    (direction "in"), the adverts it sends them ("out"), or both ("both"); the other node and all
    other traffic are untouched. Blocked "in" on the backup, it stops hearing the master and becomes
    MASTER after its master down interval while the master holds on: split brain. Returns the node.
    Undo with unblock_vrrp."""
    vrrp_hooks(direction)  # a direction not known fails before anything is recorded
    lab = Lab.for_faults(configuration)
    target = lab.node(node)
    if target.spec.role != "loadbalancer":
        raise ChaoslabError(f"node {target.name} is a {target.spec.role}: it runs no VRRP to block")
    network = lab.topology.vip_network
    peers = [peer.spec.address(network) for peer in lab.loadbalancers() if peer.name != target.name]
    lab.record_fault("inject", "block_vrrp", target.name, VRRP, direction=direction)
    target.block_vrrp(peers, direction, VRRP_BLOCK_CHAIN)
    return target.name


def unblock_vrrp(node: str | None = None, configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Undo block_vrrp on `node`, or on every load balancer when none is given. Returns the nodes
    where VRRP was blocked (a heal is recorded for each)."""
    lab = Lab.for_faults(configuration)
    unblocked = []
    for target in [lab.node(node)] if node else lab.loadbalancers():
        if target.unblock_vrrp(VRRP_BLOCK_CHAIN):
            lab.record_fault("heal", "block_vrrp", target.name, VRRP)
            unblocked.append(target.name)
    return unblocked


def partition_one_way(from_node: str, to_node: str, configuration: Configuration = None,
                      secrets: Secrets = None) -> list[str]:
    """Cut one way: every packet `from_node` sends to `to_node` (names, or parts such as vrrp-master
    and vrrp-backup) is lost, while `to_node`'s packets still reach `from_node`. From the master to
    the backup: the backup hears no adverts and becomes MASTER, the master still hears the backup's
    (lower) adverts and stays MASTER: split brain. Returns [from_node, to_node].

    The packets are dropped where they arrive: iptables on to_node's INPUT, for every address of
    from_node. Dropped on from_node's OUTPUT instead, each send would fail on from_node itself
    (EPERM: Keepalived and TCP would see an error no network gives); dropped on arrival, the
    sender learns nothing, as behind a broken link or a firewall on the way. Undo with heal_one_way."""
    lab = Lab.for_faults(configuration)
    sender, receiver = lab.node(from_node), lab.node(to_node)
    if sender.name == receiver.name:
        raise ChaoslabError(f"from_node and to_node are both {sender.name}: a one-way partition is between two nodes")
    lab.record_fault("inject", "partition_one_way", sender.name, receiver.name)
    receiver.block_from([interface.address for interface in sender.spec.interfaces])
    return [sender.name, receiver.name]


def heal_one_way(from_node: str | None = None, to_node: str | None = None,
                 configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Undo partition_one_way: what `from_node` sends reaches `to_node` again; without from_node, every
    node's packets reach to_node; without to_node, every node is healed; without either, every
    one-way partition is. Returns the ways healed ("haproxy-1 -> haproxy-2"), a heal recorded for each."""
    lab = Lab.for_faults(configuration)
    sender = lab.node(from_node) if from_node else None
    owners = {interface.address: spec.name for spec in lab.topology.nodes for interface in spec.interfaces}
    healed = []
    for receiver in [lab.node(to_node)] if to_node else lab.nodes():
        if sender is not None and sender.name == receiver.name:
            continue
        addresses = receiver.unblock_from([i.address for i in sender.spec.interfaces] if sender else None)
        for name in dict.fromkeys(owners[address] for address in addresses if address in owners):
            lab.record_fault("heal", "partition_one_way", name, receiver.name)
            healed.append(f"{name} -> {receiver.name}")
    return healed
