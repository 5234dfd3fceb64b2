"""From a pair's own keepalived.conf and haproxy.cfg to the topology chaoslab runs on.

What the configs say becomes the topology (provision/topology.json's format): the load balancers
with their NICs and addresses, the VIP and the VRRP instance that carries it, priorities, state
and nopreempt, HAProxy's frontend and the backend's servers as the web servers, and one profile,
"imported", whose settings are the configs' timers (VRRP version and advert, the track script's
interval, fall, rise and weight, HAProxy's check timing and retry policy), as the daemons use them
(Keepalived rounds a VRRPv2 advert to whole seconds and reads a script's interval as an integer). What the configs do
not say (the load balancers' NIC towards the servers, the page clients ask for) is assumed and
named; what cannot be mapped is named with its file and line. The VRRP password is never copied
into the topology: the rehearsal runs the configs themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chaoslab.configs.model import (
    LoadBalancerConfig,
    Proxy,
    Server,
    VirtualAddress,
    VrrpInstance,
    advert_int_used,
    preempts,
    seconds_used,
    secret_mask,
    tracked_weight,
    weights_ignored,
)
from chaoslab.configs.statements import Note
from chaoslab.errors import ChaoslabError
from chaoslab.measure import theory

PROFILE = "imported"
DOMAIN = "imported.invalid"  # no DNS name: the imported stack is known by its addresses
VIP_NETWORK = "vip"
SERVER_NETWORK = "servers"
SERVER_NIC = "srv0"  # the load balancers' NIC towards the servers, when that network is not the VIP's
WEBSERVER_NIC = "eth0"  # the rehearsal's stand-ins for the servers
CLIENT = "client"
ASSUMED_PREFIXES = {4: (24, 16), 6: (64, 48)}  # IP version -> the narrowest and widest network assumed
# what a track script runs that only asks whether HAProxy's process is there (it passes a frozen HAProxy)
PROCESS_CHECKS = re.compile(r"\b(killall\s+-0|pidof|pgrep|systemctl\s+(--quiet\s+)?is-active|kill\s+-0|ps\b)")
# experiments' scenarios, each with the faults chaoslab injects for it
PREDICTED = ("halt-master", "keepalived-stop", "keepalived-crash", "haproxy-kill", "haproxy-stop", "haproxy-freeze",
             "backend-down")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Imported:
    """The topology's data, what was assumed or not mapped, and what the configs promise."""

    topology: dict
    notes: tuple[Note, ...]
    predictions: tuple[theory.Prediction, ...]


def import_pair(pair: Sequence[LoadBalancerConfig], addresses: Mapping[str, str] | None = None) -> Imported:
    """The topology of a pair. addresses gives a node's address on the VIP's network where its
    keepalived.conf does not (multicast, no unicast_src_ip)."""
    notes: list[Note] = [note for config in pair for note in config.notes]
    instances = {config.node: _measured_instance(config, notes) for config in pair}
    first = pair[0]
    instance = instances[first.node]
    vip = instance.addresses[0]
    frontend = _frontend(first, vip.ip, notes)
    backend = _backend(first, frontend)
    servers = [server for server in backend.servers if not server.backup] or list(backend.servers)
    own = {config.node: _own_address(config, instances, addresses or {}) for config in pair}
    networks = _networks(vip, list(own.values()), [server.address for server in servers], notes)
    # every address the configs name, so that the rehearsal's own machines take none of them
    used = {*own.values(), *(server.address for server in servers),
            *(address.ip for each in instances.values() for address in each.addresses),
            *(str(peer.value) for each in instances.values() for peer in each.unicast_peers)}
    port = frontend_port(frontend, vip.ip)
    topology = {
        "domain": DOMAIN,
        "networks": {name: {"subnet": str(subnet)} for name, subnet in networks.items()},
        "vip": {"address": vip.ip, "network": VIP_NETWORK, "port": port},
        "nodes": [*(_balancer(config, instances[config.node], own[config.node], networks, used, notes) for config in pair),
                  *(_webserver(server, networks, port) for server in servers)],
        "client": {"name": CLIENT, "interfaces": [
            {"name": WEBSERVER_NIC, "network": VIP_NETWORK, "address": _free_address(networks[VIP_NETWORK], used)}]},
        "vrrp": {"instance": instance.name, "virtual_router_id": instance.virtual_router_id.value,
                 "preempt": all(preempts(each) for each in instances.values())},
        "settings": _settings(first, instance, backend, notes),
        "profiles": {PROFILE: {"description": "as the pair's own keepalived.conf and haproxy.cfg configure it"}},
        "default_profile": PROFILE,
        "target": _target(frontend, backend, servers, notes),
    }
    predictions = tuple(predict(topology))
    mask = secret_mask(pair)
    notes = [Note(note.place, mask(note.message)) for note in notes]
    topology["imported"] = {
        "from": {config.node: {"keepalived": str(config.keepalived.path), "haproxy": str(config.haproxy.path)}
                 for config in pair},
        "configured": {config.node: configured(config, instances[config.node], backend.name, mask) for config in pair},
        "notes": [str(note) for note in notes],
        "predictions": [prediction.to_json() for prediction in predictions],
    }
    return Imported(topology, tuple(notes), predictions)


