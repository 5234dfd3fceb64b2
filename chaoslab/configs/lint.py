"""What in a pair's keepalived.conf and haproxy.cfg breaks a failover, and what the fix is.

`lint` reads both load balancers' configs (model.py's LoadBalancerConfig) as Keepalived 2.2 and
HAProxy 2.6 read them, and names each problem where it was written: what is wrong (the values,
never the VRRP password), what it does to clients in a failover, and the exact change. Errors
break a failover (split brain, a VIP that never moves, a check Keepalived disables), warnings
weaken it, infos say what the configs promise (detection windows). The VRRP instances of the
two nodes pair by virtual_router_id on the same address family (by name, then by VIP, when the
ids differ: that is the first finding).

What Keepalived does with a value is taken from its 2.2.7 sources (vrrp/vrrp.c
vrrp_complete_instance and vrrp_check_packet, vrrp/vrrp_parser.c, lib/notify.c
check_script_secure) and keepalived.conf(5); the messages it logs are quoted as it logs them.

Pure apart from reading the copied check scripts' mode bits (`files`) and looking programs up
(`which`, this machine's PATH by default: pass a function to look them up elsewhere).
"""

from __future__ import annotations

import ipaddress
import math
import re
import shlex
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from chaoslab.configs.keepalived import command_argv
from chaoslab.configs.model import (
    AUTH_PASS_LENGTH,
    OWNER_PRIORITY,
    LoadBalancerConfig,
    Proxy,
    Server,
    VrrpInstance,
    VrrpScript,
    advert_int_used,
    preempts,
    seconds_used,
    secret_mask,
    tracked_weight,
    weights_ignored,
)
from chaoslab.configs.sources import NodeFiles
from chaoslab.configs.statements import Place, Statement
from chaoslab.measure.theory import MAX_PRIORITY, expected_outage, master_down_interval

__all__ = ["SEVERITIES", "Finding", "exit_status", "format_findings", "lint"]

SEVERITIES = ("error", "warning", "info")
NONLOCAL_BIND = {4: "net.ipv4.ip_nonlocal_bind", 6: "net.ipv6.ip_nonlocal_bind"}
SHELLS = {"sh", "bash", "dash", "ksh", "zsh"}
NOTIFY_KEYWORDS = ("notify", "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify_deleted",
                   "notify_master_rx_lower_pri")
# a word Keepalived passes literally to the program where a shell would see an operator
SHELL_WORD = re.compile(r"^(\d*[<>]|&&|\|\|?|;|&$)|[;|]$|\$\(|`")
GARP_FIX = ("add `vrrp_garp_master_refresh 60` to global_defs (or `garp_master_refresh 60` in the instance); "
            "`vrrp_higher_prio_send_advert` in global_defs also makes the node that stays MASTER re-announce at once")

Which = Callable[[str], str | None]


@dataclass(frozen=True)
class Finding:
    """One problem: where it is written (place None: a default, nothing written), on which node,
    what is wrong, what it does to clients in a failover, and the change that fixes it."""

    rule: str
    severity: str
    place: Place | None
    node: str | None
    message: str
    consequence: str
    fix: str


def lint(pair: Sequence[LoadBalancerConfig], files: Mapping[str, Path] | None = None,
         sysctls: Mapping[str, Mapping[str, str]] | None = None, which: Which | None = None) -> list[Finding]:
    """The findings of a pair's configs: errors first, then by file and line.

    files: for each node, its folder DIR/<node> holding the copies of its /etc/keepalived and
    /etc/haproxy (sources.py's layout), where a check script's path is looked up and its mode
    bits read; without it, nothing is said of scripts under those folders.
    sysctls: for each node, the sysctls known of it (name -> value), e.g. net.ipv4.ip_nonlocal_bind.
    which: where a program a check script runs is found (a bare name or an absolute path ->
    its path, or None); this machine's PATH by default.
    """
    if len(pair) != 2:
        raise ValueError(f"lint compares the two load balancers of a pair; got {len(pair)} configs")
    context = _Context(files or {}, sysctls or {}, which or shutil.which)
    findings: list[Finding] = []
    for config, other in (pair, pair[::-1]):
        findings += _node_findings(config, other, context)
    findings += _pair_findings(pair[0], pair[1])
    return sorted(_without_secrets(findings, pair), key=_order)


def format_findings(findings: Iterable[Finding]) -> list[str]:
    """One block per finding: `SEVERITY file:line [rule] message`, then its consequence and fix indented."""
    blocks = []
    for finding in findings:
        where = str(finding.place) if finding.place else f"{finding.node or 'pair'} (no line: a default)"
        blocks.append(f"{finding.severity.upper()} {where} [{finding.rule}] {finding.message}\n"
                      f"    consequence: {finding.consequence}\n"
                      f"    fix: {finding.fix}")
    return blocks


def exit_status(findings: Iterable[Finding]) -> int:
    """1 when any finding is an error, else 0."""
    return 1 if any(finding.severity == "error" for finding in findings) else 0


# ---- shared ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Context:
    files: Mapping[str, Path]
    sysctls: Mapping[str, Mapping[str, str]]
    which: Which


def _order(finding: Finding) -> tuple:
    place = finding.place
    return (SEVERITIES.index(finding.severity), place is None, str(place.file) if place else finding.node or "",
            place.line if place else 0, finding.rule)


def _without_secrets(findings: list[Finding], pair: Sequence[LoadBalancerConfig]) -> list[Finding]:
    """No finding is built from a password; this also masks one a script line or a name might quote."""
    mask = secret_mask(pair)
    return [replace(f, message=mask(f.message), consequence=mask(f.consequence), fix=mask(f.fix)) for f in findings]


def _finding(rule: str, severity: str, place: Place | None, node: str | None, message: str, consequence: str,
             fix: str) -> Finding:
    return Finding(rule, severity, place, node, message, consequence, fix)


def _statement_at(statements: Iterable[Statement], place: Place) -> Statement | None:
    """The statement written at that place (a block's own line), searched through the tree."""
    for statement in statements:
        if statement.place == place:
            return statement
        if found := _statement_at(statement.children, place):
            return found
    return None


def _instance_statement(config: LoadBalancerConfig, instance: VrrpInstance) -> Statement:
    found = _statement_at(config.keepalived.parsed.statements, instance.place)
    return found if found is not None else Statement("vrrp_instance", (instance.name,), instance.place)


def _global_flag(config: LoadBalancerConfig, keyword: str) -> Statement | None:
    return next((child for block in config.keepalived.parsed.all("global_defs") for child in block.all(keyword)), None)


def _global_defs_place(config: LoadBalancerConfig) -> Place | None:
    block = config.keepalived.parsed.first("global_defs")
    return block.place if block is not None else None


def _family(instance: VrrpInstance) -> int:
    if instance.addresses:
        return instance.addresses[0].address.version
    try:
        return ipaddress.ip_address(str(instance.unicast_src_ip.value)).version
    except ValueError:
        return 4


