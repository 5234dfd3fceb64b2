"""The lab: one topology, one profile, one provider, and what can be asked of the whole.

Probes, actions, the control and the CLI all go through a Lab; none of them
knows which provider runs it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from chaoslab.errors import ChaoslabError
from chaoslab.lab import inventory as inventories
from chaoslab.lab.node import Node
from chaoslab.lab.providers import Provider, provider_class
from chaoslab.lab.settings import PASSWORD_PATTERN, PREFIX_PATTERN, LabSettings
from chaoslab.lab.topology import Profile, Topology
from chaoslab.measure.client import Outcome, request_vip
from chaoslab.measure.events import record_fault
from chaoslab.measure.results import SAMPLES
from chaoslab.measure.sampler import next_samples
from chaoslab.paths import STATE_ROOT

SELECTORS = {"vrrp-master": "MASTER", "vrrp-backup": "BACKUP"}
ALTERNATION_SETTLE = 2.0  # seconds a judgement of the balance may look for answers
MEASURED_RUN = "measured-run.json"  # in the lab's state directory while a run measures it (Lab.measured_into)


class HealIncomplete(ChaoslabError):
    """Lab.heal could not undo everything: what it did, and each thing it could not undo."""

    def __init__(self, done: list[str], failed: list[str]):
        super().__init__("heal could not undo everything: " + "; ".join(failed))
        self.done = done
        self.failed = failed


def heal_node(node: Node) -> tuple[list[str], list[str]]:
    """Undo every fault one node can have (see Lab.heal): (what was done, what could not be undone).
    A step that fails is reported and the others are still tried."""
    healed: list[str] = []
    failed: list[str] = []

    def attempt(step: Callable[[], str | None]) -> None:
        try:
            if done := step():
                healed.append(done)
        except ChaoslabError as error:
            failed.append(str(error))

    def boot() -> str | None:
        if node.is_halted():
            node.boot()
            return f"booted {node.name}"
        return None

    def thaw(service: str) -> str | None:
        if node.is_service_frozen(service):
            node.thaw_service(service)
            return f"thawed {service} on {node.name}"
        return None

    def start(service: str) -> str | None:
        if not node.service_running(service):
            node.start_service(service)
            return f"started {service} on {node.name}"
        return None

    attempt(boot)
    for interface in node.spec.interfaces:
        attempt(lambda name=interface.name: node.link_up(name))
        attempt(lambda name=interface.name: node.restore_link(name))
    attempt(node.unblock_vrrp)
    for service in node.services:
        attempt(lambda service=service: thaw(service))
        attempt(lambda service=service: start(service))
    return healed, failed


def same_file(handle: IO, path: Path) -> bool:
    """Whether path still names the open file."""
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def inventory_topology(path: str | None) -> Topology | None:
    """The topology an inventory names for its hosts (chaoslab_topology), if any."""
    return inventories.load(path).topology() if path else None


class Lab:
    def __init__(self, settings: LabSettings | None = None, topology: Topology | None = None):
        settings = settings or LabSettings()
        if not PASSWORD_PATTERN.match(settings.vrrp_password):
            raise ChaoslabError(
                "the VRRP password must be 1 to 8 printable characters without spaces or quotes "
                "(VRRPv2 simple authentication carries 8)"
            )
        if not PREFIX_PATTERN.match(settings.prefix):
            raise ChaoslabError(
                f"invalid lab prefix {settings.prefix!r}: use 1 to 12 lower-case letters and digits, "
                "starting with a letter (it names every namespace the lab makes)"
            )
        self.settings = settings
        self.topology = topology or inventory_topology(settings.inventory) or Topology.load()
        self.prefix = settings.prefix
        self.state_dir = STATE_ROOT / settings.prefix
        requested = self.topology.profile(settings.profile)
        self.provider: Provider = provider_class(settings.provider)(self.topology, requested, settings, self.state_dir)
        provider = self.provider.lab_info().get("provider")
        if provider and provider != settings.provider:
            raise ChaoslabError(
                f"lab {self.prefix!r} is a {provider} lab, not {settings.provider}; "
                f"use --provider {provider} (CHAOSLAB_PROVIDER={provider}) or another prefix"
            )
        if settings.sampler_interval:
            self.provider.sampler_interval = settings.sampler_interval
        running = self.running_profile()
        if running and running != requested.name:
            self.provider.profile = self.topology.profile(running)
        self.requested_profile = requested

    @classmethod
    def from_configuration(cls, configuration: Mapping | None = None, secrets: Mapping | None = None) -> Lab:
        return cls(LabSettings.resolve(configuration, secrets))

    @classmethod
    def running(cls, configuration: Mapping | None = None) -> Lab:
        """The lab an activity acts on: it must be up."""
        lab = cls.from_configuration(configuration)
        lab.require_up()
        return lab

    @classmethod
    def for_faults(cls, configuration: Mapping | None = None) -> Lab:
        """The lab an action acts on: it must be up, and its hosts the lab's own or confirmed."""
        lab = cls.running(configuration)
        refusal = lab.provider.fault_refusal()
        if refusal:
            raise ChaoslabError(refusal)
        return lab

    @property
    def profile(self) -> Profile:
        return self.provider.profile

    def running_profile(self) -> str | None:
        return self.provider.lab_info().get("profile")

    # -- life cycle -------------------------------------------------------

    def is_up(self) -> bool:
        return self.provider.is_up()

    def up(self, timeout: float | None = None) -> list[str]:
        running = self.running_profile()
        if self.is_up() and running and running != self.requested_profile.name:
            raise ChaoslabError(
                f"lab {self.prefix!r} is up with profile {running}, not {self.requested_profile.name}; "
                f"run 'chaoslab lab down' first, or use another prefix"
            )
        was_up = self.is_up()
        lines = self.provider.up()
        if not was_up:
            try:
                waited = self.wait_ready(timeout)
            except BaseException:
                self.provider.down()
                raise
            lines.append(f"VIP {self.topology.vip} answers, held by {', '.join(self.vip_holders())} "
                         f"({waited:.2f} s after the daemons started)")
        return lines

    def down(self) -> list[str]:
        return self.provider.down()

    def ready_timeout(self) -> float:
        """Master-down interval of the profile, plus margin for checks and start-up."""
        profile = self.profile
        track = profile.settings["track"]
        return 4 * profile.advert_int + track.get("interval", 1) * track.get("rise", 1) + 10

    @property
    def preferred_master(self) -> str:
        """The load balancer that holds the VIP in steady state: the highest priority (it preempts)."""
        return max(self.topology.loadbalancers, key=lambda spec: spec.vrrp_priority).name

    def wait_ready(self, timeout: float | None = None, any_holder: bool = False) -> float:
        """Wait for the steady state: the preferred master alone holds the VIP, and the
        VIP answers from every backend in turn. With any_holder, whichever single
        load balancer holds the VIP will do (no wait for a failback)."""
        timeout = timeout or self.ready_timeout()
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            holders = self.vip_holders()
            holder_ok = len(holders) == 1 if any_holder else holders == [self.preferred_master]
            if holder_ok and self.balanced(
                count=len(self.topology.webservers) * 2
            ):
                return time.monotonic() - started
            time.sleep(0.05)
        raise ChaoslabError(
            f"lab {self.prefix!r} not in steady state after {timeout:.0f} s: VIP holders {self.vip_holders()}, "
            f"states {self.vrrp_states()}; see 'chaoslab lab status'"
        )

    @contextmanager
    def lock(self, holder: str) -> Iterator[None]:
        """Hold the lab for one run; a second run is refused with the holder's name.

        The lock file goes with its holder, so a process may lock a file that was already
        unlinked (opened before the holder left): a lock counts only while the path still
        names the locked file, else it is taken again on the file the path names now."""
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        path = STATE_ROOT / f"{self.prefix}.lock"
        while True:
            handle = open(path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                current = handle.read().strip() or "another process"
                handle.close()
                raise ChaoslabError(
                    f"lab {self.prefix!r} is in use by {current}; wait for it to finish, "
                    "or use another prefix (CHAOSLAB_PREFIX) for a second lab"
                ) from None
            if same_file(handle, path):
                break
            handle.close()  # its holder removed it: lock the one the path names now
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} ({holder})")
            handle.flush()
            yield
        finally:
            path.unlink(missing_ok=True)  # while still locked: a waiter then sees a stale file
            handle.close()

    @contextmanager
    def measured_into(self, folder: Path) -> Iterator[None]:
        """Mark the lab as measured by this process into a run's folder, for as long as the block runs:
        activities then record their faults in its events, and judge the order of answers from its samples."""
        marker = self.state_dir / MEASURED_RUN
        marker.write_text(json.dumps({"pid": os.getpid(), "folder": str(folder)}), encoding="utf-8")
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def measured_run(self) -> Path | None:
        """The folder of the run measuring this lab now, or None (no run, or a run whose process is gone)."""
        try:
            marker = json.loads((self.state_dir / MEASURED_RUN).read_text(encoding="utf-8"))
            os.kill(marker["pid"], 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Path(marker["folder"])

    def require_up(self) -> None:
        if not self.is_up():
            raise ChaoslabError(f"lab {self.prefix!r} is not up; start it with: chaoslab lab up")

    # -- nodes ------------------------------------------------------------

    def node(self, name: str) -> Node:
        """A node by name, or by role: 'vrrp-master' / 'vrrp-backup' (the load balancer in that state now)."""
        if name in SELECTORS:
            wanted = SELECTORS[name]
            for spec in self.topology.loadbalancers:
                node = self.provider.node(spec.name)
                if node.vrrp_state() == wanted:
                    return node
            raise ChaoslabError(f"no load balancer is in VRRP state {wanted} now; states: {self.vrrp_states()}")
        if name not in self.topology.node_names:
            known = ", ".join([*self.topology.node_names, *SELECTORS])
            raise ChaoslabError(f"unknown node {name!r}; known nodes: {known}")
        return self.provider.node(name)

    def fault_node(self, action: str, node: str, service: str | None = None, interface: str | None = None,
                   **detail: object) -> Node:
        """The node a fault is about to act on (a name or a role), its service or interface checked,
        the fault recorded in the measured run's events before it acts."""
        target = self.node(node)
        if service is not None:
            target.check_service(service)
        if interface is not None:
            target.check_interface(interface)
        self.record_fault("inject", action, target.name, service or interface, **detail)
        return target

    def record_fault(self, phase: str, action: str, node: str | None, target: str | None = None,
                     **detail: object) -> None:
        """A fault injected or undone, in the events of the run measuring the lab (if one does)."""
        record_fault(self.measured_run(), phase, action, node, target, **detail)

    def nodes(self) -> list[Node]:
        return [self.provider.node(name) for name in self.topology.node_names]

    def loadbalancers(self) -> list[Node]:
        return [self.provider.node(spec.name) for spec in self.topology.loadbalancers]

    def vip_holders(self) -> list[str]:
        return [node.name for node in self.loadbalancers() if node.holds_vip()]

    def software_versions(self) -> dict[str, str | None]:
        """The version of each service of the stack, from the first node that runs it (None: unknown)."""
        versions: dict[str, str | None] = {}
        for node in self.nodes():
            for service in node.spec.services:
                if versions.get(service) is None:
                    versions[service] = node.version(service)
        return versions

    def vrrp_states(self) -> dict[str, str]:
        return {node.name: node.vrrp_state() for node in self.loadbalancers()}

    # -- the client's view ------------------------------------------------

    def request(self, count: int = 1, timeout: float = 1.0, interval: float = 0.0) -> list[Outcome]:
        """count requests to the VIP from the client, one after another."""
        if not 1 <= count <= 1000:
            raise ChaoslabError(f"count must be within 1..1000, not {count}")

        def requests_from_client() -> list[Outcome]:
            outcomes = []
            for index in range(count):
                if index and interval:
                    time.sleep(interval)
                outcomes.append(request_vip(self.topology.target(), timeout))
            return outcomes

        return self.provider.in_client(requests_from_client)

    def balanced(self, count: int = 4) -> bool:
        """`count` successive answers are all as the target expects, and every web server wrote one of
        them (where answers name their backend): the balance works, whoever else uses the VIP.

        While a run measures the lab, its sampler's answers are judged instead of requests of our
        own. Other clients take turns in the round robin too (and so do requests still in flight
        from before, such as a SYN retransmitted after a failover), so `count` answers are looked
        at again and again within a settle window until they cover every web server."""
        run = self.measured_run()
        deadline = time.monotonic() + ALTERNATION_SETTLE
        while (left := deadline - time.monotonic()) > 0:
            answers = next_samples(run / SAMPLES, count, timeout=left) if run else self.request(count, timeout=1.0)
            if self._covers_every_backend(answers, count):
                return True
        return False

    def _covers_every_backend(self, outcomes: list[Outcome], count: int) -> bool:
        expected = {name for name, _ in self.topology.target().backends}
        return (len(outcomes) == count and all(outcome.ok for outcome in outcomes)
                and expected <= {outcome.backend for outcome in outcomes})

    def heal(self) -> list[str]:
        """Undo every fault the lab can have: boot halted nodes, plug links, clear
        degradations and partitions, thaw and start services. Idempotent; the nodes
        in parallel (over ssh each step is a round trip). Returns what was done; raises
        HealIncomplete, after trying every step, when something could not be undone."""
        with ThreadPoolExecutor(max_workers=len(self.topology.nodes)) as pool:
            results = list(pool.map(heal_node, self.nodes()))
        done = [line for healed, _ in results for line in healed]
        failed = [line for _, problems in results for line in problems]
        self.provider.after_heal()
        if failed:
            raise HealIncomplete(done, failed)
        return done
