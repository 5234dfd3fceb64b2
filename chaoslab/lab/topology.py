"""The lab's one source of names, addresses and settings: provision/topology.json.

The same file feeds the Vagrantfile and the shell provisioners; profile merging
lives in provision/render.py, which this module imports so that there is one
implementation of it.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from chaoslab.errors import ChaoslabError
from chaoslab.measure.client import IDENTITIES, Target
from chaoslab.paths import PROVISION_DIR, TOPOLOGY_FILE
from chaoslab.stack import HEALTH_CHECKER, ROLES, stack_services

TRACK_MECHANISMS = {
    "script": ("interval", "fall", "rise"),
    "file": ("check_interval_ms", "timeout_ms", "fall", "rise", "health_port"),
    # imported from a user's keepalived.conf: nothing tracks HAProxy, or a file another process writes
    "none": (),
    "external": (),
}
IFNAMSIZ = 15


@cache
def renderer() -> ModuleType:
    """provision/render.py, the renderer the provisioners run."""
    spec = importlib.util.spec_from_file_location("chaoslab_render", PROVISION_DIR / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Interface:
    name: str
    network: str
    address: str


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str
    interfaces: tuple[Interface, ...]
    vrrp_priority: int | None = None
    port: int = 80  # a web server's: where HAProxy's backend reaches it (the lab's own template uses 80)

    @property
    def services(self) -> tuple[str, ...]:
        """The stack's services of the node's role; a profile may add helpers (Profile.services)."""
        return stack_services(self.role)

    def address(self, network: str) -> str:
        for interface in self.interfaces:
            if interface.network == network:
                return interface.address
        raise ChaoslabError(f"node {self.name} has no interface on the {network} network")

    def interface(self, name: str) -> Interface:
        for interface in self.interfaces:
            if interface.name == name:
                return interface
        known = ", ".join(i.name for i in self.interfaces)
        raise ChaoslabError(f"node {self.name} has no interface {name!r}; its interfaces: {known}")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    settings: dict

    @property
    def vrrp_version(self) -> int:
        return self.settings["vrrp"]["version"]

    @property
    def advert_int(self) -> float:
        return float(self.settings["vrrp"]["advert_int"])

    def services(self, spec: NodeSpec) -> tuple[str, ...]:
        """The services a node runs under this profile: its role's, and on a load balancer
        whose Keepalived tracks a file, the checker that writes the file. The one place
        that says which; providers, Node and Lab ask it."""
        if spec.role == "loadbalancer" and renderer().tracks_file(self.settings):
            return (*spec.services, HEALTH_CHECKER)
        return spec.services


class Topology:
    """The parsed, validated topology."""

    def __init__(self, data: dict, source: Path = TOPOLOGY_FILE):
        self.data = data
        self.source = source
        self.domain: str = data["domain"]
        self.networks = {
            name: ipaddress.ip_network(network["subnet"]) for name, network in data["networks"].items()
        }
        self.vip: str = data["vip"]["address"]
        self.vip_network: str = data["vip"]["network"]
        self.port: int = data["vip"]["port"]
        self.virtual_router_id: int = data["vrrp"]["virtual_router_id"]
        self.vrrp_instance: str | None = data["vrrp"].get("instance")
        # Keepalived's nopreempt (or "preempt": false): a returning node of higher priority does not take the VIP back
        self.preempt: bool = bool(data["vrrp"].get("preempt", True))
        self.nodes: tuple[NodeSpec, ...] = tuple(_node_spec(node) for node in data["nodes"])
        # where the lab's own client stands (the netns and vagrant labs); a user's pair needs none
        self.client = _node_spec({**data["client"], "role": "client"}) if data.get("client") else None
        self.default_profile: str = data["default_profile"]
        validate(self)

    @classmethod
    def load(cls, path: Path = TOPOLOGY_FILE) -> Topology:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise ChaoslabError(f"topology file {path} does not exist") from None
        except json.JSONDecodeError as error:
            raise ChaoslabError(f"topology file {path} is not valid JSON: {error}") from None
        try:
            return cls(data, path)
        except (KeyError, TypeError, ValueError) as error:
            raise ChaoslabError(f"topology file {path} is malformed: {error!r}") from None

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.nodes]

    @property
    def loadbalancers(self) -> list[NodeSpec]:
        return [node for node in self.nodes if node.role == "loadbalancer"]

    @property
    def webservers(self) -> list[NodeSpec]:
        return [node for node in self.nodes if node.role == "webserver"]

    @property
    def profile_names(self) -> list[str]:
        return sorted(self.data["profiles"])

    def vip_interface_of(self, spec: NodeSpec) -> str:
        """The node's interface that carries the VIP: the one on the VIP's network (names differ per host)."""
        return next(interface.name for interface in spec.interfaces if interface.network == self.vip_network)

    @property
    def preferred_master(self) -> str | None:
        """The load balancer that holds the VIP in steady state, if the configuration says which: the one
        of highest priority when the pair preempts. None under nopreempt or equal priorities: whichever
        became master first keeps the VIP."""
        priorities = sorted((spec.vrrp_priority or 0, spec.name) for spec in self.loadbalancers)
        if not self.preempt or len(priorities) < 2 or priorities[-1][0] == priorities[-2][0]:
            return None
        return priorities[-1][1]

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ChaoslabError(f"unknown node {name!r}; known nodes: {', '.join(self.node_names)}")

    def profile(self, name: str | None = None) -> Profile:
        name = name or self.default_profile
        try:
            settings = renderer().profile_settings(self.data, name)
        except ValueError as error:
            raise ChaoslabError(str(error)) from None
        profile = Profile(name, self.data["profiles"][name].get("description", ""), settings)
        validate_profile(profile)
        return profile

    def target(self) -> Target:
        """What the client asks and what counts as an answer: the topology's "target" section, by
        default the lab's (the VIP's page over http, each web server's page naming its FQDN).

            "target": {"scheme": "https", "path": "/health", "host": "shop.example.com",
                       "expect_status": 200, "verify_tls": true,
                       "identity": {"kind": "header", "name": "X-Served-By", "markers": {"web1": "srv1"}}}

        identity kinds: "body" (markers: a text each backend's page contains; default
        "<node>.<domain>"), "header" or "cookie" (name: the header or cookie; markers: its value
        for each backend, default the node's name), "none" (any answer with the status counts)."""
        section = self.data.get("target") or {}
        identity = section.get("identity") or {"kind": "body"}
        kind = identity.get("kind", "body")
        default = (lambda node: f"{node}.{self.domain}") if kind == "body" else (lambda node: node)
        markers = identity.get("markers") or {}
        backends = () if kind == "none" else tuple(
            (node.name, str(markers.get(node.name, default(node.name)))) for node in self.webservers)
        path = section.get("path", "/")
        return Target(f"{section.get('scheme', 'http')}://{self.vip}:{self.port}{path}", backends, kind,
                      identity.get("name"), section.get("host"), section.get("expect_status", 200),
                      section.get("verify_tls", True))


def _node_spec(data: dict) -> NodeSpec:
    return NodeSpec(
        name=data["name"],
        role=data["role"],
        interfaces=tuple(Interface(i["name"], i["network"], i["address"]) for i in data["interfaces"]),
        vrrp_priority=data.get("vrrp", {}).get("priority"),
        port=data.get("port", 80),
    )


def validate(topology: Topology) -> None:
    """Reject values out of range or inconsistent, naming what would be right."""
    problems = []
    subnets = list(topology.networks.items())
    for index, (name, subnet) in enumerate(subnets):
        for other_name, other in subnets[index + 1:]:
            if subnet.overlaps(other):
                problems.append(f"networks {name} ({subnet}) and {other_name} ({other}) overlap; give them disjoint subnets")
    if topology.vip_network not in topology.networks:
        problems.append(f"vip.network {topology.vip_network!r} is not one of the networks: {', '.join(topology.networks)}")
    elif outside := outside_subnet(topology, topology.vip, topology.vip_network):
        problems.append(f"VIP {outside}; choose an address inside it")
    if not 1 <= topology.virtual_router_id <= 255:
        problems.append(f"vrrp.virtual_router_id {topology.virtual_router_id} is outside 1..255")
    seen: dict[str, str] = {topology.vip: "the VIP"}
    names: set[str] = set()
    for node in (*topology.nodes, *([topology.client] if topology.client else [])):
        if node.name in names:
            problems.append(f"node name {node.name!r} is used twice")
        names.add(node.name)
        if node.role not in (*ROLES, "client"):
            problems.append(f"node {node.name} has role {node.role!r}; roles: loadbalancer, webserver")
        if node.role == "loadbalancer" and not (node.vrrp_priority and 1 <= node.vrrp_priority <= 255):
            problems.append(f"node {node.name}: VRRP priority {node.vrrp_priority} is outside 1..255 "
                            "(255: the owner of the VIP's address)")
        if not (isinstance(node.port, int) and not isinstance(node.port, bool) and 1 <= node.port <= 65535):
            problems.append(f"node {node.name}: port {node.port!r} is not a TCP port (1..65535)")
        for interface in node.interfaces:
            if not 0 < len(interface.name) <= IFNAMSIZ:
                problems.append(f"node {node.name}: interface name {interface.name!r} is not 1 to {IFNAMSIZ} "
                                "characters long, as a Linux interface name must be")
            if interface.network not in topology.networks:
                problems.append(f"node {node.name}: unknown network {interface.network!r}")
            elif outside := outside_subnet(topology, interface.address, interface.network):
                problems.append(f"node {node.name}: {outside}")
            if interface.address in seen:
                problems.append(f"address {interface.address} of {node.name} is also {seen[interface.address]}")
            seen[interface.address] = node.name
    for balancer in topology.loadbalancers:
        if topology.vip_network in topology.networks and topology.vip_network not in \
                {interface.network for interface in balancer.interfaces}:
            problems.append(f"load balancer {balancer.name} has no interface on the VIP's network {topology.vip_network}")
    if len(topology.loadbalancers) != 2:
        problems.append(f"the topology needs exactly two load balancers, it has {len(topology.loadbalancers)}")
    if not topology.webservers:
        problems.append("the topology has no web server")
    problems += target_problems(topology)
    if topology.default_profile not in topology.data["profiles"]:
        problems.append(f"default_profile {topology.default_profile!r} is not one of the profiles")
    if problems:
        raise ChaoslabError("invalid topology: " + "; ".join(problems))


def target_problems(topology: Topology) -> list[str]:
    """What is wrong with the topology's "target" section (see Topology.target)."""
    section = topology.data.get("target") or {}
    identity = section.get("identity") or {}
    kind = identity.get("kind", "body")
    problems = []
    if section.get("scheme", "http") not in ("http", "https"):
        problems.append(f"target.scheme {section['scheme']!r} is not http or https")
    if not str(section.get("path", "/")).startswith("/"):
        problems.append(f"target.path {section['path']!r} must start with /")
    status = section.get("expect_status", 200)
    if not (isinstance(status, int) and 100 <= status <= 599):
        problems.append(f"target.expect_status {status!r} is not an HTTP status (100..599)")
    if kind not in IDENTITIES:
        problems.append(f"target.identity.kind {kind!r} is unknown; use {', '.join(IDENTITIES)}")
    if kind in ("header", "cookie") and not identity.get("name"):
        problems.append(f"target.identity of kind {kind} needs the {kind}'s name (\"name\")")
    unknown = sorted(set(identity.get("markers") or {}) - {node.name for node in topology.webservers})
    if unknown:
        problems.append(f"target.identity.markers names no web server of the topology: {', '.join(unknown)}")
    return problems


def outside_subnet(topology: Topology, address: str, network: str) -> str | None:
    """'ADDRESS is outside the NETWORK subnet SUBNET' when it is, else None."""
    subnet = topology.networks[network]
    return None if ipaddress.ip_address(address) in subnet else f"{address} is outside the {network} subnet {subnet}"


def validate_profile(profile: Profile) -> None:
    validate_track(profile)
    version = profile.vrrp_version
    advert = profile.advert_int
    if version == 2:
        if advert != int(advert) or not 1 <= advert <= 255:
            raise ChaoslabError(
                f"profile {profile.name}: VRRPv2 carries advert intervals in whole seconds 1..255, "
                f"not {advert:g}; use vrrp version 3 for sub-second adverts"
            )
    elif version == 3:
        if round(advert * 100) != advert * 100 or not 0.01 <= advert <= 40.95:
            raise ChaoslabError(
                f"profile {profile.name}: VRRPv3 carries advert intervals in centiseconds 0.01..40.95, not {advert:g}"
            )
    else:
        raise ChaoslabError(f"profile {profile.name}: VRRP version {version} is unknown; use 2 or 3")


def validate_track(profile: Profile) -> None:
    """The track section names a known mechanism and has its settings; a probe's timeout
    fits in its interval (VRRP theory counts fall x interval for detection)."""
    track = profile.settings.get("track") or {}
    mechanism = track.get("mechanism")
    if mechanism not in TRACK_MECHANISMS:
        raise ChaoslabError(
            f"profile {profile.name}: track mechanism {mechanism!r} is unknown; use {' or '.join(TRACK_MECHANISMS)}"
        )
    missing = [key for key in TRACK_MECHANISMS[mechanism] if key not in track]
    if missing:
        raise ChaoslabError(f"profile {profile.name}: track mechanism {mechanism} needs {', '.join(missing)}")
    if mechanism == "file" and not 0 < track["timeout_ms"] <= track["check_interval_ms"]:
        raise ChaoslabError(
            f"profile {profile.name}: track timeout_ms {track['timeout_ms']} must be above 0 and at most "
            f"check_interval_ms {track['check_interval_ms']}"
        )