def _networks(vip: VirtualAddress, balancers: list[str], servers: list[str | None], notes: list[Note]) -> dict:
    """The VIP's network, and the servers' where they are not on it (network name -> subnet)."""
    networks = {VIP_NETWORK: _subnet(vip, balancers, notes, "the VIP's network")}
    if all(ipaddress.ip_address(address) in networks[VIP_NETWORK] for address in servers):
        return networks
    return {**networks, SERVER_NETWORK: _subnet(None, servers, notes, "the servers' network")}


def _balancer(config: LoadBalancerConfig, instance: VrrpInstance, address: str, networks: dict, used: set[str],
              notes: list[Note]) -> dict:
    """A load balancer of the topology: its NIC on the VIP's network, and one towards the servers
    where they are elsewhere (assumed: no config says it)."""
    nic = instance.interface.value or instance.addresses[0].interface
    if not nic:
        raise ChaoslabError(f"{instance.place}: vrrp_instance {instance.name} on {config.node} names no interface; "
                            "add `interface NIC` (the NIC on the VIP's network)")
    interfaces = [{"name": nic, "network": VIP_NETWORK, "address": address}]
    if SERVER_NETWORK in networks:
        towards = _free_address(networks[SERVER_NETWORK], used)
        interfaces.append({"name": SERVER_NIC, "network": SERVER_NETWORK, "address": towards})
        notes.append(Note(None, f"{config.node}'s NIC and address towards the servers are in no config: "
                                f"{SERVER_NIC} {towards} assumed (the rehearsal's; on the hosts, name the NIC "
                                "in the topology before a link fault on it)"))
    return {"name": config.node, "role": "loadbalancer", "interfaces": interfaces,
            "vrrp": {"state": instance.state.value, "priority": instance.priority.value}}


def _webserver(server: Server, networks: dict, port: int) -> dict:
    """A web server of the topology: a backend server, on its own port (else the frontend's)."""
    network = SERVER_NETWORK if SERVER_NETWORK in networks else VIP_NETWORK
    return {"name": server.name, "role": "webserver", "port": server.port or port,
            "interfaces": [{"name": WEBSERVER_NIC, "network": network, "address": server.address}]}


def configured(config: LoadBalancerConfig, instance: VrrpInstance, backend_name: str,
               mask: Callable[[str], str]) -> dict:
    """What one node's files configure for the measured instance and backend, as the daemons use it
    (their defaults filled in), kept with the topology for the reader; the password never (mask takes
    it out of a script line that quotes it)."""
    scripts = config.keepalived.scripts
    tracked = [{"name": entry.name, **({"script": mask(scripts[entry.name].script),
                                        "interval": seconds_used(scripts[entry.name].interval),
                                        "fall": scripts[entry.name].fall, "rise": scripts[entry.name].rise}
                                       if entry.name in scripts else {}),
                "weight": tracked_weight(entry, scripts.get(entry.name))} for entry in instance.track_scripts]
    vrrp = {
        "instance": instance.name, "state": instance.state.value, "priority": instance.priority.value,
        "nopreempt": bool(instance.nopreempt.value), "interface": instance.interface.value,
        "virtual_router_id": instance.virtual_router_id.value, "version": instance.version.value,
        "advert_int": advert_int_used(instance),
        "adverts": "unicast" if instance.unicast else "multicast",
        "unicast_src_ip": instance.unicast_src_ip.value, "unicast_peers": [peer.value for peer in instance.unicast_peers],
        "auth_type": instance.auth_type.value,
        "vips": [{"address": str(vip.address), "interface": vip.interface or instance.interface.value}
                 for vip in instance.addresses],
        "track_scripts": tracked, "track_files": [entry.name for entry in instance.track_files],
        "track_interfaces": [entry.name for entry in instance.track_interfaces],
        "garp_master_delay": instance.garp_master_delay.value, "garp_master_refresh": instance.garp_master_refresh.value,
    }
    backend = config.haproxy.backend(backend_name)
    haproxy = {
        "frontends": [{"name": proxy.name, "kind": proxy.kind, "mode": proxy.mode.value,
                       "binds": [{"address": bind.host or "*", "port": bind.port, "tls": bind.tls} for bind in proxy.binds]}
                      for proxy in config.haproxy.frontends],
        "backend": None if backend is None else {
            "name": backend.name, "balance": backend.balance.value, "redispatch": bool(backend.redispatch.value),
            "retries": backend.retries.value, "retry_on": backend.retry_on.value,
            "servers": [{"name": server.name, "address": server.host, "port": server.port, "check": server.check,
                         "inter_ms": server.inter_ms.value, "fall": server.fall.value, "rise": server.rise.value,
                         "backup": server.backup} for server in backend.servers]},
    }
    return {"keepalived": vrrp, "haproxy": haproxy}