def _version(instance: VrrpInstance) -> int:
    return int(instance.version.value or 2)


def _priority(instance: VrrpInstance) -> int:
    return int(instance.priority.value)


def _num(value: float) -> str:
    return f"{value:g}"


def _vip_text(instance: VrrpInstance) -> str:
    return ", ".join(str(address.address) for address in instance.addresses) or "no address"


# ---- one node ---------------------------------------------------------------------------------

def _node_findings(config: LoadBalancerConfig, other: LoadBalancerConfig, context: _Context) -> list[Finding]:
    findings: list[Finding] = []
    for instance in config.keepalived.instances:
        findings += _instance_findings(config, instance)
        findings += _tracking_findings(config, instance)
    findings += _duplicate_vrids(config)
    scripts, broken = _script_findings(config, context)
    findings += scripts
    findings += _track_timing(config, other, broken)
    findings += _haproxy_findings(config, other, context)
    return findings


def _instance_findings(config: LoadBalancerConfig, instance: VrrpInstance) -> list[Finding]:
    node, name = config.node, instance.name
    statement = _instance_statement(config, instance)
    findings = []
    state_line = statement.first("state")
    if state_line is not None and state_line.words and state_line.words[0] not in ("MASTER", "BACKUP"):
        word = state_line.words[0]
        findings.append(_finding(
            "state-unknown", "warning", state_line.place, node,
            f"{name}: `state {word}` is not MASTER or BACKUP (Keepalived's states are case-sensitive): Keepalived "
            f"logs \"({name}) unknown state '{word}', defaulting to BACKUP\"",
            f"{node} starts as BACKUP and waits a master down interval before it takes the VIP, whatever the line meant",
            f"write `state {word.upper()}`" if word.upper() in ("MASTER", "BACKUP")
            else "write `state BACKUP` or `state MASTER`"))
    authentication = statement.first("authentication")
    kind = authentication.first("auth_type") if authentication is not None else None
    if kind is not None and kind.words and kind.words[0] not in ("AH", "PASS"):
        word = kind.words[0]
        findings.append(_finding(
            "auth-type-unknown", "warning", kind.place, node,
            f"{name}: `auth_type {word}` is not AH or PASS (case-sensitive): Keepalived logs \"({name}) unknown "
            f"authentication type '{word}'\" and {node} sends and expects no authentication",
            "the other node, if it authenticates, discards this node's adverts and this node its: split brain",
            f"write `auth_type {word.upper()}`" if word.upper() in ("AH", "PASS") else "write `auth_type PASS`"))
    if instance.nopreempt.value and instance.state.value == "MASTER":
        findings.append(_finding(
            "nopreempt-state-master", "error", instance.nopreempt.place, node,
            f"{name} has nopreempt with state MASTER ({instance.state.place or 'the default'}): Keepalived 2.2 clears "
            f"nopreempt and logs \"({name}) Warning - nopreempt will not work with initial state MASTER - clearing\"",
            f"{node} preempts after all: when it comes back after a failure it takes the VIP back at once, a second "
            "interruption for clients, the failback nopreempt was meant to avoid",
            f"set `state BACKUP` in {name} on both nodes and keep nopreempt (keepalived.conf(5): \"For this to work, "
            "the initial state must not be MASTER\")"))
    elif instance.nopreempt.value and _priority(instance) == OWNER_PRIORITY:
        findings.append(_finding(
            "nopreempt-state-master", "error", instance.nopreempt.place, node,
            f"{name} has nopreempt with priority 255 (the address owner): Keepalived logs \"({name}) nopreempt is "
            "incompatible with priority 255. resetting nopreempt\"",
            f"{node} preempts after all: when it comes back it takes the VIP back at once, a second interruption",
            f"give {name} a priority below 255 (and state BACKUP) on {node}"))
    if instance.preempt_delay.value and instance.state.value == "MASTER":
        findings.append(_finding(
            "preempt-delay-state-master", "warning", instance.preempt_delay.place, node,
            f"{name} has preempt_delay {_num(float(instance.preempt_delay.value))} with state MASTER: Keepalived logs "
            f"\"({name}) Warning - preempt delay will not work with initial state MASTER - clearing\"",
            f"{node} takes the VIP back as soon as it returns, without the delay the line asks for",
            f"set `state BACKUP` in {name} (preempt_delay only works from BACKUP)"))
    advert = float(instance.advert_int.value)
    if _version(instance) == 2 and advert != advert_int_used(instance):
        used = master_down_interval(advert_int_used(instance), _priority(instance), 2)
        findings.append(_finding(
            "advert-int-fraction", "warning", instance.advert_int.place, node,
            f"{name}: advert_int {_num(advert)} under VRRPv2, which carries whole seconds: Keepalived logs "
            f"\"({name}) VRRPv2 advertisement interval {advert:f}s must be an integer. rounding\" and uses "
            f"{_num(advert_int_used(instance))} s",
            f"as backup, {node} declares the master dead after {used:.2f} s "
            f"(3 x {_num(advert_int_used(instance))} s + skew), not the "
            f"{master_down_interval(advert, _priority(instance), 2):.2f} s the line suggests",
            f"write `advert_int {_num(advert_int_used(instance))}` (or `vrrp_version 3` in global_defs on both nodes for "
            "sub-second adverts)"))
    auth_pass = str(instance.auth_pass.value or "")
    if instance.auth_type.value and _version(instance) == 3:
        findings.append(_finding(
            "auth-ignored-v3", "warning", instance.auth_type.place, node,
            f"{name} sets authentication under VRRPv3: Keepalived logs \"({name}) VRRP version 3 does not support "
            "authentication. Ignoring.\"",
            "none by itself; the password protects nothing (any host on the network can send adverts)",
            f"remove the authentication block from {name}"))
    elif instance.auth_type.value and len(auth_pass) > AUTH_PASS_LENGTH:
        findings.append(_finding(
            "auth-pass-truncated", "warning", instance.auth_pass.place, node,
            f"{name}: auth_pass is {len(auth_pass)} characters; VRRPv2 carries {AUTH_PASS_LENGTH} and Keepalived "
            f"silently uses the first {AUTH_PASS_LENGTH} (it logs only \"Truncating auth_pass to {AUTH_PASS_LENGTH} "
            "characters\")",
            f"none while both nodes truncate alike; the characters after the {AUTH_PASS_LENGTH}th protect nothing and a "
            "partner whose password differs only there still matches",
            f"shorten auth_pass to at most {AUTH_PASS_LENGTH} characters, the same on both nodes"))
    return findings


