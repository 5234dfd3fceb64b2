"""Inventories: which real hosts play the topology's nodes, and how to reach them over SSH.

The format Ansible users already keep, INI or YAML: a group `loadbalancers` and a
group `webservers`, each host named as its node in the topology, with
`ansible_host`, `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file` and
`ansible_ssh_common_args` (more options for ssh, e.g. a known_hosts file).

    [loadbalancers]
    haproxy-1 ansible_host=10.0.0.13 ansible_user=admin
    haproxy-2 ansible_host=10.0.0.14 ansible_user=admin

    [webservers]
    httpd-1 ansible_host=10.0.1.11
    httpd-2 ansible_host=10.0.1.12

    [all:vars]
    ansible_ssh_private_key_file=~/.ssh/staging
    chaoslab_topology=staging-topology.json

Variables of chaoslab's own (in `all:vars`): `chaoslab_topology`, a topology file
(the format of provision/topology.json, relative to the inventory) describing the
hosts' addresses, VIP and interface when they are not the lab's; and
`chaoslab_lab_hosts=true`, which only chaoslab writes, for machines it made itself
(then faults need no confirmation). Per host, group or all:
`chaoslab_unit_<service>=<unit>` where the host's unit is not its distribution's
(`chaoslab_unit_httpd=nginx`; services: httpd, haproxy, keepalived), and
`chaoslab_vrrp_states=journal|notify`: where Keepalived's state changes are read, its
journal (the default on hosts chaoslab did not make) or the lab's notify log.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from chaoslab.errors import ChaoslabError
from chaoslab.lab.topology import Topology
from chaoslab.stack import SERVICES

GROUPS = {"loadbalancers": "loadbalancer", "webservers": "webserver"}
UNIT_VARIABLE = "chaoslab_unit_"
VRRP_STATE_SOURCES = ("journal", "notify")


@dataclass(frozen=True)
class Host:
    """One machine and how to reach it."""

    name: str
    group: str
    address: str
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    ssh_args: tuple[str, ...] = ()
    units: dict[str, str] = field(default_factory=dict)  # service -> the host's own unit name
    vrrp_states: str | None = None  # journal or notify; None: as the provider decides

    @property
    def destination(self) -> str:
        """user@address as ssh and the logs show it."""
        return f"{self.user}@{self.address}" if self.user else self.address


@dataclass(frozen=True)
class Inventory:
    source: Path
    hosts: dict[str, Host]
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def lab_hosts(self) -> bool:
        """True for machines chaoslab made itself (the vagrant lab's)."""
        return str(self.variables.get("chaoslab_lab_hosts", "")).lower() in ("1", "true", "yes")

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise ChaoslabError(f"host {name!r} is not in the inventory {self.source}; "
                                f"its hosts: {', '.join(self.hosts)}")
        return self.hosts[name]

    def topology(self) -> Topology | None:
        """The topology the inventory names (chaoslab_topology), or None for the project's."""
        name = self.variables.get("chaoslab_topology")
        return Topology.load(self.source.parent / Path(name).expanduser()) if name else None

    def check_against(self, topology: Topology) -> None:
        """Every node of the topology is a host of the right group, and nothing else is."""
        problems = []
        for spec in topology.nodes:
            host = self.hosts.get(spec.name)
            if host is None:
                problems.append(f"node {spec.name} is missing")
            elif GROUPS[host.group] != spec.role:
                problems.append(f"{spec.name} is a {spec.role}; put it in the group "
                                f"{next(g for g, role in GROUPS.items() if role == spec.role)}, not {host.group}")
        for name in self.hosts:
            if name not in topology.node_names:
                problems.append(f"host {name!r} is no node of the topology (nodes: {', '.join(topology.node_names)})")
        if problems:
            raise ChaoslabError(f"inventory {self.source}: " + "; ".join(problems))


def load(path: Path | str) -> Inventory:
    """Read an inventory file, INI or YAML (by its suffix, .yml/.yaml for YAML)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChaoslabError(f"inventory {path} does not exist") from None
    if path.suffix in (".yml", ".yaml"):
        groups, variables = _parse_yaml(text, path)
    else:
        groups, variables = _parse_ini(text, path)
    hosts = {}
    for group, members in groups.items():
        for name, values in members.items():
            if name in hosts:
                raise ChaoslabError(f"inventory {path}: host {name} is in two groups")
            hosts[name] = _host(name, group, {**variables, **values}, path)
    if not hosts:
        raise ChaoslabError(f"inventory {path} has no host in the groups {', '.join(GROUPS)}")
    return Inventory(path, hosts, variables)


def write(inventory_hosts: list[Host], variables: dict[str, str], path: Path) -> Path:
    """Write hosts as an INI inventory (the lab's own, made from `vagrant ssh-config`)."""
    lines = []
    for group in GROUPS:
        lines.append(f"[{group}]")
        for host in inventory_hosts:
            if host.group == group:
                values = {"ansible_host": host.address, "ansible_user": host.user, "ansible_port": host.port,
                          "ansible_ssh_private_key_file": host.key_file,
                          "ansible_ssh_common_args": shlex.join(host.ssh_args) if host.ssh_args else None}
                lines.append(" ".join([host.name, *(f"{key}={shlex.quote(str(value))}"
                                                    for key, value in values.items() if value is not None)]))
        lines.append("")
    lines += ["[all:vars]", *(f"{key}={value}" for key, value in variables.items()), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _host(name: str, group: str, values: dict[str, str], path: Path) -> Host:
    if not values.get("ansible_host"):
        raise ChaoslabError(f"inventory {path}: host {name} has no ansible_host")
    if str(values["ansible_host"]).startswith("-"):
        raise ChaoslabError(f"inventory {path}: host {name}: ansible_host {values['ansible_host']!r} "
                            "is not a host name or address")
    port = values.get("ansible_port")
    if port is not None and not str(port).isdigit():
        raise ChaoslabError(f"inventory {path}: host {name}: ansible_port {port!r} is not a number")
    ssh_args = shlex.split(str(values.get("ansible_ssh_common_args", ""))) + \
        shlex.split(str(values.get("ansible_ssh_extra_args", "")))
    units = {key.removeprefix(UNIT_VARIABLE): str(value) for key, value in values.items()
             if key.startswith(UNIT_VARIABLE)}
    for service in units:
        if service not in SERVICES:
            raise ChaoslabError(f"inventory {path}: host {name}: {UNIT_VARIABLE}{service} names no service; "
                                f"use {', '.join(UNIT_VARIABLE + known for known in SERVICES)}")
    vrrp_states = values.get("chaoslab_vrrp_states")
    if vrrp_states is not None and vrrp_states not in VRRP_STATE_SOURCES:
        raise ChaoslabError(f"inventory {path}: host {name}: chaoslab_vrrp_states={vrrp_states!r}; "
                            f"use {' or '.join(VRRP_STATE_SOURCES)}")
    return Host(name, group, str(values["ansible_host"]), values.get("ansible_user"),
                int(port) if port is not None else None, values.get("ansible_ssh_private_key_file"), tuple(ssh_args),
                units, vrrp_states)


def _parse_ini(text: str, path: Path) -> tuple[dict[str, dict[str, dict]], dict[str, str]]:
    groups: dict[str, dict[str, dict]] = {}
    variables: dict[str, str] = {}
    section = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line[1:].partition("]")[0].strip()
            if section not in (*GROUPS, "all:vars"):
                raise ChaoslabError(f"inventory {path}, line {number}: unknown section [{section}]; "
                                    f"chaoslab reads [{'], ['.join(GROUPS)}] and [all:vars]")
            continue
        if section is None:
            raise ChaoslabError(f"inventory {path}, line {number}: a host outside any group; "
                                f"put it under [{'] or ['.join(GROUPS)}]")
        if section == "all:vars":
            key, equals, value = line.partition("=")
            if not equals:
                raise ChaoslabError(f"inventory {path}, line {number}: expected key=value, got {line!r}")
            variables[key.strip()] = _unquote(value.strip())
            continue
        try:
            name, *pairs = shlex.split(line, comments=True)
        except ValueError as error:
            raise ChaoslabError(f"inventory {path}, line {number}: {error} in {line!r}") from None
        values = {}
        for pair in pairs:
            key, equals, value = pair.partition("=")
            if not equals:
                raise ChaoslabError(f"inventory {path}, line {number}: expected key=value, got {pair!r}")
            values[key] = value
        groups.setdefault(section, {})[name] = values
    return groups, variables


def _parse_yaml(text: str, path: Path) -> tuple[dict[str, dict[str, dict]], dict[str, str]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ChaoslabError(f"inventory {path} is not valid YAML: {error}") from None
    top = data.get("all", data) if isinstance(data, dict) else None
    if not isinstance(top, dict):
        raise ChaoslabError(f"inventory {path}: expected a mapping with 'all' (or the groups) at the top")
    children = top.get("children") or {}
    groups = {}
    for group in GROUPS:
        section = children.get(group) or top.get(group) or {}
        members = section.get("hosts") or {}
        if not isinstance(members, dict):
            raise ChaoslabError(f"inventory {path}: {group}.hosts must map host names to their variables, "
                                f"e.g. 'hosts: {{haproxy-1: {{ansible_host: 10.0.0.13}}}}'")
        group_variables = section.get("vars") or {}
        groups[group] = {name: {**group_variables, **(values or {})} for name, values in members.items()}
    variables = {key: str(value) for key, value in (top.get("vars") or {}).items()}
    return groups, variables


def _unquote(value: str) -> str:
    return shlex.split(value)[0] if value[:1] in ("'", '"') else value