def predict(topology: dict) -> list[theory.Prediction]:
    """What the pair's timers promise for each fault the experiments inject: the master is the node
    that starts as MASTER (else the higher priority), the backup the other."""
    balancers = sorted((node for node in topology["nodes"] if node["role"] == "loadbalancer"),
                       key=lambda node: (node["vrrp"]["state"] != "MASTER", -node["vrrp"]["priority"]))
    master, backup = balancers[0]["vrrp"]["priority"], balancers[1]["vrrp"]["priority"]
    preempt = topology["vrrp"]["preempt"]
    webservers = sum(1 for node in topology["nodes"] if node["role"] == "webserver")
    return [theory.expected_outage(scenario, topology["settings"], backup, master, preempt, webservers)
            for scenario in PREDICTED]


def prediction_rows(predictions: Sequence[theory.Prediction]) -> list[tuple[str, str, str]]:
    """(scenario, outage, why) per prediction, for a table."""
    rows = []
    for prediction in predictions:
        if not prediction.has_bounds:
            window = "no prediction"
        elif prediction.never_recovers:
            window = "never recovers"
        else:
            window = f"{prediction.low:.2f}-{prediction.high:.2f} s"
        rows.append((prediction.scenario, window, prediction.formula))
    return rows


def frontend_port(frontend: Proxy, vip: str) -> int:
    """The port the frontend serves the VIP on: its bind of the VIP's address, else of every address."""
    return next(bind.port for bind in sorted(frontend.binds, key=lambda bind: bind.host != vip)
                if bind.host in (vip, None))


def _measured_instance(config: LoadBalancerConfig, notes: list[Note]) -> VrrpInstance:
    """The VRRP instance whose VIP HAProxy serves (else the first with a VIP); the others are named."""
    with_vip = [instance for instance in config.keepalived.instances if instance.addresses]
    if not with_vip:
        raise ChaoslabError(f"{config.keepalived.path}: no vrrp_instance with a virtual_ipaddress; "
                            "chaoslab measures a VIP that Keepalived moves between the two load balancers")
    bound = {bind.host for proxy in config.haproxy.frontends for bind in proxy.binds}
    chosen = next((i for i in with_vip if any(address.ip in bound for address in i.addresses)), with_vip[0])
    for other in with_vip:
        if other is not chosen:
            notes.append(Note(other.place, f"vrrp_instance {other.name} (VIP {other.addresses[0].ip}) is not measured: "
                                           f"chaoslab measures {chosen.name}'s VIP {chosen.addresses[0].ip}"))
    if len(chosen.addresses) > 1:
        notes.append(Note(chosen.place, f"{chosen.name} holds {len(chosen.addresses)} addresses; clients are measured "
                                        f"on the first, {chosen.addresses[0].ip}"))
    if chosen.virtual_router_id.value is None:
        raise ChaoslabError(f"{chosen.place}: vrrp_instance {chosen.name} has no virtual_router_id; Keepalived "
                            "refuses it too: add `virtual_router_id N` (1..255, the same on both nodes)")
    return chosen