def _tracking_findings(config: LoadBalancerConfig, instance: VrrpInstance) -> list[Finding]:
    node, name = config.node, instance.name
    statement = _instance_statement(config, instance)
    scripts = config.keepalived.scripts
    findings = []
    for entry in instance.track_scripts:
        if entry.name not in scripts:
            findings.append(_finding(
                "track-script-undefined", "error", entry.place, node,
                f"{name} tracks {entry.name}, which no vrrp_script defines: Keepalived logs \"({name}) track script "
                f"{entry.name} not found, ignoring...\"",
                f"{name} does not track it: if it was to watch HAProxy, a dead HAProxy on {node} never moves the VIP",
                f"define `vrrp_script {entry.name} {{ ... }}` or track an existing one "
                f"({', '.join(sorted(scripts)) or 'none defined'})"))
    reason = weights_ignored(config, instance)
    if reason:
        for entry in instance.track_scripts:
            weight = tracked_weight(entry, scripts.get(entry.name))
            if weight:
                findings.append(_finding(
                    "track-weight-ignored", "error", entry.place, node,
                    f"{name} tracks {entry.name} with weight {weight}, but {reason}: Keepalived logs \"({name}) ignoring "
                    f"tracked script {entry.name} with weights due to ...\" and stops tracking it",
                    f"{entry.name} no longer affects {name}: if it watches HAProxy, a dead HAProxy on {node} never moves the VIP",
                    f"track {entry.name} without a weight (`weight 0`: a failure puts {name} in FAULT)"
                    + (" or add `sync_group_tracking_weight` to the vrrp_sync_group" if "sync group" in reason else "")))
    untracked = not instance.track_scripts and not instance.track_files and not any(
        statement.first(keyword) for keyword in ("track_process", "track_bfd"))
    if untracked and instance.addresses:
        findings.append(_finding(
            "track-none", "warning", instance.place, node,
            f"{name} tracks no script, file or process: only {node}'s death or Keepalived's moves the VIP",
            f"a dead HAProxy on the master never moves the VIP: clients of {_vip_text(instance)} get refused "
            "connections until someone restarts HAProxy",
            f"add a vrrp_script that checks HAProxy (e.g. `script \"/usr/bin/killall -0 haproxy\"`, `interval 1`, "
            f"`fall 2`, `rise 2`) and `track_script {{ NAME }}` in {name}"))
    for entry in instance.track_scripts:
        script = scripts.get(entry.name)
        if script is not None and script.timeout is not None and seconds_used(script.timeout) > seconds_used(script.interval):
            findings.append(_finding(
                "track-timeout-long", "warning", script.place, node,
                f"vrrp_script {script.name}: timeout {_num(script.timeout)} s is longer than its interval "
                f"{seconds_used(script.interval)} s",
                f"a hung check (a frozen HAProxy) counts as failed only after {seconds_used(script.timeout)} s, so "
                f"{name} notices after up to {script.fall} x {seconds_used(script.timeout)} s instead of "
                f"{script.fall} x {seconds_used(script.interval)} s; the runs overlap (Keepalived logs \"Track script "
                f"{script.name} is already running, expect idle\")",
                f"set `timeout` to at most `interval` ({seconds_used(script.interval)}) in vrrp_script {script.name}"))
    return findings


def _duplicate_vrids(config: LoadBalancerConfig) -> list[Finding]:
    """Two instances of one node with one virtual_router_id on one interface: Keepalived's VRRP process
    refuses to start (vrrp.c check_vrid_conflicts)."""
    findings = []
    instances = [i for i in config.keepalived.instances if i.virtual_router_id.value is not None]
    for index, first in enumerate(instances):
        for second in instances[index + 1:]:
            if (first.virtual_router_id.value != second.virtual_router_id.value or _family(first) != _family(second)
                    or first.interface.value != second.interface.value):
                continue
            if first.unicast != second.unicast:
                continue
            if first.unicast and (
                    not ({p.value for p in first.unicast_peers} & {p.value for p in second.unicast_peers})
                    or (first.unicast_src_ip.value and second.unicast_src_ip.value
                        and first.unicast_src_ip.value != second.unicast_src_ip.value)):
                continue  # unicast: a conflict only from one source address to a common peer
            vrid = first.virtual_router_id.value
            logged = (f"({first.name}) duplicate VRID conflict with {second.name} VRID {vrid}" if first.unicast else
                      f"{first.name} and {second.name} both use VRID {vrid} with IPv{_family(first)} on interface "
                      f"{first.interface.value}")
            findings.append(_finding(
                "vrid-duplicate", "error", second.virtual_router_id.place, config.node,
                f"{first.name} ({first.virtual_router_id.place}) and {second.name} both use virtual_router_id {vrid} "
                f"on {first.interface.value}" + (" to the same unicast peer" if first.unicast else "")
                + f": Keepalived logs \"{logged}\"",
                f"Keepalived's VRRP process on {config.node} refuses the configuration and stops: {config.node} holds "
                "no VIP at all, and nothing fails over to it",
                f"give {second.name} a virtual_router_id no other instance on {first.interface.value} uses (the same "
                "on both nodes)"))
    return findings


# ---- check scripts ----------------------------------------------------------------------------

def _script_findings(config: LoadBalancerConfig, context: _Context) -> tuple[list[Finding], set[str]]:
    """The tracked scripts' findings, and the names of those an error makes useless (disabled, or not
    testing what they say)."""
    node = config.node
    scripts = config.keepalived.scripts
    used = [scripts[name] for name in dict.fromkeys(e.name for i in config.keepalived.instances for e in i.track_scripts)
            if name in scripts]
    findings = []
    broken: set[str] = set()
    insecure = False
    for script in used:
        found, unsafe = _one_script(config, script, context)
        if any(finding.severity == "error" for finding in found):
            broken.add(script.name)
        findings += found
        insecure = insecure or unsafe
    notifies = [child for instance in config.keepalived.instances
                for child in _instance_statement(config, instance).children if child.keyword in NOTIFY_KEYWORDS]
    if (used or notifies) and not config.keepalived.script_security.value:
        place = _global_defs_place(config) or (used[0].place if used else notifies[0].place)
        findings.append(_finding(
            "script-security-off", "warning", place, node,
            "scripts run but global_defs has no enable_script_security: Keepalived 2.2 logs \"SECURITY VIOLATION - "
            "scripts are being executed but script_security not enabled."
            + (" There are insecure scripts.\"" if insecure else "\""),
            "none on the failover by itself (the scripts still run, as root unless a keepalived_script user exists "
            "or script_user is set); a script a non-root user may write lets that user run anything as root on "
            f"{node}, including stopping the VIP",
            "add `enable_script_security` (and `script_user keepalived_script` with that user created) to global_defs, "
            "with every script and its folders owned by root and writable by root only"))
    return findings, broken


