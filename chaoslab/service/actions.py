"""Faults on the stack's services, each with the action that undoes it.

`node` is a node name or a role that is resolved when the action runs:
vrrp-master or vrrp-backup. Undo actions without a node act on every node
that should run the service, so a rollback needs no memory of the fault.
"""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.node import Node, parse_signal

__all__ = [
    "freeze_service",
    "kill_service",
    "reload_service",
    "restart_service",
    "start_service",
    "stop_service",
    "thaw_service",
]


def _targets(lab: Lab, service: str, node: str | None) -> list[Node]:
    if node is not None:
        target = lab.node(node)
        target.check_service(service)
        return [target]
    nodes = [candidate for candidate in lab.nodes() if service in candidate.services]
    if not nodes:
        known = sorted({name for candidate in lab.nodes() for name in candidate.services})
        raise ChaoslabError(f"unknown service {service!r}; known services: {', '.join(known)}")
    return nodes


def stop_service(service: str, node: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Stop `service` on `node` gracefully (SIGTERM, as its service manager does).
    Returns the node it stopped on. Undo with start_service."""
    lab = Lab.for_faults(configuration)
    target = lab.fault_node("stop_service", node, service=service)
    target.stop_service(service)
    return target.name


def start_service(service: str, node: str | None = None,
                  configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Start `service` on `node`, or on every node meant to run it where it does not
    run (the rollback of stop_service and kill_service). Returns the nodes started on."""
    started = []
    lab = Lab.for_faults(configuration)
    for target in _targets(lab, service, node):
        if target.is_halted() or target.service_running(service):
            continue
        target.start_service(service)
        lab.record_fault("heal", "start_service", target.name, service)
        started.append(target.name)
    return started


def restart_service(service: str, node: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Stop and start `service` on `node`; returns the node."""
    lab = Lab.for_faults(configuration)
    target = lab.fault_node("restart_service", node, service=service)
    target.restart_service(service)
    lab.record_fault("heal", "restart_service", target.name, service)
    return target.name


def reload_service(service: str, node: str, configuration: Configuration = None, secrets: Secrets = None) -> str:
    """Reload `service` on `node` the way its service manager does: `systemctl reload` on hosts and
    VMs; where chaoslab runs the daemons itself (the netns lab) HAProxy alone, with its own hand-over
    (haproxy -sf: a new process binds the listeners, the old one stops listening and finishes the
    requests in flight). Do clients notice? Returns once the service runs again; returns the node."""
    lab = Lab.for_faults(configuration)
    target = lab.fault_node("reload_service", node, service=service)
    target.reload_service(service)
    lab.record_fault("heal", "reload_service", target.name, service)
    return target.name


def kill_service(service: str, node: str, signal: str = "SIGKILL",
                 configuration: Configuration = None, secrets: Secrets = None) -> list[int]:
    """Send `signal` (default SIGKILL: a crash, nothing cleaned up) to every process
    of `service` on `node`. Returns the pids signalled. Undo with start_service."""
    lab = Lab.for_faults(configuration)
    target = lab.fault_node("kill_service", node, service=service, signal=parse_signal(signal).name)
    return target.kill_service(service, signal)


def freeze_service(service: str, node: str, configuration: Configuration = None, secrets: Secrets = None) -> list[int]:
    """Freeze every process of `service` on `node` with SIGSTOP: alive, holding its
    sockets, answering nobody. Undo with thaw_service."""
    lab = Lab.for_faults(configuration)
    target = lab.fault_node("freeze_service", node, service=service)
    return target.freeze_service(service)


def thaw_service(service: str, node: str | None = None,
                 configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Wake `service` with SIGCONT on `node`, or on every node where it is frozen."""
    thawed = []
    lab = Lab.for_faults(configuration)
    for target in _targets(lab, service, node):
        if target.is_service_frozen(service):
            target.thaw_service(service)
            lab.record_fault("heal", "thaw_service", target.name, service)
            thawed.append(target.name)
    return thawed