def _frontend(config: LoadBalancerConfig, vip: str, notes: list[Note]) -> Proxy:
    """The frontend clients of the VIP reach: one that binds the VIP's address before one on every address,
    one whose backend has servers before one without (a stats page), port 80 or 443 before others."""

    def rank(proxy: Proxy) -> tuple:
        serves = bool(proxy.servers) if proxy.kind == "listen" else bool(
            (backend := config.haproxy.backend(proxy.default_backend.value or "")) and backend.servers)
        ports = {bind.port for bind in proxy.binds}
        return (not any(bind.host == vip for bind in proxy.binds), not serves, not ports & {80, 443})

    frontends = [proxy for proxy in config.haproxy.frontends
                 if any(bind.host in (vip, None) for bind in proxy.binds)]
    if not frontends:
        raise ChaoslabError(f"{config.haproxy.path}: no frontend or listen section binds the VIP {vip} "
                            f"(or every address): clients of the VIP reach no HAProxy")
    chosen = min(frontends, key=rank)
    for proxy in config.haproxy.frontends:
        if proxy is not chosen and proxy.binds:
            notes.append(Note(proxy.place, f"{proxy.kind} {proxy.name} is not measured: the VIP's clients are "
                                           f"measured through {chosen.kind} {chosen.name}"))
    return chosen


def _backend(config: LoadBalancerConfig, frontend: Proxy) -> Proxy:
    """The proxy whose servers answer the VIP's clients: a listen section's own servers, else its
    default_backend's; each server written as an IP address (the rehearsal stands in for it there)."""
    own = frontend.kind == "listen" and frontend.servers
    name = frontend.default_backend.value
    backend = frontend if own else config.haproxy.backend(name) if name else None
    if backend is None or not backend.servers:
        what = f"its default_backend {name}" if name else "no default_backend"
        raise ChaoslabError(f"{frontend.place}: {frontend.kind} {frontend.name} has {what} with servers; chaoslab "
                            "measures the backend that answers the VIP's clients: add `default_backend NAME`")
    sockets = [server.name for server in backend.servers if "@" in server.host]
    names = [server.name for server in backend.servers if server.address is None and "@" not in server.host]
    if sockets:
        raise ChaoslabError(f"{backend.place}: backend {backend.name}'s servers {', '.join(sockets)} are sockets "
                            "(unix@, abns@...), not addresses: chaoslab rehearses and measures TCP servers")
    if names:
        raise ChaoslabError(f"{backend.place}: backend {backend.name}'s servers {', '.join(names)} are written as host "
                            "names; the rehearsal needs their IP addresses: write them as addresses")
    return backend


def _own_address(config: LoadBalancerConfig, instances: Mapping[str, VrrpInstance], given: Mapping[str, str]) -> str:
    """The node's address on the VIP's network: its unicast_src_ip, the one peer its partner lists, or as given."""
    instance = instances[config.node]
    if instance.unicast_src_ip.value:
        return str(instance.unicast_src_ip.value)
    partners = [other for name, other in instances.items() if name != config.node]
    peers = [peer.value for other in partners for peer in other.unicast_peers]
    if len(peers) == 1:
        return str(peers[0])
    if config.node in given:
        return given[config.node]
    raise ChaoslabError(f"{instance.place}: {config.node}'s address on the VIP's network is in no config (no "
                        f"unicast_src_ip, and its partner lists {len(peers)} unicast peers): pass it with "
                        f"--address {config.node}=ADDRESS")


def _subnet(vip: VirtualAddress | None, addresses: list[str], notes: list[Note], what: str) -> Network:
    """The VIP's own prefix when it holds the addresses; else the narrowest network that does, from /24
    to /16 (IPv6: /64 to /48), named as assumed."""
    if vip is not None and vip.address.network.prefixlen < vip.address.max_prefixlen and all(
            ipaddress.ip_address(address) in vip.address.network for address in addresses):
        return vip.address.network
    anchor = vip.address.ip if vip is not None else ipaddress.ip_address(addresses[0])
    narrowest, widest = ASSUMED_PREFIXES[anchor.version]
    for prefix in range(narrowest, widest - 1, -1):
        network = ipaddress.ip_network(f"{anchor}/{prefix}", strict=False)
        if all(ipaddress.ip_address(address) in network for address in addresses):
            notes.append(Note(vip.place if vip is not None else None,
                              f"{what}: no prefix in the configs holds {', '.join(addresses)}; {network} assumed"))
            return network
    raise ChaoslabError(f"{what}: the addresses {', '.join(addresses)} are not within one /{widest} "
                        "network; the rehearsal puts them on one network")


