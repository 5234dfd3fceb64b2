#!/usr/bin/env python3
"""Render one node's configuration files from the topology into a root directory.

The single renderer of chaoslab: the shell provisioner (configure.sh) calls it on
a VM with root "/", the netns lab calls the same script with a per-node root
under its state directory, and chaoslab.lab.topology imports it for the profile
logic. Standard library only: it must run on a bare VM.

    render.py --node haproxy-1 --profile seed --root /
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from string import Template

PROVISION_DIR = Path(__file__).resolve().parent
TOPOLOGY_FILE = PROVISION_DIR / "topology.json"
TEMPLATE_DIR = PROVISION_DIR / "templates"
PASSWORD_ENV = "CHAOSLAB_VRRP_PASSWORD"
LAB_PASSWORD = "chaoslab"

# template -> (path under root, mode), per role
ROLE_FILES: dict[str, dict[str, tuple[str, int]]] = {
    "loadbalancer": {
        "haproxy.cfg": ("etc/haproxy/haproxy.cfg", 0o644),
        "keepalived.conf": ("etc/keepalived/keepalived.conf", 0o600),
        "check_haproxy.sh": ("etc/keepalived/chaoslab/check_haproxy.sh", 0o755),
        "vrrp_notify.sh": ("etc/keepalived/chaoslab/vrrp_notify.sh", 0o755),
    },
    "webserver": {
        "httpd-site.conf": ("etc/chaoslab/httpd-site.conf", 0o644),
        "httpd-lab.conf": ("etc/chaoslab/httpd-lab.conf", 0o644),
        "index.html": ("var/www/html/index.html", 0o644),
    },
}
# What a load balancer gets besides its ROLE_FILES when Keepalived tracks HAProxy
# through a file: the checker that writes the file, and the checker's systemd unit.
CHECKER_FILES: dict[str, tuple[str, int]] = {
    "haproxy_health.py": ("etc/keepalived/chaoslab/haproxy-health", 0o755),
    "haproxy-health.service": ("etc/systemd/system/chaoslab-haproxy-health.service", 0o644),
}
TRACK_FILE = "run/chaoslab/haproxy-health"
HEALTH_URI = "/health"
RUNTIME_DIRS = ("run/chaoslab", "var/log/chaoslab")


def load_topology(path: Path = TOPOLOGY_FILE) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_settings(topology: dict, profile: str) -> dict:
    """The settings of a profile: the topology's settings with the profile's overrides.

    A track section that names another mechanism than the default's replaces it
    whole: the settings of one mechanism mean nothing to another."""
    profiles = topology["profiles"]
    if profile not in profiles:
        raise ValueError(
            f"unknown profile {profile!r}; known profiles: {', '.join(sorted(profiles))}"
        )
    overrides = {k: v for k, v in profiles[profile].items() if k != "description"}
    settings = deep_merge(topology["settings"], overrides)
    track = overrides.get("track", {})
    if track.get("mechanism", settings["track"]["mechanism"]) != topology["settings"]["track"]["mechanism"]:
        settings["track"] = copy.deepcopy(track)
    return settings


def tracks_file(settings: dict) -> bool:
    """True when Keepalived tracks HAProxy through a file that a checker keeps up to date."""
    return settings["track"]["mechanism"] == "file"


def node_files(role: str, settings: dict) -> dict[str, tuple[str, int]]:
    """template -> (path under root, mode) of every file a node of this role gets under these settings."""
    files = dict(ROLE_FILES[role])
    if role == "loadbalancer" and tracks_file(settings):
        files.update(CHECKER_FILES)
    return files


def find_node(topology: dict, name: str) -> dict:
    for node in topology["nodes"]:
        if node["name"] == name:
            return node
    known = ", ".join(node["name"] for node in topology["nodes"])
    raise ValueError(f"unknown node {name!r}; known nodes: {known}")


def address_on(node: dict, network: str) -> str:
    for interface in node["interfaces"]:
        if interface["network"] == network:
            return interface["address"]
    raise ValueError(f"node {node['name']} has no interface on network {network!r}")


def interface_on(node: dict, network: str) -> str:
    for interface in node["interfaces"]:
        if interface["network"] == network:
            return interface["name"]
    raise ValueError(f"node {node['name']} has no interface on network {network!r}")


def interface_holding(address: str) -> str | None:
    """The name of the local interface that holds an IPv4 address, or None."""
    try:
        listing = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in listing.splitlines():
        # "3: eth1    inet 192.168.1.13/24 brd 192.168.1.255 scope global eth1 ..."
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet" and fields[3].split("/")[0] == address:
            return fields[1].split("@")[0]
    return None


def local_vip_interface(topology: dict, node_name: str) -> str | None:
    """On a machine of its own, the interface of a load balancer that holds its
    address on the VIP's network; its name depends on the box (eth1, enp0s8, ...)."""
    node = find_node(topology, node_name)
    if node["role"] != "loadbalancer":
        return None
    address = address_on(node, topology["vip"]["network"])
    name = interface_holding(address)
    if name is None:
        print(
            f"render.py: no local interface holds {address}; keeping the topology's "
            f"{interface_on(node, topology['vip']['network'])}",
            file=sys.stderr,
        )
    return name


