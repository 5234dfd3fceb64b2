"""Probes of the virtual IP, from the client's vantage point."""

from __future__ import annotations

import time
from collections.abc import Callable

from chaoslib.types import Configuration, Secrets

from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab

__all__ = [
    "single_vip_holder",
    "vip_alternates",
    "vip_answers",
    "vip_held_by",
    "vip_held_by_both",
    "vip_holder",
    "wait_for_steady_state",
    "wait_until_vip_answers",
]


def vip_answers(count: int = 4, timeout: float = 1.0,
                configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True if `count` successive requests to the VIP from the client all get the answer the
    topology's target expects (each on a new connection, `timeout` seconds each)."""
    return all(outcome.ok for outcome in Lab.running(configuration).request(count=count, timeout=timeout))


def vip_alternates(count: int = 4, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True if `count` successive answers of the VIP are all as expected (the topology's target) and,
    where answers name the web server that wrote them, every web server wrote one: the balance
    works, with other clients on the VIP or not (looked at again within a 2 s window)."""
    return Lab.running(configuration).balanced(count=count)


def vip_holder(wait_for_change_from: str | None = None, timeout: float = 0.0,
               configuration: Configuration = None, secrets: Secrets = None) -> str:
    """The load balancer holding the VIP ("none" if nobody does, names joined by
    commas if several do). With `wait_for_change_from` (a name, or a part such as
    vrrp-master), wait up to `timeout` seconds until someone holds it and the holders
    are no longer just that node."""
    lab = Lab.running(configuration)
    former = lab.resolve(wait_for_change_from) if wait_for_change_from is not None else None
    holders = wait_for_holders(lab, lambda holders: former is None or (bool(holders) and holders != [former]), timeout)
    return ",".join(holders) or "none"


def vip_held_by(node: str, timeout: float = 0.0, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True once `node` alone holds the VIP, waiting up to `timeout` seconds. `node` is a name or a
    part: other-loadbalancer (the one the run's fault did not hit), faulted-node, vrrp-backup, ..."""
    lab = Lab.running(configuration)
    wanted = lab.resolve(node)
    return wait_for_holders(lab, lambda holders: holders == [wanted], timeout) == [wanted]


def vip_held_by_both(timeout: float = 0.0, configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True once both load balancers hold the VIP (split brain), waiting up to `timeout` seconds."""
    lab = Lab.running(configuration)
    both = len(lab.topology.loadbalancers)
    return len(wait_for_holders(lab, lambda holders: len(holders) == both, timeout)) == both


def wait_for_holders(lab: Lab, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """The VIP's holders once `done` says so, or when `timeout` seconds are over."""
    deadline = time.monotonic() + timeout
    while True:
        holders = lab.vip_holders()
        if done(holders) or time.monotonic() >= deadline:
            return holders
        time.sleep(0.05)


def single_vip_holder(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """True if exactly one load balancer holds the VIP (two means split brain)."""
    return len(Lab.running(configuration).vip_holders()) == 1


def wait_until_vip_answers(timeout: float = 30.0, configuration: Configuration = None,
                           secrets: Secrets = None) -> float:
    """Wait until the VIP answers HTTP 200 again; return the seconds waited.
    Fails if it does not answer within `timeout` seconds."""
    lab = Lab.running(configuration)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if lab.request(count=1, timeout=0.5)[0].ok:
            return round(time.monotonic() - started, 3)
        time.sleep(0.02)
    raise ChaoslabError(f"the VIP did not answer within {timeout:g} s")


def wait_for_steady_state(timeout: float = 30.0, configuration: Configuration = None,
                          secrets: Secrets = None) -> float:
    """Wait until exactly one load balancer holds the VIP (the preferred one where the pair preempts)
    and every web server answers; return the seconds waited. Fails after `timeout` seconds."""
    return round(Lab.running(configuration).wait_ready(timeout), 3)