def _one_script(config: LoadBalancerConfig, script: VrrpScript, context: _Context) -> tuple[list[Finding], bool]:
    """What Keepalived does with one tracked vrrp_script: whether it finds, may run and can run it."""
    node, name = config.node, script.name
    findings: list[Finding] = []
    line = script.script.strip()
    block = _statement_at(config.keepalived.parsed.statements, script.place)
    written = block.first("script") if block is not None else None
    words = list(command_argv(written)) if written is not None else _split(line)
    if not words:
        return findings, False
    program = words[0]
    if written is not None and len(written.words) > 1:
        # lib/notify.c set_script_params_array re-splits only the word after `script`
        findings.append(_finding(
            "script-unquoted", "error", written.place, node,
            f"vrrp_script {name}: `script {line}` is not quoted, and Keepalived takes only the word after `script` "
            f"as the command: it runs `{' '.join(words)}` without {' '.join(written.words[1:])}",
            f"{words[0]} runs without its arguments: the check does not test what the line says (it may always "
            f"fail, keeping {node} in FAULT, or always pass, so a dead HAProxy never moves the VIP)",
            f"quote the whole command: `script \"{line}\"`"))
        line = " ".join(words)
    if script.interval != seconds_used(script.interval) or (
            script.timeout is not None and script.timeout != seconds_used(script.timeout)):
        findings.append(_finding(
            "script-interval-fraction", "warning", script.place, node,
            f"vrrp_script {name}: interval {_num(script.interval)}"
            + (f", timeout {_num(script.timeout)}" if script.timeout is not None else "")
            + ": Keepalived 2.2 reads whole seconds (it logs \"invalid number\") and uses interval "
            f"{seconds_used(script.interval)} s"
            + (f", timeout {seconds_used(script.timeout)} s" if script.timeout is not None else ""),
            f"{name} runs every {seconds_used(script.interval)} s: a dead HAProxy is noticed after up to "
            f"{script.fall} x {seconds_used(script.interval)} s, not the {_num(script.fall * script.interval)} s the "
            "line suggests",
            f"write whole seconds (`interval {seconds_used(script.interval)}`) and reach a faster detection with "
            "`fall`/`rise`, or check from a process that writes a track_file"))
    if program.startswith("<") and program[1:].lstrip(" \t").startswith("/"):
        # lib/notify.c: a script starting "</" only tests that a file opens; it runs through system(), /bin/sh -c
        if "/dev/tcp/" in line or "/dev/udp/" in line:
            findings.append(_finding(
                "script-dev-tcp-sh", "warning", script.place, node,
                f"vrrp_script {name} runs `{line}` through /bin/sh -c: /dev/tcp is bash's, and Debian's /bin/sh "
                "(dash) opens it as a file that does not exist",
                f"under dash the check always fails: {node} stays in FAULT and never holds the VIP (on both nodes: "
                "no VIP anywhere)",
                f"write `script \"/bin/bash -c '{line}'\"` in vrrp_script {name}"))
        return findings, False
    shell = Path(program).name in SHELLS and len(words) > 2 and words[1] == "-c"
    operators = [word for word in words if SHELL_WORD.search(word)]
    if operators and not shell:
        first = SHELL_WORD.search(program) is not None
        findings.append(_finding(
            "script-shell-syntax", "error", script.place, node,
            f"vrrp_script {name}: `{line}` is shell syntax ({' '.join(operators)}), but Keepalived runs no shell: it "
            "splits the line on blanks and executes the first word"
            + (f"; it logs \"Cannot find script {program} in path - disabling\"" if first else
               f", passing {' '.join(operators)} to {program} as plain arguments"),
            (f"Keepalived disables {name}: a dead HAProxy on {node} never moves the VIP" if first else
             f"{program} does not test what the line says: the check may always fail ({node} stays in FAULT, "
             "no VIP on it) or always pass (a dead HAProxy never moves the VIP)"),
            f"write `script \"/bin/bash -c '{line}'\"` in vrrp_script {name}, or put the commands in an executable "
            "script under /etc/keepalived"))
        if first:
            return findings, False
    findings += _program_findings(config, script, program, context)
    unsafe = False
    copy = _copied(config, program, context)
    if copy is not None and copy.is_file():
        mode_findings, unsafe = _mode_findings(config, script, program, copy)
        findings += mode_findings
    return findings, unsafe


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _copied(config: LoadBalancerConfig, path: str, context: _Context) -> Path | None:
    root = context.files.get(config.node)
    if root is None or not path.startswith("/"):
        return None
    return NodeFiles(config.node, Path(root)).host_path(path)


def _program_findings(config: LoadBalancerConfig, script: VrrpScript, program: str, context: _Context) -> list[Finding]:
    node, name = config.node, script.name
    if "/" not in program:
        found = context.which(program)
        if found is None:
            return [_finding(
                "script-not-found", "warning", script.place, node,
                f"vrrp_script {name} runs {program}, a bare name not found in PATH here: where {node} lacks it too, "
                f"Keepalived logs \"Cannot find script {program} in path - disabling\"",
                f"Keepalived disables {name}: a dead HAProxy on {node} never moves the VIP",
                f"write the program's absolute path in vrrp_script {name} and make sure {node} has it")]
        return [_finding(
            "script-path-search", "info", script.place, node,
            f"vrrp_script {name} runs {program} by its bare name: Keepalived searches PATH and logs \"WARNING - script "
            f"`{program}` resolved by path search to `{found}`. Please specify full path.\"",
            "none while the search finds the same program on both nodes",
            f"write `{found}` (its path on {node}) instead of `{program}` in vrrp_script {name}")]
    copy = _copied(config, program, context)
    if copy is not None:
        if copy.is_file():
            return []
        return [_finding(
            "script-not-found", "error", script.place, node,
            f"vrrp_script {name} runs {program}, which is not among {node}'s files imported ({copy}): Keepalived logs "
            f"\"check_script_secure could not find script '{program}' - disabling\" (or \"Script {program} cannot be "
            "accessed\")",
            f"Keepalived disables {name}: a dead HAProxy on {node} never moves the VIP",
            f"install {program} on {node} (executable, owned by root), or correct the path in vrrp_script {name}")]
    if not program.startswith("/"):
        return []
    if context.files.get(node) is None and _copied_dir(program):
        return []  # the node's /etc/keepalived was not imported: nothing to say of it
    if context.which(program) is None:
        return [_finding(
            "script-not-found", "warning", script.place, node,
            f"vrrp_script {name} runs {program}, which is not among the files imported and not on this machine: "
            f"check that {node} has it",
            f"if {node} lacks it, Keepalived disables {name} (\"Script {program} cannot be accessed\"): a dead HAProxy "
            f"on {node} never moves the VIP",
            f"install {program} on {node}, or keep the script under /etc/keepalived so that it is imported with the config")]
    return []


def _copied_dir(path: str) -> bool:
    return any(path.startswith(f"/etc/{folder}/") for folder in ("keepalived", "haproxy"))


