"""What one load balancer's keepalived.conf and haproxy.cfg configure, with the daemons' defaults.

Built from the parsers' statements (keepalived.py, haproxy.py): VRRP instances, track scripts
and files, virtual addresses, gratuitous ARP; HAProxy's frontends, backends and servers with
their check timing and retry policy. Each value keeps the place it was written (None: the
daemon's default), so that the importer and the linter can point at the line. The defaults are
Keepalived 2.2's and HAProxy 2.6's own. Pure functions of statements; no I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from chaoslab.configs.statements import Note, ParsedConfig, Place, Statement

T = TypeVar("T")

# Keepalived 2.2's defaults (keepalived.conf(5))
ADVERT_INT = 1.0
VRRP_VERSION = 2
PRIORITY = 100
OWNER_PRIORITY = 255  # the address owner's: the default priority of `state MASTER`, and its default state
GARP_MASTER_DELAY = 5.0
SCRIPT_INTERVAL = 1.0
SCRIPT_FALL = 1
SCRIPT_RISE = 1
AUTH_PASS_LENGTH = 8  # VRRPv2 simple authentication carries 8 bytes: Keepalived truncates longer ones

# HAProxy 2.6's defaults (configuration.txt, "5.2. Server and default-server options")
CHECK_INTER_MS = 2000.0
CHECK_FALL = 3
CHECK_RISE = 2
RETRIES = 3
TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0}
PROXY_SECTIONS = ("frontend", "backend", "listen")
TCP_FAMILIES = ("", "ipv4", "ipv6", "tcp", "tcp4", "tcp6")  # address prefixes of a TCP address (none: a bare one)


@dataclass(frozen=True)
class Setting:
    """A value and where it was written (place None: the daemon's default)."""

    value: object
    place: Place | None = None


@dataclass(frozen=True)
class VrrpScript:
    """A vrrp_script block: the command, how often it runs and how many results change its state."""

    name: str
    script: str
    place: Place
    interval: float = SCRIPT_INTERVAL
    fall: int = SCRIPT_FALL
    rise: int = SCRIPT_RISE
    weight: int = 0
    timeout: float | None = None
    user: str | None = None


@dataclass(frozen=True)
class Tracked:
    """A track_script, track_file or track_interface line of an instance, with its weight if it gives one."""

    name: str
    place: Place
    weight: int | None = None


@dataclass(frozen=True)
class VirtualAddress:
    """One line of a virtual_ipaddress block."""

    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    place: Place
    interface: str | None = None  # its `dev`, if given: the instance's interface otherwise

    @property
    def ip(self) -> str:
        return str(self.address.ip)


@dataclass(frozen=True)
class VrrpInstance:
    name: str
    place: Place
    state: Setting
    interface: Setting
    virtual_router_id: Setting
    priority: Setting
    advert_int: Setting
    version: Setting
    nopreempt: Setting
    preempt_delay: Setting
    unicast_src_ip: Setting
    unicast_peers: tuple[Setting, ...]
    auth_type: Setting
    auth_pass: Setting = field(repr=False)  # a secret: never in a printed line
    addresses: tuple[VirtualAddress, ...] = ()
    track_scripts: tuple[Tracked, ...] = ()
    track_files: tuple[Tracked, ...] = ()
    track_interfaces: tuple[Tracked, ...] = ()
    garp_master_delay: Setting = Setting(GARP_MASTER_DELAY)
    garp_master_refresh: Setting = Setting(0.0)

    @property
    def unicast(self) -> bool:
        return bool(self.unicast_peers)


@dataclass(frozen=True)
class KeepalivedConfig:
    path: Path
    router_id: Setting
    instances: tuple[VrrpInstance, ...]
    scripts: dict[str, VrrpScript]
    track_files: dict[str, Setting]  # name -> its file
    script_security: Setting
    script_user: Setting
    parsed: ParsedConfig


@dataclass(frozen=True)
class Bind:
    """A TCP bind line of a frontend or listen section."""

    host: str | None  # None: every address (`*:80`, `:80`)
    port: int
    tls: bool
    transparent: bool
    place: Place


@dataclass(frozen=True)
class Server:
    """A server line of a backend or listen section, with its check timing (default-server's where it says none)."""

    name: str
    host: str
    port: int | None
    place: Place
    check: bool
    inter_ms: Setting
    fall: Setting
    rise: Setting
    backup: bool = False
    cookie: str | None = None

    @property
    def address(self) -> str | None:
        """The server's IP address, if written as one (a host name is resolved at HAProxy's start)."""
        try:
            return str(ipaddress.ip_address(self.host))
        except ValueError:
            return None


@dataclass(frozen=True)
class Proxy:
    """A frontend, backend or listen section, with what it inherits from its defaults section."""

    kind: str
    name: str
    place: Place
    mode: Setting
    binds: tuple[Bind, ...] = ()
    default_backend: Setting = Setting(None)
    servers: tuple[Server, ...] = ()
    balance: Setting = Setting("roundrobin")
    redispatch: Setting = Setting(False)
    retries: Setting = Setting(RETRIES)
    retry_on: Setting = Setting(None)
    cookie: Setting = Setting(None)  # the cookie's name, if `cookie NAME insert|rewrite|prefix`
    timeouts_ms: dict[str, Setting] = field(default_factory=dict)


@dataclass(frozen=True)
class HaproxyConfig:
    path: Path
    proxies: tuple[Proxy, ...]
    parsed: ParsedConfig

    @property
    def frontends(self) -> list[Proxy]:
        return [proxy for proxy in self.proxies if proxy.kind in ("frontend", "listen")]

    def backend(self, name: str) -> Proxy | None:
        return next((p for p in self.proxies if p.kind in ("backend", "listen") and p.name == name), None)


@dataclass(frozen=True)
class LoadBalancerConfig:
    """One load balancer as its files configure it."""

    node: str
    keepalived: KeepalivedConfig
    haproxy: HaproxyConfig

    @property
    def notes(self) -> list[Note]:
        return [*self.keepalived.parsed.notes, *self.haproxy.parsed.notes]


# ---- Keepalived -------------------------------------------------------------------------------

def keepalived_config(parsed: ParsedConfig) -> KeepalivedConfig:
    """The VRRP side of a parsed keepalived.conf, with Keepalived's defaults filled in."""
    global_defs = [statement for statement in parsed.all("global_defs")]
    router_id = _setting_in(global_defs, "router_id", str)
    version = _setting_in(global_defs, "vrrp_version", int, VRRP_VERSION)
    garp_delay = _setting_in(global_defs, "vrrp_garp_master_delay", float, GARP_MASTER_DELAY)
    garp_refresh = _setting_in(global_defs, "vrrp_garp_master_refresh", float, 0.0)
    security = next((Setting(True, s.place) for d in global_defs for s in d.all("enable_script_security")),
                    Setting(False))
    script_user = _setting_in(global_defs, "script_user", str)
    scripts = {statement.name: _vrrp_script(statement) for statement in parsed.all("vrrp_script") if statement.name}
    track_files = {statement.name: Setting(statement.word("file"), statement.place)
                   for statement in parsed.all("vrrp_track_file") if statement.name}
    instances = tuple(_vrrp_instance(statement, version, garp_delay, garp_refresh)
                      for statement in parsed.all("vrrp_instance"))
    return KeepalivedConfig(parsed.path, router_id, instances, scripts, track_files, security, script_user, parsed)


def _vrrp_script(statement: Statement) -> VrrpScript:
    return VrrpScript(
        name=statement.name or "",
        script=" ".join((statement.first("script") or Statement("script", (), statement.place)).words),
        place=statement.place,
        interval=converted(statement.word("interval"), float, SCRIPT_INTERVAL),
        fall=converted(statement.word("fall"), int, SCRIPT_FALL),
        rise=converted(statement.word("rise"), int, SCRIPT_RISE),
        weight=converted(statement.word("weight"), int, 0),
        timeout=converted(statement.word("timeout"), float, None),
        user=statement.word("user"),
    )


def _vrrp_instance(statement: Statement, version: Setting, garp_delay: Setting, garp_refresh: Setting) -> VrrpInstance:
    def setting(keyword: str, convert, default=None) -> Setting:
        child = statement.first(keyword)
        if child is None or not child.words:
            return Setting(default)
        return Setting(converted(child.words[0], convert, default), child.place)

    def flag(keyword: str, undo: str) -> Setting:
        """On if the keyword is written, off again if its undoing keyword follows (the last one wins)."""
        child = next((c for c in reversed(statement.children) if c.keyword in (keyword, undo)), None)
        return Setting(child is not None and child.keyword == keyword, child.place if child is not None else None)

    authentication = statement.first("authentication")
    auth_type = Setting(None)
    auth_pass = Setting(None)
    if authentication is not None:
        if (kind := authentication.first("auth_type")) is not None and kind.words:
            # Keepalived knows AH and PASS, case-sensitive: anything else leaves no authentication
            auth_type = Setting(kind.words[0] if kind.words[0] in ("AH", "PASS") else None, kind.place)
        if (secret := authentication.first("auth_pass")) is not None and secret.words:
            auth_pass = Setting(secret.words[0], secret.place)
    peers = tuple(Setting(child.keyword, child.place) for block in statement.all("unicast_peer")
                  for child in block.children)
    own_version = setting("version", int)
    addresses = tuple(address for block in statement.all("virtual_ipaddress") for child in block.children
                      if (address := _virtual_address(child)))
    if not own_version.place and addresses and addresses[0].address.version == 6:
        version = Setting(3)  # vrrp_version applies to IPv4 instances: an IPv6 one is VRRPv3 unless it says
    # Keepalived's states are case-sensitive: an unknown one is BACKUP ("unknown state ..., defaulting to BACKUP");
    # without a state, priority 255 (the address owner) starts as MASTER; without a priority, MASTER means 255
    state = setting("state", lambda word: "MASTER" if word == "MASTER" else "BACKUP")
    priority = setting("priority", int)
    if priority.place is None:
        priority = Setting(OWNER_PRIORITY if state.value == "MASTER" else PRIORITY)
    if state.place is None:
        state = Setting("MASTER" if priority.value == OWNER_PRIORITY else "BACKUP")
    return VrrpInstance(
        name=statement.name or "",
        place=statement.place,
        state=state,
        interface=setting("interface", str),
        virtual_router_id=setting("virtual_router_id", int),
        priority=priority,
        advert_int=setting("advert_int", float, ADVERT_INT),
        version=own_version if own_version.place else version,
        nopreempt=flag("nopreempt", "preempt"),
        preempt_delay=setting("preempt_delay", float, 0.0),
        unicast_src_ip=setting("unicast_src_ip", str),
        unicast_peers=peers,
        auth_type=auth_type,
        auth_pass=auth_pass,
        addresses=addresses,
        track_scripts=_tracked(statement, "track_script"),
        track_files=_tracked(statement, "track_file"),
        track_interfaces=_tracked(statement, "track_interface"),
        garp_master_delay=_override(setting("garp_master_delay", float), garp_delay),
        garp_master_refresh=_override(setting("garp_master_refresh", float), garp_refresh),
    )


def _virtual_address(statement: Statement) -> VirtualAddress | None:
    try:
        address = ipaddress.ip_interface(statement.keyword)
    except ValueError:
        return None
    words = list(statement.words)
    interface = words[words.index("dev") + 1] if "dev" in words[:-1] else None
    return VirtualAddress(address, statement.place, interface)


def _tracked(statement: Statement, keyword: str) -> tuple[Tracked, ...]:
    tracked = []
    for block in statement.all(keyword):
        for child in block.children:
            words = list(child.words)
            weight = converted(words[words.index("weight") + 1], int, None) if "weight" in words[:-1] else None
            tracked.append(Tracked(child.keyword, child.place, weight))
    return tuple(tracked)


def _override(own: Setting, inherited: Setting) -> Setting:
    return own if own.place else inherited


def _setting_in(blocks: list[Statement], keyword: str, convert, default=None) -> Setting:
    for block in reversed(blocks):  # a later global_defs overrides an earlier one
        child = next((c for c in reversed(block.children) if c.keyword == keyword and c.words), None)
        if child is not None:
            return Setting(converted(child.words[0], convert, default), child.place)
    return Setting(default)


def converted(word: str | None, convert: Callable[[str], T], default: T) -> T:
    """A word as the daemon reads a value (an int, a float, an HAProxy time), or the default where it
    is none (absent, an undefined $PARAMETER left as written, "inf"): a config is read, never refused."""
    if word is None:
        return default
    try:
        value = convert(word)
    except (ValueError, OverflowError, TypeError):
        return default
    return default if isinstance(value, float) and not math.isfinite(value) else value


def advert_int_used(instance: VrrpInstance) -> float:
    """The advert interval Keepalived uses: VRRPv2 carries whole seconds, so it rounds to the nearest
    (half up, at least 1, at most 255); VRRPv3 counts centiseconds."""
    written = float(instance.advert_int.value)
    if int(instance.version.value or VRRP_VERSION) == 2:
        return float(min(255, max(1, math.floor(written + 0.5))))
    return max(0.01, math.floor(written * 100 + 0.5) / 100)


def preempts(instance: VrrpInstance) -> bool:
    """Whether the instance preempts a master of lower priority: Keepalived clears nopreempt with
    state MASTER or priority 255 ("nopreempt will not work with initial state MASTER - clearing")."""
    return not instance.nopreempt.value or instance.state.value == "MASTER" or instance.priority.value == OWNER_PRIORITY


def weights_ignored(config: LoadBalancerConfig, instance: VrrpInstance) -> str | None:
    """Why Keepalived drops this instance's weighted track scripts ("ignoring tracked script ... with
    weights"), if it does: the address owner, or a sync group without sync_group_tracking_weight."""
    if instance.priority.value == OWNER_PRIORITY:
        return f"{instance.name} has priority 255 (the address owner)"
    for group in config.keepalived.parsed.all("vrrp_sync_group"):
        members = {child.keyword for block in group.all("group") for child in block.children}
        members |= {word for block in group.all("group") for word in block.words}
        if instance.name in members and not (group.first("sync_group_tracking_weight") or group.first("global_tracking")):
            return f"it is in vrrp_sync_group {group.name} (sync group without sync_group_tracking_weight)"
    return None


def secret_mask(pair: Sequence[LoadBalancerConfig]) -> Callable[[str], str]:
    """A function that replaces the pair's VRRP passwords (of 4 characters or more, as whole words)
    by <auth_pass> in a text: for what quotes a config's words (a script line) on its way out."""
    secrets = {str(instance.auth_pass.value) for config in pair for instance in config.keepalived.instances
               if instance.auth_pass.value and len(str(instance.auth_pass.value)) >= 4}
    if not secrets:
        return lambda text: text
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(secret)}(?!\w)" for secret in sorted(secrets, key=len, reverse=True)))
    return lambda text: pattern.sub("<auth_pass>", text)