def _seconds(value: float) -> str:
    return f"{value:g}"


def _track_block(settings: dict, root: str) -> tuple[str, str]:
    """The keepalived definition of the HAProxy check and its reference in the instance.

    A track file with weight 0: a non-zero value puts the instance in FAULT. Until
    the checker has judged, the file says 1 (failed): a node whose checker does not
    run never takes the VIP. No "overwrite": a Keepalived (re)start keeps the
    checker's current verdict."""
    track = settings["track"]
    if tracks_file(settings):
        definition = (
            "track_file chk_haproxy {\n"
            f"    file \"{root}/{TRACK_FILE}\"\n"
            "    weight 0\n"
            "    init_file 1\n"
            "}\n"
        )
        return definition, "    track_file {\n        chk_haproxy\n    }"
    definition = (
        "vrrp_script chk_haproxy {\n"
        f"    script \"{root}/etc/keepalived/chaoslab/check_haproxy.sh\"\n"
        f"    interval {track['interval']}\n"
        f"    fall {track['fall']}\n"
        f"    rise {track['rise']}\n"
        "}\n"
    )
    return definition, "    track_script {\n        chk_haproxy\n    }"


def _garp_lines(vrrp: dict) -> str:
    """Keepalived's gratuitous ARP settings; a periodic refresh only where the profile asks for one."""
    lines = [f"    vrrp_garp_master_delay {vrrp['garp_master_delay']}"]
    if vrrp.get("garp_master_refresh"):
        lines.append(f"    vrrp_garp_master_refresh {vrrp['garp_master_refresh']}")
    return "\n".join(lines)


def _retry_policy(haproxy: dict) -> str:
    """When HAProxy retries a request on the other web server.

    redispatch false: never; true: HAProxy's default, on the last retry; N: on
    every Nth retry. retry_on, where set: the failures retried besides a failed
    connection ("empty-response": a server that died with the request in hand)."""
    redispatch = haproxy["redispatch"]
    if isinstance(redispatch, bool):
        lines = ["    option redispatch" if redispatch else "    no option redispatch"]
    else:
        lines = [f"    option redispatch {redispatch}"]
    if haproxy.get("retry_on"):
        lines.append(f"    retry-on {haproxy['retry_on']}")
    return "\n".join(lines)


def _health_frontend(settings: dict) -> str:
    """The frontend the checker asks, on the loopback only; nothing without a checker."""
    if not tracks_file(settings):
        return ""
    return (
        "\n\nfrontend health\n"
        f"    bind 127.0.0.1:{settings['track']['health_port']}\n"
        f"    monitor-uri {HEALTH_URI}"
    )


def _checker_context(settings: dict, root: str) -> dict:
    """The values the checker and its unit use."""
    track = settings["track"]
    return {
        "track_file": f"{root}/{TRACK_FILE}",
        "pid_file": f"{root}/run/haproxy-health.pid",
        "health_port": str(track["health_port"]),
        "health_uri": HEALTH_URI,
        "check_interval_ms": str(track["check_interval_ms"]),
        "timeout_ms": str(track["timeout_ms"]),
        "fall": str(track["fall"]),
        "rise": str(track["rise"]),
    }