def _mode_findings(config: LoadBalancerConfig, script: VrrpScript, program: str, copy: Path) -> tuple[list[Finding], bool]:
    """The copied script's mode bits, as check_script_secure reads the host's (the copies' owners are
    this machine's, so only the mode bits say anything)."""
    node, name = config.node, script.name
    mode = copy.stat().st_mode
    findings = []
    if not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        findings.append(_finding(
            "script-not-executable", "error", script.place, node,
            f"vrrp_script {name} runs {program}, which is not executable (mode {stat.filemode(mode)}): Keepalived logs "
            f"\"WARNING - script '{program}' is not executable for uid:gid ... - disabling.\"",
            f"Keepalived disables {name}: a dead HAProxy on {node} never moves the VIP",
            f"chmod 755 {program} on {node} (or write `script \"/bin/sh {program}\"`)"))
    writable = [(path, path.stat().st_mode) for path in _chain(copy, config, program)]
    unsafe = [(path, m) for path, m in writable  # a folder with the sticky bit is safe (check_security)
              if m & (stat.S_IWOTH | stat.S_IWGRP) and not (path.is_dir() and m & stat.S_ISVTX)]
    if unsafe and config.keepalived.script_security.value:
        path, m = unsafe[0]
        who = "anyone" if m & stat.S_IWOTH else "its group"
        findings.append(_finding(
            "script-insecure", "error" if m & stat.S_IWOTH else "warning", script.place, node,
            f"vrrp_script {name}: {path} is writable by {who} (mode {stat.filemode(m)}) and enable_script_security is on: "
            f"Keepalived logs \"Unsafe permissions found for script '{program}' - disabling.\""
            + ("" if m & stat.S_IWOTH else " (unless its group on the host is root)"),
            f"Keepalived disables {name}: a dead HAProxy on {node} never moves the VIP",
            f"chmod go-w {program} (and its folders) on {node}, owned by root"))
    return findings, bool(unsafe)


def _chain(copy: Path, config: LoadBalancerConfig, program: str) -> list[Path]:
    """The copied file and its folders up to the copied /etc/keepalived (or /etc/haproxy)."""
    depth = program.rstrip("/").count("/") - 2  # /etc/keepalived/x.sh -> the file and the keepalived folder
    chain = [copy]
    for _ in range(max(0, depth)):
        chain.append(chain[-1].parent)
    return chain


# ---- HAProxy ----------------------------------------------------------------------------------

def _haproxy_findings(config: LoadBalancerConfig, other: LoadBalancerConfig, context: _Context) -> list[Finding]:
    vips = {address.ip: address for instance in config.keepalived.instances for address in instance.addresses}
    vips |= {address.ip: address for instance in other.keepalived.instances for address in instance.addresses}
    findings = []
    frontends = [p for p in config.haproxy.frontends if any(b.host is None or b.host in vips for b in p.binds)]
    for frontend in frontends:
        for bind in frontend.binds:
            if bind.host in vips:
                findings += _bind_findings(config, frontend, bind, vips[bind.host].address.version, context)
    backends: dict[str, Proxy] = {}
    for frontend in frontends:
        for backend in _backends_of(config, frontend):
            backends.setdefault(backend.name, backend)
    for backend in backends.values():
        findings += _backend_findings(config, backend)
    return findings


def _bind_findings(config: LoadBalancerConfig, frontend: Proxy, bind, version: int, context: _Context) -> list[Finding]:
    node = config.node
    statement = _statement_at(config.haproxy.parsed.statements, bind.place)
    words = statement.words[1:] if statement is not None else ()
    if bind.transparent or "transparent" in words or "freebind" in words:
        return []
    sysctl = NONLOCAL_BIND[version]
    known = context.sysctls.get(node, {}).get(sysctl)
    if known is not None and known.strip() != "0":
        return []
    address = f"[{bind.host}]:{bind.port}" if version == 6 else f"{bind.host}:{bind.port}"
    text = (f"{frontend.kind} {frontend.name} binds the VIP {address} explicitly"
            + (f", and {sysctl} is 0 on {node}" if known is not None else
               f"; a config cannot show whether {sysctl}=1 on {node}"))
    return [_finding(
        "bind-nonlocal", "error" if known is not None else "warning", bind.place, node, text,
        f"while {node} does not hold the VIP its HAProxy cannot bind {address} and refuses to start (\"cannot bind "
        "socket\"), at boot or any restart there: when the VIP moves to it, clients get refused connections",
        f"set `{sysctl}=1` on {node} (sysctl.d), or add `freebind` (or `transparent`) to this bind line, "
        f"or bind `*:{bind.port}`")]


def _backends_of(config: LoadBalancerConfig, frontend: Proxy) -> list[Proxy]:
    if frontend.kind == "listen":
        return [frontend] if frontend.servers else []
    names = [frontend.default_backend.value] if frontend.default_backend.value else []
    statement = _statement_at(config.haproxy.parsed.statements, frontend.place)
    if statement is not None:
        names += [child.words[0] for child in statement.all("use_backend") if child.words]
    found = (config.haproxy.backend(str(name)) for name in dict.fromkeys(names))
    return [backend for backend in found if backend is not None and backend.servers]


def _backend_findings(config: LoadBalancerConfig, backend: Proxy) -> list[Finding]:
    node = config.node
    findings = []
    checked = [server for server in backend.servers if server.check]
    if not checked:
        findings.append(_finding(
            "server-no-check", "warning", backend.place, node,
            f"{backend.kind} {backend.name}: none of its servers ({', '.join(s.name for s in backend.servers)}) has `check`",
            "HAProxy never marks a dead server down: it keeps getting its share of the requests, and they fail, "
            "for as long as the server is dead",
            f"add `check` to each server line of {backend.name} (or `default-server check` in it)"))
    else:
        for server in backend.servers:
            if not server.check:
                findings.append(_finding(
                    "server-no-check", "warning", server.place, node,
                    f"{backend.kind} {backend.name}: server {server.name} has no `check` while others do",
                    f"when {server.name} dies it keeps getting requests, and they fail, until it comes back",
                    f"add `check` to server {server.name}"))
        slowest = max(checked, key=_check_window)
        findings.append(_finding(
            "check-timing", "info", slowest.place, node,
            f"{backend.kind} {backend.name}: HAProxy marks a dead server down after fall x inter = "
            f"{slowest.fall.value} x {_num(float(slowest.inter_ms.value) / 1000)} s = {_check_window(slowest):.2f} s"
            + (f" ({slowest.name}, the slowest)" if len(checked) > 1 else f" ({slowest.name})"),
            f"requests HAProxy sends to a dead server within those {_check_window(slowest):.2f} s fail"
            + ("" if backend.redispatch.value else " (no redispatch)"),
            "lower `inter` or `fall` on the server lines to shorten it (more checks); `option redispatch` and "
            "`retry-on` retry the failed requests"))
    http = backend.mode.value == "http"
    if not backend.redispatch.value or (http and not backend.retry_on.value):
        wanted = (("option redispatch", backend.redispatch.value),
                  ("retry-on conn-failure empty-response response-timeout", not http or backend.retry_on.value))
        missing = [line for line, ok in wanted if not ok]
        window = max((_check_window(s) for s in checked), default=math.inf)
        findings.append(_finding(
            "backend-no-redispatch", "warning", backend.place, node,
            f"{backend.kind} {backend.name} (mode {backend.mode.value}) has no {' and no '.join(missing)}",
            "requests in flight to a dying server fail instead of being retried on another one, until the check marks "
            "it down" + (f" (fall x inter = {window:.2f} s)" if math.isfinite(window) else " (never: no check)"),
            f"add `{'` and `'.join(missing)}` to {backend.name}"
            + ("" if http else " (retry-on beyond conn-failure needs mode http)")))
    return findings