def tracked_weight(entry: Tracked, script: VrrpScript | None) -> int:
    """A track_script line's weight, else its vrrp_script's (keepalived.conf(5)); 0: FAULT on failure."""
    if entry.weight is not None:
        return entry.weight
    return script.weight if script is not None else 0


def seconds_used(value: float) -> int:
    """A vrrp_script interval or timeout as Keepalived 2.2 reads it: an unsigned integer (strtoul stops
    at the dot), 0 becoming 1."""
    return max(1, int(value))


# ---- HAProxy ----------------------------------------------------------------------------------

def haproxy_config(parsed: ParsedConfig) -> HaproxyConfig:
    """The proxies of a parsed haproxy.cfg, each with what its defaults section gives it."""
    proxies = []
    defaults: dict[str, Statement] = {}
    last_defaults: Statement | None = None
    for section in parsed.statements:
        if section.keyword == "defaults":
            last_defaults = section
            if section.name:
                defaults[section.name] = section
        elif section.keyword in PROXY_SECTIONS and section.name:
            words = list(section.words)
            base = defaults.get(words[words.index("from") + 1]) if "from" in words[:-1] else last_defaults
            proxies.append(_proxy(section, base))
    return HaproxyConfig(parsed.path, tuple(proxies), parsed)


def _proxy(section: Statement, defaults: Statement | None) -> Proxy:
    layers = [layer for layer in (defaults, section) if layer is not None]

    def last(keyword: str, first_word: str | None = None) -> Statement | None:
        found = None
        for layer in layers:
            for child in layer.children:
                if child.keyword == keyword and (first_word is None or child.words[:1] == (first_word,)):
                    found = child
        return found

    def option(name: str) -> Setting:
        """`option NAME` on, `no option NAME` off, the last one written winning."""
        value = Setting(False)
        for layer in layers:
            for child in layer.children:
                if child.keyword == "option" and child.words[:1] == (name,):
                    value = Setting(True, child.place)
                elif child.keyword == "no" and child.words[:2] == ("option", name):
                    value = Setting(False, child.place)
        return value

    def words_of(keyword: str, first_word: str | None = None) -> Setting:
        child = last(keyword, first_word)
        if child is None:
            return Setting(None)
        return Setting(child.words[1:] if first_word else child.words, child.place)

    default_server = [child for layer in layers for child in layer.children if child.keyword == "default-server"]
    mode = words_of("mode")
    balance = words_of("balance")
    retries = words_of("retries")
    cookie = words_of("cookie")
    timeouts = {}
    for layer in layers:
        for child in layer.children:
            if child.keyword == "timeout" and len(child.words) >= 2 and converted(child.words[1], duration_ms, None):
                timeouts[child.words[0]] = Setting(duration_ms(child.words[1]), child.place)
    return Proxy(
        kind=section.keyword,
        name=section.name or "",
        place=section.place,
        mode=Setting(mode.value[0], mode.place) if mode.value else Setting("tcp"),
        binds=tuple(bind for child in section.all("bind") if (bind := _bind(child))),
        default_backend=_first_word(words_of("default_backend")),
        servers=tuple(_server(child, default_server) for child in section.all("server") if len(child.words) >= 2),
        balance=Setting(balance.value[0], balance.place) if balance.value else Setting("roundrobin"),
        redispatch=option("redispatch"),
        retries=Setting(converted(retries.value[0], int, RETRIES), retries.place) if retries.value else Setting(RETRIES),
        retry_on=Setting(" ".join(words_of("retry-on").value), last("retry-on").place) if last("retry-on") else Setting(None),
        cookie=Setting(cookie.value[0], cookie.place) if cookie.value else Setting(None),
        timeouts_ms=timeouts,
    )


