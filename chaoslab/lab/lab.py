"""The lab: one topology, one profile, one provider, and what can be asked of the whole.

Probes, actions, the control and the CLI all go through a Lab; none of them
knows which provider runs it.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO

from chaoslab.errors import ChaoslabError
from chaoslab.lab import inventory as inventories
from chaoslab.lab.node import Node
from chaoslab.lab.providers import Provider, provider_class
from chaoslab.lab.roles import SELECTORS, STATE_SELECTORS
from chaoslab.lab.settings import PASSWORD_PATTERN, PREFIX_PATTERN, LabSettings
from chaoslab.lab.topology import Profile, Topology
from chaoslab.measure.client import Outcome, request_vip
from chaoslab.measure.events import latest_fault_node, record_fault
from chaoslab.measure.results import EVENTS
from chaoslab.paths import STATE_ROOT

BALANCE_WINDOW = 2.0  # seconds a judgement of the balance may look for answers
BALANCE_REQUESTS = 200  # and at most this many requests
BALANCE_JITTER = 0.02  # seconds, at most, between two of them (at random)
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
    attempt(node.clear_firewall)  # VRRP partitions and blocks, one-way partitions
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


def recorded_topology(state_dir: Path) -> tuple[Topology, str | None] | None:
    """The topology a lab that is up recorded in its lab.json (a rehearsal's, imported from the user's
    configs) and its configs directory, if it recorded one: later Labs of the prefix (an experiment's,
    `lab down`) act on it."""
    path = state_dir / "lab.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        data = info.get("topology")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    if not data:
        return None
    try:
        return Topology(data, path), info.get("configs")
    except (KeyError, TypeError, ValueError) as error:
        raise ChaoslabError(f"the topology recorded in {path} is malformed: {error!r}; "
                            "remove the lab with a topology that names its nodes, or remove its state") from None


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
        state_dir = STATE_ROOT / settings.prefix
        recorded = recorded_topology(state_dir) if topology is None and not settings.inventory else None
        if recorded:  # a rehearsal that is up: its topology and configs, not the lab's own
            topology, configs = recorded
            settings = replace(settings, configs=settings.configs or configs)
        self.settings = settings
        self.topology = topology or inventory_topology(settings.inventory) or Topology.load()
        self.prefix = settings.prefix
        self.state_dir = state_dir
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

    def wait_ready(self, timeout: float | None = None, any_holder: bool = False) -> float:
        """Wait for the steady state: one load balancer alone holds the VIP (the preferred master where
        the pair preempts, see Topology.preferred_master; any one under nopreempt or equal priorities),
        and the VIP answers from every backend. With any_holder, whichever single load balancer holds
        the VIP will do (no wait for a failback)."""
        timeout = timeout or self.ready_timeout()
        preferred = None if any_holder else self.topology.preferred_master
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            holders = self.vip_holders()
            holder_ok = holders == [preferred] if preferred else len(holders) == 1
            if holder_ok and self.balanced(count=len(self.topology.webservers) * 2):
                return time.monotonic() - started
            time.sleep(0.05)
        expected = f"{preferred} alone" if preferred else "one load balancer"
        raise ChaoslabError(
            f"lab {self.prefix!r} not in steady state after {timeout:.0f} s: VIP holders {self.vip_holders()} "
            f"(expected {expected}), states {self.vrrp_states()}; see 'chaoslab lab status'"
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
        """A node by name, or by its part (chaoslab.lab.roles): vrrp-master, vrrp-backup, vip-holder,
        faulted-node, other-loadbalancer, webserver, resolved now."""
        return self.provider.node(self.resolve(name))

    def resolve(self, name: str) -> str:
        """The name of the node a name or selector means now."""
        if name in self.topology.node_names:
            return name
        if name not in SELECTORS:
            raise ChaoslabError(f"unknown node {name!r}; known nodes: {', '.join(self.topology.node_names)}, "
                                f"or by part: {', '.join(SELECTORS)}")
        balancers = [spec.name for spec in self.topology.loadbalancers]
        if name in STATE_SELECTORS:
            wanted = STATE_SELECTORS[name]
            states = self.vrrp_states()
            found = [node for node, state in states.items() if state == wanted]
            if not found:
                raise ChaoslabError(f"no load balancer is in VRRP state {wanted} now; states: {states}")
            return found[0]
        if name == "vip-holder":
            holders = self.vip_holders()
            if len(holders) != 1:
                raise ChaoslabError(f"vip-holder means the one load balancer holding the VIP; "
                                    f"holders now: {', '.join(holders) or 'none'}")
            return holders[0]
        if name == "webserver":
            return self.topology.webservers[0].name
        run = self.measured_run()
        faulted = latest_fault_node(run / EVENTS) if run else None
        if faulted is None:
            raise ChaoslabError(f"{name} is known only after a fault of the run that measures the lab "
                                "(an experiment with chaoslab's control, once its first fault acted)")
        if name == "faulted-node":
            return faulted
        if faulted not in balancers:
            raise ChaoslabError(f"other-loadbalancer: the latest fault hit {faulted}, which is no load balancer")
        return next(balancer for balancer in balancers if balancer != faulted)

    def fault_node(self, action: str, node: str, service: str | None = None, interface: str | None = None,
                   **detail: object) -> Node:
        """The node a fault is about to act on (a name or a role), its service or interface checked,
        the fault recorded in the measured run's events before it acts."""
        target = self.node(node)
        if service is not None:
            target.check_service(service)
        if interface is not None:
            interface = target.check_interface(interface)
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

    def service_restarts(self, since: float) -> list[dict]:
        """Every restart a node's service manager made by itself since `since` (see Node.service_restarts);
        a node that cannot tell (unreachable, its clock unreadable) is skipped."""
        events = []
        for node in self.nodes():
            try:
                events += node.service_restarts(since)
            except ChaoslabError:
                continue
        return events

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
        """The balance works, whoever else uses the VIP: at least `count` successive answers as the
        target expects, which together come from every web server (where answers name their backend),
        within a window of BALANCE_WINDOW seconds; a failed answer starts the count again.

        Other clients take turns in the round robin too, so one client's answers need not alternate;
        and a client polling at the same pace as another could lock onto one backend: the requests
        are spaced at random for that."""
        target = self.topology.target()
        expected = {name for name, _ in target.backends}

        def look() -> bool:
            deadline = time.monotonic() + BALANCE_WINDOW
            answers: list[Outcome] = []
            for _ in range(BALANCE_REQUESTS):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                outcome = request_vip(target, timeout=min(1.0, max(left, 0.1)))
                answers = [*answers, outcome] if outcome.ok else []
                if len(answers) >= count and expected <= {answer.backend for answer in answers}:
                    return True
                time.sleep(random.uniform(0, BALANCE_JITTER))
            return False

        return self.provider.in_client(look)

    def heal(self) -> list[str]:
        """Undo every fault the lab can have: boot halted nodes, plug links, clear
        degradations, partitions (VRRP, one-way) and VRRP blocks, thaw and start services. Idempotent; the nodes
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