def _check_window(server: Server) -> float:
    return int(server.fall.value) * float(server.inter_ms.value) / 1000


def _track_timing(config: LoadBalancerConfig, other: LoadBalancerConfig, broken: set[str]) -> list[Finding]:
    """How long a dead HAProxy on this node goes unnoticed, and when the other node takes over (not
    said of a script an error finding makes useless)."""
    findings = []
    scripts = config.keepalived.scripts
    for instance in config.keepalived.instances:
        if not instance.addresses:
            continue
        partner = _partner(instance, other)
        for entry in instance.track_scripts:
            script = scripts.get(entry.name)
            if script is None or script.name in broken:
                continue
            interval = seconds_used(script.interval)
            low, high = (script.fall - 1) * interval, script.fall * interval
            weight = tracked_weight(entry, script)
            text = (f"{instance.name} on {config.node}: {script.name} runs every {interval} s, fall {script.fall}: "
                    f"a dead HAProxy is noticed after {_num(low)}-{_num(high)} s")
            if partner is None:
                consequence = "then no partner instance takes the VIP (none on the other node)"
            else:
                settings = {"vrrp": {"version": _version(partner), "advert_int": advert_int_used(partner)},
                            "track": {"mechanism": "script", "interval": interval, "fall": script.fall, "weight": weight}}
                prediction = expected_outage("haproxy-kill", settings, _priority(partner), _priority(instance),
                                             preempts(partner))
                consequence = f"when {other.node} (priority {_priority(partner)}) is the backup: {prediction.formula}"
            findings.append(_finding(
                "track-timing", "info", entry.place, config.node, text, consequence,
                f"lower `interval` or `fall` in vrrp_script {script.name} to notice sooner (more checks)"))
    return findings


def _partner(instance: VrrpInstance, other: LoadBalancerConfig) -> VrrpInstance | None:
    return next((i for i in other.keepalived.instances if i.virtual_router_id.value == instance.virtual_router_id.value
                 and _family(i) == _family(instance)), None)


# ---- both nodes --------------------------------------------------------------------------------

def _pair_findings(first: LoadBalancerConfig, second: LoadBalancerConfig) -> list[Finding]:
    pairs, renamed, alone = _pair_instances(first, second)
    findings = []
    for a, b in renamed:
        findings.append(_finding(
            "vrid-mismatch", "error", a.virtual_router_id.place or a.place, first.node,
            f"{first.node}'s {a.name} has virtual_router_id {a.virtual_router_id.value}, {second.node}'s {b.name} "
            f"({b.virtual_router_id.place or b.place}) has {b.virtual_router_id.value}",
            "each node's adverts belong to another virtual router for the other: both become MASTER and hold "
            f"{_vip_text(a)} (split brain): clients reach whichever node their ARP cache names",
            f"set the same virtual_router_id (1-255, unused by other instances on that network) in both nodes' {a.name}"))
    for config, instance in alone:
        if instance.addresses:
            findings.append(_finding(
                "instance-unpaired", "warning", instance.place, config.node,
                f"{config.node}'s {instance.name} (virtual_router_id {instance.virtual_router_id.value}, VIP "
                f"{_vip_text(instance)}) has no partner instance on the other node",
                f"the VIP lives on {config.node} only: when {config.node} fails, nothing takes it over",
                "add the same vrrp_instance (same virtual_router_id, VIPs, advert_int, authentication) to the other node"))
    for a, b in pairs:
        findings += _compare(first, a, second, b)
        findings += _priorities(first, a, second, b)
        findings += _weights(first, a, second, b) + _weights(second, b, first, a)
        findings += _garp(first, a) + _garp(second, b)
    return findings


def _pair_instances(first: LoadBalancerConfig, second: LoadBalancerConfig):
    """(paired by virtual_router_id, paired by name or VIP although their ids differ, unpaired)."""
    left, right = list(first.keepalived.instances), list(second.keepalived.instances)

    def take(match) -> list[tuple[VrrpInstance, VrrpInstance]]:
        taken = []
        for a in list(left):
            candidates = [b for b in right if match(a, b)]
            if candidates:
                b = max(candidates, key=lambda b: (len(_vips(a) & _vips(b)), a.interface.value == b.interface.value,
                                                   a.name == b.name))
                taken.append((a, b))
                left.remove(a)
                right.remove(b)
        return taken

    pairs = take(lambda a, b: a.virtual_router_id.value is not None
                 and a.virtual_router_id.value == b.virtual_router_id.value and _family(a) == _family(b))
    renamed = take(lambda a, b: a.name == b.name) + take(lambda a, b: bool(_vips(a) & _vips(b)))
    alone = [(first, a) for a in left] + [(second, b) for b in right]
    return pairs, renamed, alone


def _vips(instance: VrrpInstance) -> set[str]:
    return {address.ip for address in instance.addresses}