def _first_word(setting: Setting) -> Setting:
    return Setting(setting.value[0], setting.place) if setting.value else Setting(None)


def _bind(statement: Statement) -> Bind | None:
    """A TCP bind line (`VIP:80`, `*:443`, `[::]:80`, `ipv4@VIP:80`); None for a port range, a UNIX
    socket or an environment name: nothing a client of the VIP reaches."""
    family, address = _address_family(statement.words[0]) if statement.words else (None, "")
    if family not in TCP_FAMILIES:
        return None
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    host = host.strip("[]")
    words = statement.words[1:]
    return Bind(host if host not in ("", "*", "0.0.0.0", "::") else None, int(port),
                "ssl" in words, "transparent" in words or "freebind" in words, statement.place)


def _address_family(address: str) -> tuple[str | None, str]:
    """(family, the rest) of an HAProxy address: `ipv4@10.0.0.1:80` -> ("ipv4", "10.0.0.1:80"), a bare
    address -> ("", address), a word HAProxy does not read as an address (`${PORT}`) -> (None, it)."""
    prefix, at, rest = address.partition("@")
    if not at:
        return "", address
    return (prefix, rest) if re.fullmatch(r"[a-z0-9+-]+", prefix) else (None, address)


def _server(statement: Statement, default_server: list[Statement]) -> Server:
    name, address, *options = statement.words
    family, address = _address_family(address)
    host, _, port = address.rpartition(":") if re.search(r":\d+$", address) else (address, "", "")

    def check_setting(keyword: str, convert: Callable[[str], T], default: T) -> Setting:
        for source in (statement, *reversed(default_server)):
            words = list(source.words if source is not statement else options)
            if keyword in words[:-1]:
                return Setting(converted(words[words.index(keyword) + 1], convert, default), source.place)
        return Setting(default)

    checked = "check" in options or any("check" in line.words for line in default_server)
    cookie = options[options.index("cookie") + 1] if "cookie" in options[:-1] else None
    return Server(
        name=name,
        host=host.strip("[]") if family in TCP_FAMILIES else f"{family}@{address}",
        port=converted(port, int, None),
        place=statement.place,
        check=checked and "no-check" not in options,
        inter_ms=check_setting("inter", duration_ms, CHECK_INTER_MS),
        fall=check_setting("fall", int, CHECK_FALL),
        rise=check_setting("rise", int, CHECK_RISE),
        backup="backup" in options,
        cookie=cookie,
    )


def duration_ms(text: str) -> float:
    """An HAProxy time ("2s", "100ms", "1m", a bare number: milliseconds) in milliseconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an HAProxy time (a number with us, ms, s, m, h or d)")
    return float(match.group(1)) * TIME_UNITS_MS[match.group(2) or "ms"]
