"""Let Keepalived and HAProxy judge a configuration file themselves, where they are installed:
`keepalived --config-test` and `haproxy -c`, each in a network namespace of its own.

Both checks run inside `unshare --net`, so nothing reaches the host's network: no DNS query for a
server's name (a name only DNS knows fails the check, as in any host without a resolver), no
interface of the host's seen or touched.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from chaoslab.commands import CommandResult, require_binaries, run
from chaoslab.configs import keepalived
from chaoslab.errors import ChaoslabError

CHECK_TIMEOUT = 10.0
SETUP_FAILED = 125  # the check's own exit status when its namespace cannot be made

# keepalived 2.2.7 --config-test exits with KEEPALIVED_CHK_EXIT_* (lib/scheduler.h), chosen in
# config_test_exit() from the class of complaint it kept: the last class of config_err_t
# (lib/parser.h) met, which is the least severe, so a worse complaint can hide behind 5 or 6
KEEPALIVED_EXITS = {
    0: "no complaint that counts (KEEPALIVED_CHK_EXIT_OK); messages of no class, such as an include that "
       "matches no file, may remain",
    4: "keepalived cannot run this configuration: a file not found, a missing interface or a fatal error "
       "(KEEPALIVED_CHK_EXIT_CONFIG)",
    5: "configuration errors or warnings (KEEPALIVED_CHK_EXIT_CONFIG_TEST): keepalived runs despite most of "
       "them, but a missing interface can also end here: read the messages",
    6: "scripts run without script security (KEEPALIVED_CHK_EXIT_CONFIG_TEST_SECURITY): keepalived still runs "
       "them, as root unless script_user says otherwise; this status hides any other complaint: read the messages",
}
SECURITY_VIOLATION = "SECURITY VIOLATION"

# haproxy 2.6 -c (src/haproxy.c): 1 after any alert, 2 when nothing listens
HAPROXY_EXITS = {
    0: "valid: haproxy starts with it",
    1: "errors: haproxy refuses to start with it",
    2: "no error, but haproxy would not start: nothing listens (no bind, peers or log-forward)",
}
HAPROXY_MESSAGE = re.compile(r"\[(ALERT|WARNING|NOTICE)\]\s+\(\d+\) : (.*)")

# Run by sh inside the new namespaces: $1 the config, $2 the config id, $3 the number of
# interfaces, $4 the number of folders to show in place of the host's, then the interfaces, each
# folder and the host's path it stands for, and the net_namespace names. keepalived's net_namespace enters
# /var/run/netns/NAME: in a private /run each name is this namespace, so keepalived finds the
# interfaces made here and never a namespace of the host's. A dummy interface where the kernel
# has the driver, else an empty bridge: keepalived only needs the interface to exist.
KEEPALIVED_CHECK = r"""
config=$1 config_id=$2 count=$3 binds=$4
shift 4
fail() { echo "chaoslab: $*" >&2; exit 125; }
ip link set lo up || fail "cannot bring lo up"
while [ "$count" -gt 0 ]; do
    ip link add "$1" type dummy 2>/dev/null || ip link add "$1" type bridge || fail "cannot make interface $1"
    ip link set "$1" up || fail "cannot bring interface $1 up"
    shift
    count=$((count - 1))
done
while [ "$binds" -gt 0 ]; do
    mount --bind "$1" "$2" || fail "cannot show $1 at $2"
    shift 2
    binds=$((binds - 1))
done
run=$(readlink -f /var/run)
mount -t tmpfs chaoslab-check "$run" || fail "cannot mount a private $run"
mkdir "$run/netns"
for name in "$@"; do
    touch "$run/netns/$name" && mount --bind /proc/self/ns/net "$run/netns/$name" || fail "cannot name namespace $name"