def _compare(first: LoadBalancerConfig, a: VrrpInstance, second: LoadBalancerConfig, b: VrrpInstance) -> list[Finding]:
    """The settings both nodes' adverts must agree on (vrrp.c vrrp_check_packet drops a mismatching advert)."""
    findings = []
    name, one, two = a.name, first.node, second.node
    split = (f"each node discards the other's adverts: both become MASTER and hold {_vip_text(a)} (split brain): "
             "clients reach whichever node their ARP cache names, and connections break each time it changes")

    def mismatch(rule: str, place: Place | None, message: str, fix: str, consequence: str = split,
                 severity: str = "error") -> None:
        findings.append(_finding(rule, severity, place or a.place, one, message, consequence, fix))

    def where(setting) -> str:
        return str(setting.place) if setting.place else "the default"

    if _version(a) != _version(b):
        mismatch("version-mismatch", a.version.place or b.version.place,
                 f"{name}: VRRP version {_version(a)} on {one} ({where(a.version)}), {_version(b)} on {two} "
                 f"({where(b.version)}): Keepalived logs \"({name}) wrong version. Received {_version(b)} and expect "
                 f"{_version(a)}\"",
                 "set the same `vrrp_version` in global_defs (or `version` in the instance) on both nodes")
        return findings  # the other fields mean different things under each version
    version = _version(a)
    advert_a, advert_b = _num(advert_int_used(a)), _num(advert_int_used(b))
    if advert_a != advert_b:
        if version == 2:
            mismatch("advert-int-mismatch", a.advert_int.place or b.advert_int.place,
                     f"{name}: advert_int {advert_a} s on {one} ({where(a.advert_int)}), {advert_b} s on "
                     f"{two} ({where(b.advert_int)}) under VRRPv2: Keepalived logs \"({name}) advertisement interval "
                     "mismatch\" and drops the advert",
                     f"set the same advert_int in {name} on both nodes")
        else:
            mismatch("advert-int-mismatch", a.advert_int.place or b.advert_int.place,
                     f"{name}: advert_int {advert_a} s on {one}, {advert_b} s on {two} under VRRPv3",
                     f"set the same advert_int in {name} on both nodes",
                     consequence="a VRRPv3 backup adopts the master's interval (RFC 5798), so the failover time depends on "
                                 "which node is master: the measured outage differs between the two directions",
                     severity="warning")
    if version == 2:
        findings += _compare_auth(first, a, second, b, split)
    vips_a, vips_b = _vips(a), _vips(b)
    if vips_a != vips_b:
        only_a, only_b = sorted(vips_a - vips_b), sorted(vips_b - vips_a)
        text = "; ".join(part for part in (f"only {one} has {', '.join(only_a)}" if only_a else "",
                                           f"only {two} has {', '.join(only_b)}" if only_b else "") if part)
        mismatch("vip-mismatch", (a.addresses[0].place if a.addresses else a.place),
                 f"{name}: the virtual_ipaddress lists differ ({text}): Keepalived logs \"({name}) ip address associated "
                 "with VRID not present in MASTER advert\" (or \"expected N VIPs but received M\")",
                 f"list the same addresses in {name}'s virtual_ipaddress on both nodes")
    else:
        by_ip = {address.ip: address for address in b.addresses}
        for address in a.addresses:
            partner = by_ip[address.ip]
            if address.address.network.prefixlen != partner.address.network.prefixlen:
                mismatch("vip-prefix-mismatch", address.place,
                         f"{name}: VIP {address.ip} is /{address.address.network.prefixlen} on {one}, "
                         f"/{partner.address.network.prefixlen} on {two} ({partner.place})",
                         f"write the same prefix for {address.ip} on both nodes",
                         consequence="adverts carry addresses only, so VRRP agrees; but the node holding the VIP adds a "
                                     "different connected route, so what it reaches through the VIP's NIC changes with "
                                     "each failover",
                         severity="warning")
            own_a = address.interface in (None, a.interface.value)
            own_b = partner.interface in (None, b.interface.value)
            if own_a != own_b or (not own_a and address.interface != partner.interface):
                dev_a = address.interface or a.interface.value
                dev_b = partner.interface or b.interface.value
                mismatch("vip-interface-mismatch", address.place,
                         f"{name}: VIP {address.ip} goes on {dev_a} on {one} "
                         f"({'the VRRP interface' if own_a else 'not the VRRP interface'}), on {dev_b} on {two} "
                         f"({'the VRRP interface' if own_b else 'not the VRRP interface'}, {partner.place})",
                         f"put {address.ip} on the same network's NIC on both nodes (`dev` in virtual_ipaddress)",
                         consequence="when the VIP moves, it lands on a NIC of another network on one of the nodes: "
                                     "clients of the VIP reach nothing there",
                         severity="error" if own_a != own_b else "warning")
    findings += _compare_unicast(first, a, second, b, split)
    return findings


def _compare_auth(first: LoadBalancerConfig, a: VrrpInstance, second: LoadBalancerConfig, b: VrrpInstance,
                  split: str) -> list[Finding]:
    """VRRPv2 authentication: the type and the 8 bytes on the wire; the passwords are compared, never shown."""
    name, one, two = a.name, first.node, second.node
    type_a, type_b = _auth_type(a), _auth_type(b)
    if type_a != type_b:
        return [_finding(
            "auth-type-mismatch", "error", a.auth_type.place or b.auth_type.place or a.place, one,
            f"{name}: auth_type {type_a or 'none'} on {one}, {type_b or 'none'} on {two}"
            f" ({b.auth_type.place or b.place}): Keepalived logs \"({name}) received a ... auth, expecting ...!\"",
            split, f"write the same authentication block (auth_type and auth_pass) in {name} on both nodes, or none on either")]
    if type_a is None:
        return []
    pass_a, pass_b = str(a.auth_pass.value), str(b.auth_pass.value)
    if pass_a == pass_b:
        return []
    if pass_a[:AUTH_PASS_LENGTH] != pass_b[:AUTH_PASS_LENGTH]:
        return [_finding(
            "auth-pass-mismatch", "error", a.auth_pass.place or a.place, one,
            f"{name}: the auth_pass values on {one} and {two} ({b.auth_pass.place}) differ (within the "
            f"{AUTH_PASS_LENGTH} characters VRRPv2 carries): Keepalived logs \"({name}) received an invalid passwd!\"",
            split, f"write the same auth_pass (at most {AUTH_PASS_LENGTH} characters) in {name} on both nodes")]
    return [_finding(
        "auth-pass-match-truncated", "info", a.auth_pass.place or a.place, one,
        f"{name}: the auth_pass values on {one} and {two} ({b.auth_pass.place}) differ only after the "
        f"{AUTH_PASS_LENGTH}th character, which Keepalived cuts off: they match on the wire",
        "none: both nodes send and expect the same 8 characters",
        f"write the same auth_pass (at most {AUTH_PASS_LENGTH} characters) in {name} on both nodes, to say what is used")]


def _auth_type(instance: VrrpInstance) -> str | None:
    """Keepalived ignores an authentication without a password."""
    if not instance.auth_type.value or not instance.auth_pass.value:
        return None
    return str(instance.auth_type.value)


def _compare_unicast(first: LoadBalancerConfig, a: VrrpInstance, second: LoadBalancerConfig, b: VrrpInstance,
                     split: str) -> list[Finding]:
    name = a.name
    if a.unicast != b.unicast:
        uni, multi = ((first, a), (second, b)) if a.unicast else ((second, b), (first, a))
        return [_finding(
            "unicast-mismatch", "error", (uni[1].unicast_peers[0].place if uni[1].unicast_peers else uni[1].place),
            uni[0].node,
            f"{name}: {uni[0].node} sends its adverts unicast (unicast_peer), {multi[0].node} multicast "
            f"({multi[1].place}): Keepalived logs \"({name}) Expected unicast packet but received multicast packet\"",
            split, f"give {name} on {multi[0].node} a unicast_peer block (and unicast_src_ip) too, "
                   f"or remove it on {uni[0].node}")]
    findings = []
    if a.unicast:
        for (config, mine), (peer_config, peer) in (((first, a), (second, b)), ((second, b), (first, a))):
            source = peer.unicast_src_ip.value
            peers = [str(p.value) for p in mine.unicast_peers]
            if source and not _listed(str(source), peers):
                findings.append(_finding(
                    "unicast-peer-asymmetric", "error", mine.unicast_peers[0].place, config.node,
                    f"{name}: {config.node}'s unicast_peer ({', '.join(peers)}) does not list {peer_config.node}'s "
                    f"unicast_src_ip {source} ({peer.unicast_src_ip.place})",
                    f"{config.node} sends its adverts where {peer_config.node} is not: {peer_config.node} hears no "
                    f"master and takes the VIP too (split brain, {_vip_text(a)} on both nodes)",
                    f"list {source} in {name}'s unicast_peer block on {config.node}"))
    return findings


