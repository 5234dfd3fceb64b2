#!/usr/bin/env python3
"""Render one node's configuration files from the topology into a root directory.

The single renderer of chaoslab: the shell provisioner (configure.sh) calls it on
a VM with root "/", the netns lab calls the same script with a per-node root
under its state directory, and chaoslab.topology imports it for the profile
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
    """The settings of a profile: the topology's settings with the profile's overrides."""
    profiles = topology["profiles"]
    if profile not in profiles:
        raise ValueError(
            f"unknown profile {profile!r}; known profiles: {', '.join(sorted(profiles))}"
        )
    overrides = {k: v for k, v in profiles[profile].items() if k != "description"}
    return deep_merge(topology["settings"], overrides)


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
            f"render.py: no local interface holds {address}; keeping the topology's {topology['vip']['interface']}",
            file=sys.stderr,
        )
    return name


def _seconds(value: float) -> str:
    return f"{value:g}"


def _track_block(settings: dict, root: str) -> tuple[str, str]:
    """The keepalived definition of the HAProxy check and its reference in the instance."""
    track = settings["track"]
    if track["mechanism"] == "file":
        definition = (
            "vrrp_track_file chk_haproxy {\n"
            f"    file \"{root}/run/chaoslab/haproxy-health\"\n"
            "    weight 0\n"
            "    init_file 0 overwrite\n"
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
        "vip_interface": vip_interface or vip["interface"],
        "port": str(vip["port"]),
    }
    if node["role"] == "webserver":
        context["address"] = address_on(node, "private")
        return context

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
            "garp_master_delay": str(vrrp["garp_master_delay"]),
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
            "redispatch": "    option redispatch" if haproxy["redispatch"] else "    no option redispatch",
            "servers": "\n".join(
                f"    server {server['name']} {address_on(server, 'private')}:{vip['port']} check"
                for server in servers
            ),
        }
    )
    return context


def render_node(
    topology: dict, node_name: str, profile: str, root: Path, password: str, vip_interface: str | None = None
) -> list[Path]:
    """Write the node's files under root; return the paths written."""
    node = find_node(topology, node_name)
    context = node_context(topology, node_name, profile, str(root), password, vip_interface)
    for directory in RUNTIME_DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
    written = []
    for template_name, (relative, mode) in ROLE_FILES[node["role"]].items():
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