done
exec keepalived --config-test --use-file "$config" --config-id "$config_id"
"""


@dataclass(frozen=True)
class Verdict:
    """What a daemon said of a configuration file."""

    command: str  # as run, shell-quoted
    exit_status: int
    ok: bool  # the daemon's check passed (exit status 0)
    warnings_only: bool  # it complained, but only of what it starts despite
    refused: bool  # the daemon would not start with it (haproxy: any failed check; keepalived: exit 4)
    meaning: str  # what that exit status means, from the daemon's source
    messages: tuple[str, ...]  # its own lines, each distinct line once, in order
    summary: str  # one line


def keepalived_verdict(path: Path, interfaces: Iterable[str], config_id: str | None = None,
                       folders: Mapping[str, Path] | None = None) -> Verdict | None:
    """keepalived --config-test on path, as the Keepalived of config_id (default: Keepalived's own,
    this machine's node name) reads it, None if keepalived is not installed.

    `keepalived -t` complains of every interface the config names that does not exist, so the
    check runs in a new network namespace (and a private /run) with an interface of each name in
    interfaces; the namespaces the config enters (net_namespace) are that namespace too. Keepalived
    2.2.7 writes the check's complaints on stderr and nothing else: -l and -D add nothing under -t.
    folders maps a host's directory (/etc/keepalived) to the folder here holding its copy: the check
    sees the copy there (private mounts), so the config's absolute includes and scripts are its own.
    Needs root (unshare). Raises ChaoslabError if path is not a file: keepalived --config-test
    exits 0 for a file that does not exist."""
    if shutil.which("keepalived") is None:
        return None
    _require_file(path, "keepalived.conf")
    require_binaries(["unshare", "ip"], purpose="keepalived's check runs in a network namespace of its own")
    names = list(dict.fromkeys(name for name in interfaces if name != "lo"))
    for name in names:
        if not 0 < len(name) < 16 or name in (".", "..") or any(char in "/: \t\n" for char in name):
            raise ChaoslabError(f"{name!r} cannot be a Linux interface name (1-15 characters, none of '/', ':' "
                                "or blanks)")
    config_id = keepalived.default_config_id() if config_id is None else config_id
    namespaces = _net_namespaces(path, config_id)
    binds = dict(folders or {})
    argv = ["unshare", "--net", "--mount", "--", "sh", "-c", KEEPALIVED_CHECK, "keepalived-check",
            host_path(path, binds), config_id, str(len(names)), str(len(binds)), *names,
            *(word for host, folder in binds.items() for word in (str(folder.absolute()), host)), *namespaces]
    result = _run(argv)
    messages = _messages(result)
    warnings_only = result.returncode == 6 and all(message.startswith(SECURITY_VIOLATION) for message in messages)
    meaning = KEEPALIVED_EXITS.get(result.returncode, "an exit status keepalived --config-test does not use")
    if result.returncode == 0:
        summary = "keepalived --config-test: " + (f"exit 0, but: {_first(messages, meaning)}" if messages else "no complaint")
    elif warnings_only:
        summary = ("keepalived --config-test: exit 6, scripts run without script security (keepalived still runs "
                   "them): set enable_script_security in global_defs")
    else:
        summary = f"keepalived --config-test: exit {result.returncode}: {_first(messages, meaning)}"
    return Verdict(shlex.join(argv), result.returncode, result.returncode == 0, warnings_only,
                   result.returncode not in KEEPALIVED_EXITS or result.returncode == 4, meaning, messages, summary)


def haproxy_verdict(path: Path, environment: Mapping[str, str] | None = None,
                    folders: Mapping[str, Path] | None = None) -> Verdict | None:
    """haproxy -c on path, None if haproxy is not installed. HAProxy runs with exactly the
    environment variables of environment (default: none), as chaoslab.configs.haproxy.parse reads
    the file, in a new network namespace; folders as for keepalived_verdict (/etc/haproxy: its errorfiles
    and certificates). Its notices, warnings and alerts are kept (no -q).
    Needs root (unshare). Raises ChaoslabError if path is not a file."""
    binary = shutil.which("haproxy")
    if binary is None:
        return None
    _require_file(path, "haproxy.cfg")
    require_binaries(["unshare"], purpose="haproxy's check runs in a network namespace of its own")
    variables = dict(environment or {})
    for name in variables:
        if not name or "=" in name:
            raise ChaoslabError(f"{name!r} cannot be the name of an environment variable")
    binds = dict(folders or {})
    shows = "".join(f"mount --bind {shlex.quote(str(folder.absolute()))} {shlex.quote(host)} && "
                    for host, folder in binds.items())
    argv = ["unshare", "--net", "--mount", "--", "sh", "-c", f'{shows}exec "$@"', "haproxy-check", "env", "-i",
            *(f"{name}={value}" for name, value in variables.items()), binary, "-c", "-f", host_path(path, binds)]
    result = _run(argv)
    messages = _messages(result)
    texts = [(match.group(1), match.group(2)) for match in map(HAPROXY_MESSAGE.fullmatch, messages) if match]
    warnings = [text for level, text in texts if level == "WARNING"]
    alerts = [text for level, text in texts if level == "ALERT"]
    meaning = HAPROXY_EXITS.get(result.returncode, "an exit status haproxy -c does not use")
    if result.returncode == 0:
        summary = "haproxy -c: valid" + (f", with {len(warnings)} warning(s): {warnings[0]}" if warnings else "")
    elif result.returncode == 1:
        summary = f"haproxy -c: invalid: {_first(alerts, meaning)}"
    else:
        summary = f"haproxy -c: exit {result.returncode}: {meaning}"
    return Verdict(shlex.join(argv), result.returncode, result.returncode == 0, result.returncode == 0 and bool(warnings),
                   result.returncode != 0, meaning, messages, summary)


def host_path(path: Path, folders: Mapping[str, Path]) -> str:
    """Where the host keeps a file of a copied folder (DIR/lb1/keepalived/x.conf: /etc/keepalived/x.conf)."""
    for host, folder in folders.items():
        if path.absolute().is_relative_to(folder.absolute()):
            return str(Path(host) / path.absolute().relative_to(folder.absolute()))
    return str(path.absolute())


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ChaoslabError(f"{path} is not a file: pass the path of a {what} to check")


def _net_namespaces(path: Path, config_id: str) -> list[str]:
    """The net_namespace names the config enters, for the check to answer to them."""
    names = [statement.name for statement in keepalived.parse(path, config_id).all("net_namespace") if statement.name]
    for name in names:
        if name in (".", "..") or "/" in name:
            raise ChaoslabError(f"{path}: net_namespace {name!r} is not a name keepalived can open under /var/run/netns")
    return list(dict.fromkeys(names))


def _run(argv: list[str]) -> CommandResult:
    result = run(argv, timeout=CHECK_TIMEOUT)
    lines = result.stderr.strip().splitlines()
    if result.returncode == SETUP_FAILED and lines and lines[-1].startswith("chaoslab: "):
        raise ChaoslabError(f"the check's namespace could not be made: {lines[-1].removeprefix('chaoslab: ')}")
    if lines and lines[-1].startswith("unshare: "):
        raise ChaoslabError(f"{lines[-1]} (the check makes a network namespace: run it as root)")
    return result


def _messages(result: CommandResult) -> tuple[str, ...]:
    """The daemon's lines, stderr then stdout, each distinct one once (keepalived reads its
    configuration once per process and repeats its complaints)."""
    lines = (line.rstrip() for line in (result.stderr + "\n" + result.stdout).splitlines())
    return tuple(dict.fromkeys(line for line in lines if line))


def _first(messages: list[str] | tuple[str, ...], fallback: str) -> str:
    """The first message, and how many more, or the fallback when there is none."""
    if not messages:
        return fallback
    more = len(messages) - 1
    return messages[0] + (f" (and {more} more)" if more else "")