def _listed(address: str, peers: list[str]) -> bool:
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return address in peers
    for peer in peers:
        try:
            if ipaddress.ip_address(peer) == wanted:
                return True
        except ValueError:
            continue
    return False


def _ok_priority(config: LoadBalancerConfig, instance: VrrpInstance) -> int:
    """The priority while every tracked script passes: positive weights are added then."""
    base = _priority(instance)
    if base == OWNER_PRIORITY or weights_ignored(config, instance):
        return base
    scripts = config.keepalived.scripts
    bonus = sum(w for entry in instance.track_scripts if entry.name in scripts
                if (w := tracked_weight(entry, scripts[entry.name])) > 0)
    return min(MAX_PRIORITY, base + bonus) if bonus else base


def _priorities(first: LoadBalancerConfig, a: VrrpInstance, second: LoadBalancerConfig, b: VrrpInstance) -> list[Finding]:
    findings = []
    name = a.name
    if _priority(a) == _priority(b) == OWNER_PRIORITY:
        findings.append(_finding(
            "priority-owner-both", "error", a.priority.place or a.place, first.node,
            f"{name} has priority 255 (the address owner) on both nodes: Keepalived logs \"({name}) CONFIGURATION ERROR: "
            "local instance and a remote instance are both configured as address owner, please fix - reducing local "
            "priority\"",
            "both nodes claim the VIP at start and one of them lowers itself at random: which node is master is not "
            "the config's to say",
            f"give {name} priority 255 on at most one node (e.g. 150 and 100)"))
    elif _ok_priority(first, a) == _ok_priority(second, b) and preempts(a) and preempts(b):
        findings.append(_finding(
            "priority-equal", "warning", a.priority.place or a.place, first.node,
            f"{name} has the same priority {_ok_priority(first, a)} on {first.node} and {second.node} "
            f"({b.priority.place or 'the default'})",
            "a BACKUP never preempts an equal-priority master, so the node that started first keeps the VIP (and "
            "when both claim it at once, the higher IP address wins): which node is master, and so which failover "
            "the experiments measure, depends on start order",
            f"give {name} different priorities (e.g. 150 and 100), or `nopreempt` with state BACKUP on both nodes "
            "if no failback is wanted"))
    if a.state.value == b.state.value == "MASTER":
        findings.append(_finding(
            "state-master-both", "warning", a.state.place or a.place, first.node,
            f"{name} has state MASTER on both {first.node} and {second.node} ({b.state.place})",
            "each node claims the VIP at once when its Keepalived starts, with gratuitous ARPs, before it hears the "
            "other's adverts: restarting the backup's Keepalived takes the VIP from the master for a moment",
            f"set `state BACKUP` in {name} on the lower-priority node (or on both)"))
    return findings


def _weights(master_config: LoadBalancerConfig, master: VrrpInstance, backup_config: LoadBalancerConfig,
             backup: VrrpInstance) -> list[Finding]:
    """Whether a weighted check failing on the master moves the VIP: the master's priority must fall
    below the backup's, and the backup must preempt."""
    if weights_ignored(master_config, master):
        return []
    top, other = _ok_priority(master_config, master), _ok_priority(backup_config, backup)
    if top < other and preempts(backup):
        return []  # this node is master only while the other is down
    findings = []
    scripts = master_config.keepalived.scripts
    for entry in master.track_scripts:
        script = scripts.get(entry.name)
        weight = tracked_weight(entry, script) if script is not None else 0
        if not weight:
            continue
        lowered = top - weight if weight > 0 else max(1, top + weight)
        how = (f"adds {weight} while it succeeds" if weight > 0 else f"subtracts {-weight} when it fails")
        if not preempts(backup):
            findings.append(_finding(
                "track-weight-nopreempt", "error", entry.place, master_config.node,
                f"{master.name}: {entry.name} {how} (weight {weight}), but {backup_config.node}'s {backup.name} has "
                f"nopreempt ({backup.nopreempt.place})",
                f"a failing {entry.name} on {master_config.node} (a dead HAProxy, if it checks HAProxy) only lowers its "
                f"priority to {lowered}; a nopreempt backup never takes the VIP from a live master: the VIP stays on a "
                "node that serves nobody",
                f"track {entry.name} without a weight (`weight 0`: a failure puts {master.name} in FAULT and the "
                "backup takes over at once)"))
        elif lowered >= other:
            findings.append(_finding(
                "track-weight-too-small", "error", entry.place, master_config.node,
                f"{master.name}: {entry.name} {how} (weight {weight}): when it fails {master_config.node}'s priority goes "
                f"from {top} to {lowered}, not below {backup_config.node}'s {other}",
                f"a failing {entry.name} on {master_config.node} (a dead HAProxy, if it checks HAProxy) never moves "
                "the VIP: clients get refused connections from the master until it is repaired",
                (f"make the failure lower it by at least {top - other + 1} (`weight -{top - other + 1}`), "
                 "or use `weight 0` (a failure puts it in FAULT)") if weight < 0 else
                (f"a positive weight moves the VIP only if it exceeds the gap between the base priorities "
                 f"({_priority(master)} - {_priority(backup)}) and both nodes track the check: use "
                 f"`weight {max(1, _priority(master) - _priority(backup) + 1)}` on both nodes, or `weight 0` (FAULT)")))
    return findings


def _garp(config: LoadBalancerConfig, instance: VrrpInstance) -> list[Finding]:
    if not instance.addresses or instance.garp_master_refresh.value:
        return []
    statement = _instance_statement(config, instance)
    if statement.first("higher_prio_send_advert") or _global_flag(config, "vrrp_higher_prio_send_advert"):
        return []
    return [_finding(
        "garp-refresh-none", "warning", instance.place, config.node,
        f"{instance.name} on {config.node} sets no gratuitous ARP refresh (no vrrp_garp_master_refresh in global_defs, "
        "no garp_master_refresh in the instance) and no higher_prio_send_advert",
        "after a split brain heals, the node that stays MASTER was MASTER all along and sends no new gratuitous ARP "
        "unless it happens to hear the other's advert before that one steps down: clients and switches that learnt "
        "the demoted node's MAC keep sending to it until their ARP entries expire (minutes)",
        GARP_FIX)]
