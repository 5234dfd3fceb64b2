"""Probes of the stack's services on one node."""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from chaoslab.lab.lab import Lab

__all__ = ["running_services", "service_frozen", "service_running"]


def service_running(node: str, service: str, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True if `service` (httpd, haproxy or keepalived) has a process on `node`
    (a node name, or vrrp-master / vrrp-backup)."""
    return Lab.running(configuration).node(node).service_running(service)


def service_frozen(node: str, service: str, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True if `service` on `node` is stopped by SIGSTOP (alive, but serves nobody)."""
    return Lab.running(configuration).node(node).is_service_frozen(service)


def running_services(node: str, configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """The services that run on `node` now."""
    return Lab.running(configuration).node(node).running_services()