def _free_address(network: Network, used: set[str]) -> str:
    """The highest host address of the network nobody uses, of the top 64 (a rehearsal's own machine)."""
    top = int(network.broadcast_address) - (1 if network.version == 4 else 0)
    for number in range(top, max(top - 64, int(network.network_address)), -1):
        address = str(ipaddress.ip_address(number))
        if address not in used:
            used.add(address)
            return address
    raise ChaoslabError(f"no free address left at the top of {network} for the rehearsal's own machines")


def _settings(config: LoadBalancerConfig, instance: VrrpInstance, backend: Proxy, notes: list[Note]) -> dict:
    vrrp = {"version": instance.version.value, "advert_int": advert_int_used(instance),
            "garp_master_delay": instance.garp_master_delay.value}
    if instance.garp_master_refresh.value:
        vrrp["garp_master_refresh"] = instance.garp_master_refresh.value
    checked = [server for server in backend.servers if server.check] or list(backend.servers)
    server: Server = checked[0]
    haproxy = {
        "balance": backend.balance.value,
        "check_inter_ms": server.inter_ms.value,
        "check_fall": server.fall.value,
        "check_rise": server.rise.value,
        "retries": backend.retries.value,
        "redispatch": bool(backend.redispatch.value),
        **({"retry_on": backend.retry_on.value} if backend.retry_on.value else {}),
        **{f"timeout_{name}_ms": setting.value for name, setting in backend.timeouts_ms.items()
           if name in ("connect", "client", "server")},
    }
    if not any(server.check for server in backend.servers):
        notes.append(Note(backend.place, f"backend {backend.name} checks none of its servers: a dead server is "
                                         "never marked down (backend-down is predicted with HAProxy's default timers)"))
    return {"vrrp": vrrp, "track": _track(config, instance, notes), "haproxy": haproxy}


def _track(config: LoadBalancerConfig, instance: VrrpInstance, notes: list[Note]) -> dict:
    """The check that notices a dead HAProxy: the instance's track script that looks at HAProxy
    (else its first), a track file, or none."""
    scripts = config.keepalived.scripts
    tracked = [(entry, scripts[entry.name]) for entry in instance.track_scripts if entry.name in scripts]
    for entry in instance.track_scripts:
        if entry.name not in scripts:
            notes.append(Note(entry.place, f"track_script {entry.name} names no vrrp_script: Keepalived ignores it"))
    if reason := weights_ignored(config, instance):
        for entry, script in tracked:
            if tracked_weight(entry, script):
                notes.append(Note(entry.place, f"Keepalived ignores the weighted track script {entry.name}: {reason}"))
        tracked = [(entry, script) for entry, script in tracked if not tracked_weight(entry, script)]
    if not tracked:
        if instance.track_files:
            return {"mechanism": "external"}
        return {"mechanism": "none"}
    # the first to notice a dead HAProxy decides: of the scripts that name it (else of all), a FAULT
    # (no weight) before a weight, then the shortest fall x interval
    watching = [(e, s) for e, s in tracked if "haproxy" in s.script] or tracked
    entry, script = min(watching, key=lambda each: (tracked_weight(*each) != 0, each[1].fall * seconds_used(each[1].interval)))
    if len(tracked) > 1:
        notes.append(Note(entry.place, f"{instance.name} tracks {len(tracked)} scripts; predictions use {script.name}, "
                                       "the first to notice a dead HAProxy"))
    weight = tracked_weight(entry, script)
    probe = "process" if PROCESS_CHECKS.search(script.script) else "service"
    return {"mechanism": "script", "interval": float(seconds_used(script.interval)), "fall": script.fall, "rise": script.rise,
            "weight": weight, "probe": probe}


def _target(frontend: Proxy, backend: Proxy, servers: list[Server], notes: list[Note]) -> dict:
    """What a client asks: / on the VIP's port; answers told apart by HAProxy's persistence cookie
    when the backend sets one, else not at all (an application that names no server)."""
    bind = frontend.binds[0]
    target: dict = {"scheme": "https" if bind.tls else "http", "path": "/", "expect_status": 200}
    if bind.tls:
        target["verify_tls"] = False
    cookies = {server.name: server.cookie for server in servers if server.cookie}
    if backend.cookie.value and len(cookies) == len(servers):
        target["identity"] = {"kind": "cookie", "name": backend.cookie.value, "markers": cookies}
    else:
        target["identity"] = {"kind": "none"}
    notes.append(Note(frontend.place, "clients are measured asking GET / for status 200: set target.path and "
                                      "target.expect_status in the topology if the application answers otherwise"))
    return target