def node_context(
    topology: dict, node_name: str, profile: str, root: str, password: str, vip_interface: str | None = None
) -> dict:
    """Every value the templates of one node use; vip_interface overrides the topology's."""
    node = find_node(topology, node_name)
    settings = profile_settings(topology, profile)
    vip = topology["vip"]
    prefix_len = ipaddress.ip_network(topology["networks"][vip["network"]]["subnet"]).prefixlen
    root = root.rstrip("/")
    context = {
        "root": root,
        "node": node["name"],
        "fqdn": f"{node['name']}.{topology['domain']}",
        "profile": profile,
        "vip": vip["address"],
        "vip_prefix": str(prefix_len),
        "port": str(vip["port"]),
    }
    if node["role"] == "webserver":
        context["address"] = address_on(node, "private")
        return context
    context["vip_interface"] = vip_interface or interface_on(node, vip["network"])

    vrrp = settings["vrrp"]
    haproxy = settings["haproxy"]
    peers = [
        other for other in topology["nodes"]
        if other["role"] == "loadbalancer" and other["name"] != node["name"]
    ]
    servers = [other for other in topology["nodes"] if other["role"] == "webserver"]
    track_definition, track_reference = _track_block(settings, root)
    if vrrp["version"] == 2:
        authentication = (
            "    authentication {\n"
            "        auth_type PASS\n"
            f"        auth_pass {password}\n"
            "    }"
        )
    else:
        authentication = "    # VRRPv3 (RFC 5798) carries no authentication"
    context.update(
        {
            "vrrp_version": str(vrrp["version"]),
            "advert_int": _seconds(vrrp["advert_int"]),
            "garp": _garp_lines(vrrp),
            "instance": topology["vrrp"]["instance"],
            "virtual_router_id": str(topology["vrrp"]["virtual_router_id"]),
            "state": node["vrrp"]["state"],
            "priority": str(node["vrrp"]["priority"]),
            "unicast_src_ip": address_on(node, vip["network"]),
            "unicast_peers": "\n".join(
                f"        {address_on(peer, vip['network'])}" for peer in peers
            ),
            "authentication": authentication,
            "track_definition": track_definition,
            "track_reference": track_reference,
            "balance": haproxy["balance"],
            "check_inter_ms": str(haproxy["check_inter_ms"]),
            "check_fall": str(haproxy["check_fall"]),
            "check_rise": str(haproxy["check_rise"]),
            "timeout_connect_ms": str(haproxy["timeout_connect_ms"]),
            "timeout_client_ms": str(haproxy["timeout_client_ms"]),
            "timeout_server_ms": str(haproxy["timeout_server_ms"]),
            "retries": str(haproxy["retries"]),
            "retry_policy": _retry_policy(haproxy),
            "health_frontend": _health_frontend(settings),
            "servers": "\n".join(
                f"    server {server['name']} {address_on(server, 'private')}:{vip['port']} check"
                for server in servers
            ),
        }
    )
    if tracks_file(settings):
        context.update(_checker_context(settings, root))
    return context


def render_node(
    topology: dict, node_name: str, profile: str, root: Path, password: str, vip_interface: str | None = None
) -> list[Path]:
    """Write the node's files under root; return the paths written.

    A checker file that the profile does not use (a machine that switched from a
    file-tracking profile) is removed, so that nothing stale is left to run."""
    node = find_node(topology, node_name)
    context = node_context(topology, node_name, profile, str(root), password, vip_interface)
    files = node_files(node["role"], profile_settings(topology, profile))
    for directory in RUNTIME_DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
    used = {relative for relative, _ in files.values()}
    for relative, _ in CHECKER_FILES.values():
        if relative not in used:
            (root / relative).unlink(missing_ok=True)
    written = []
    for template_name, (relative, mode) in files.items():
        text = Template((TEMPLATE_DIR / template_name).read_text(encoding="utf-8")).substitute(context)
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.chmod(temporary, mode)
        os.replace(temporary, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="node name from the topology")
    parser.add_argument("--profile", default=None, help="profile name (default: the topology's)")
    parser.add_argument("--root", default="/", help="directory the files are written under")
    parser.add_argument("--topology", default=str(TOPOLOGY_FILE), help="topology file")
    parser.add_argument("--role-only", action="store_true", help="print the node's role, write nothing")
    parser.add_argument(
        "--vip-interface",
        default=None,
        help="interface the VIP lives on (default: the topology's); 'auto': the local interface "
        "that holds the node's address on the VIP's network",
    )
    args = parser.parse_args(argv)
    topology = load_topology(Path(args.topology))
    profile = args.profile or topology["default_profile"]
    password = os.environ.get(PASSWORD_ENV, LAB_PASSWORD)
    try:
        if args.role_only:
            print(find_node(topology, args.node)["role"])
            return 0
        vip_interface = args.vip_interface
        if vip_interface == "auto":
            vip_interface = local_vip_interface(topology, args.node)
        written = render_node(topology, args.node, profile, Path(args.root), password, vip_interface)
    except ValueError as error:
        print(f"render.py: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
