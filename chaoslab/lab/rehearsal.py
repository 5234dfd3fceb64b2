"""Rehearsal: a pair's own keepalived.conf and haproxy.cfg, as written, in the netns lab.

`chaoslab lab up --configs DIR`: DIR/<node>/keepalived/ is the content of that load balancer's
/etc/keepalived (keepalived.conf and whatever it includes or runs), DIR/<node>/haproxy/ the
content of its /etc/haproxy. Each load balancer gets a copy of both under its root (never
modified), and its daemons run in a mount namespace and a PID namespace of the node's own, held
by a small process (the holder, PID 1 there, reaping orphans), in which

- the copies are /etc/keepalived and /etc/haproxy, so the configs' absolute paths work as written;
- /run is the node's <root>/run and /tmp its <root>/tmp: two HAProxy with `pidfile /run/haproxy.pid`
  and the same stats socket do not collide, and the lab reads each one's /run from outside;
- /proc shows the node's processes only: a track script `killall -0 haproxy` or `pidof haproxy`
  sees its own node's HAProxy (in the shared PID namespace it would see the other's, and a dead
  HAProxy would never move the VIP);
- the node's root stays at its own absolute path (the lab's pid files, logs and notify FIFO).

The holder is made at lab up and again after a halt (which kills it with everything else of the
node); its mounts live in its mount namespace only and go with it, so `lab down`, which kills
every process of the node's network namespace, leaves nothing mounted. Keepalived runs on a small
configuration of the lab's that includes the user's and adds the lab's notify FIFO (a second
global_defs), so that chaoslab.lab.vrrp.NotifyLog reads the states as in the lab's own mode.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import select
import shutil
import signal as signals
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template

from chaoslab.commands import CommandResult, run
from chaoslab.configs import keepalived
from chaoslab.configs.sources import HOST_DIRS, NodeFiles, node_files
from chaoslab.errors import ChaoslabError
from chaoslab.lab.namespaces import namespace_pids, own_pid, signal_pids
from chaoslab.lab.topology import NodeSpec, Topology, renderer
from chaoslab.lab.transport.netns import NetnsTransport
from chaoslab.lab.vrrp import VRRP_STATE_LOG

# DIR/<node>/<folder> -> where the host has it, under the node's root and, inside, under /
CONFIG_DIRS = {folder: str(host).lstrip("/") for folder, host in HOST_DIRS.items()}
PRIVATE_DIRS = ("tmp",)  # besides /run, which comes last: it may cover the node's root
LAB_DIR = "etc/chaoslab"  # the lab's own files on a rehearsed load balancer, beside the user's, not among them
KEEPALIVED_CONFIG = f"{LAB_DIR}/keepalived.conf"  # what the lab starts Keepalived on: theirs, included
NOTIFY_SCRIPT = f"{LAB_DIR}/vrrp_notify.sh"
CONSOLE_STATES = f"{LAB_DIR}/keepalived-states.sh"  # the fallback: states from Keepalived's own output
NOTIFY_FIFO = "run/chaoslab/vrrp-notify.fifo"
HOLDER_LOCK = ".holder.lock"  # under the node's root: one holder per node, whoever asks first
# the notify FIFOs Keepalived knows; it writes VRRP states to both, and ignores a second of one kind
FIFO_KEYWORDS = ("vrrp_notify_fifo", "notify_fifo")
# what systemd-tmpfiles makes in /run at boot on a Debian host for the load balancers' packages
TMPFILES = ("/usr/lib/tmpfiles.d/haproxy.conf", "/usr/lib/tmpfiles.d/keepalived.conf")
HOLDER_TIMEOUT = 10.0
PIDFILE_ALERT = "'pidfile' already specified. Continuing."

# Run by `unshare --pid --fork --mount-proc --mount --propagation private` in the node's network
# namespace, as PID 1 of its new PID namespace: $1 the node's root, $2 a Python, $3 the reaper, then
# the directories bound from the root onto the same path at / (CONFIG_DIRS, PRIVATE_DIRS).
# The namespace files under /run/netns are let go first (this copy of the mount table would keep
# other labs' namespaces alive); /run is bound last, then the root again at its own path if /run
# covered it: from the working directory, which still is the root (--no-canonicalize: mount must
# not turn "." back into a path, which would name the new /run's).
HOLDER_SETUP = r"""
set -e
root=$1 python=$2 reaper=$3
shift 3
cd "$root"
for dir in "$@"; do mount --bind "./$dir" "/$dir"; done
for file in /run/netns/*; do umount -l "$file" 2>/dev/null || :; done
umount -l /run/netns 2>/dev/null || :
mount --bind ./run /run
if [ "$(stat -c %d:%i .)" != "$(stat -L -c %d:%i "$root" 2>/dev/null)" ]; then
    mkdir -p "$root"
    mount --no-canonicalize --bind . "$root"
fi
echo ready
exec "$python" -c "$reaper" </dev/null >/dev/null 2>&1
"""
# PID 1 of the node's PID namespace: orphans (a daemon's, once it forked) are reparented to it
REAPER = """
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""
# The lab's notify script (as provision/templates/vrrp_notify.sh), for the topology's instance only:
# a user's keepalived.conf may carry more instances than the one of the VIP.
NOTIFY_TEMPLATE = """#!/bin/sh
# Keepalived on ${node} (a rehearsal of its own keepalived.conf) starts this once and writes every
# VRRP state change to the FIFO $$1: INSTANCE "<name>" MASTER|BACKUP|FAULT|STOP <priority>.
# One line per change of ${instance_text}, "<unix time> <state>", read by chaoslab.
umask 022
while read -r kind name state _priority; do
    [ "$$kind" = INSTANCE ] || continue
    ${instance_test}
    case "$$state" in
        MASTER | BACKUP | FAULT | STOP) printf '%s %s\\n' "$$(date +%s.%N)" "$$state" >> ${root}/${state_log} ;;
    esac
done < "$$1"
"""
# The fallback when the user's config sets both notify FIFOs: Keepalived's own output, read line by
# line as it prints and passed on to its log, stamped when a line says a state was entered. (Weaker:
# Keepalived prints no line for the FAULT state an instance starts in.)
CONSOLE_TEMPLATE = """#!/bin/sh
# Keepalived on ${node} (a rehearsal): its keepalived.conf sets both notify FIFOs, so the lab reads the
# states of ${instance_text} from Keepalived's own lines "(<instance>) Entering <state> STATE".
"$$@" 2>&1 | while IFS= read -r line; do
    printf '%s\\n' "$$line"
    case "$$line" in
        *"${pattern} Entering MASTER STATE"*) state=MASTER ;;
        *"${pattern} Entering BACKUP STATE"*) state=BACKUP ;;
        *"${pattern} Entering FAULT STATE"*) state=FAULT ;;
        *) continue ;;
    esac
    printf '%s %s\\n' "$$(date +%s.%N)" "$$state" >> ${root}/${state_log}
done
"""


def check_configs(configs: Path, topology: Topology) -> None:
    """DIR holds each load balancer's keepalived.conf and haproxy.cfg where the rehearsal looks."""
    folders = sorted(files.node for files in node_files(configs))
    balancers = sorted(spec.name for spec in topology.loadbalancers)
    if folders != balancers:
        raise ChaoslabError(f"{configs} holds the configs of {', '.join(folders)}, the topology's load balancers are "
                            f"{', '.join(balancers)}: import the topology from this folder (chaoslab import)")
    for target in ("/" + relative for relative in (*CONFIG_DIRS.values(), *PRIVATE_DIRS)):
        if not os.path.isdir(target):
            raise ChaoslabError(f"{target} does not exist on this machine: the rehearsal shows a node's own "
                                "directory there (install haproxy and keepalived: provision/setup-host.sh)")


def user_fifos(node_files: NodeFiles) -> set[str]:
    """The notify FIFO keywords the node's own keepalived.conf sets in global_defs, its includes read
    as Keepalived reads them (from the node's /etc/keepalived)."""
    parsed = keepalived.parse(node_files.keepalived, config_id=node_files.node, resolve=node_files.host_path)
    return {child.keyword for block in parsed.all("global_defs") for child in block.children
            if child.keyword in FIFO_KEYWORDS}


def vrrp_states_source(node_files: NodeFiles) -> str:
    """How the lab reads the VRRP states next to the user's config: through the notify FIFO keyword the
    user's does not set (Keepalived writes both kinds), or "console" when it sets both."""
    free = [keyword for keyword in FIFO_KEYWORDS if keyword not in user_fifos(node_files)]
    return free[0] if free else "console"


def install_loadbalancer(root: Path, source: Path, spec: NodeSpec, topology: Topology) -> str:
    """Copy the node's /etc/keepalived and /etc/haproxy under its root, make its private /run and /tmp
    and write the lab's Keepalived configuration; return where the VRRP states come from."""
    for folder, relative in CONFIG_DIRS.items():
        shutil.copytree(source / folder, root / relative, symlinks=True)
    keep_secret(root / CONFIG_DIRS["keepalived"])
    for relative in renderer().RUNTIME_DIRS:
        (root / relative).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    for path, mode, user, group in boot_directories():
        target = root / path.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        shutil.chown(target, user, group)
        os.chmod(target, mode)
    (root / LAB_DIR).mkdir(parents=True, exist_ok=True)
    states = vrrp_states_source(NodeFiles(spec.name, source))
    instance = topology.vrrp_instance
    context = {"node": spec.name, "root": str(root), "state_log": VRRP_STATE_LOG,
               "instance_text": f"instance {instance}" if instance else "every instance"}
    lines = [f"# Keepalived on {spec.name} in chaoslab's rehearsal: the node's own keepalived.conf as written,"]
    if states == "console":
        lines.append(f"# which sets both notify FIFOs: the lab reads Keepalived's own lines ({CONSOLE_STATES}).")
    else:
        lines += ["# then the lab's notify FIFO of the kind it does not set (after theirs: Keepalived ignores a",
                  "# second FIFO of one kind, so that a FIFO of the user's own always wins)."]
    lines.append("include /etc/keepalived/keepalived.conf")
    if states == "console":
        context["pattern"] = f"({instance})" if instance else ")"
        write_script(root / CONSOLE_STATES, Template(CONSOLE_TEMPLATE).substitute(context))
    else:
        context["instance_test"] = f"[ \"$name\" = '\"{instance}\"' ] || continue" if instance else ":"
        write_script(root / NOTIFY_SCRIPT, Template(NOTIFY_TEMPLATE).substitute(context))
        lines += ["", "global_defs {", f"    {states} {root / NOTIFY_FIFO}",
                  f"    {states}_script {root / NOTIFY_SCRIPT}", "}"]
    (root / KEEPALIVED_CONFIG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(root / KEEPALIVED_CONFIG, 0o600)
    return states


def keep_secret(folder: Path) -> None:
    """The copy's files that are no program readable by root alone: keepalived.conf and its includes
    hold the VRRP password (on the host they may be 0644; here they sit in the lab's state). Scripts keep
    their modes: a script_user that is not root runs them."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and not os.stat(path).st_mode & 0o111:
            os.chmod(path, 0o600)


def write_script(path: Path, text: str) -> None:
    """A script of the lab's own, executable."""
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o755)


def boot_directories() -> list[tuple[Path, int, str, str]]:
    """The /run directories a Debian host's systemd-tmpfiles makes for haproxy and keepalived ("d"
    lines: /run/haproxy, where Debian's haproxy.cfg puts its stats socket), whose owner exists here."""
    found = []
    for name in TMPFILES:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 5 or fields[0] != "d" or not fields[1].startswith("/run/"):
                continue
            try:
                pwd.getpwnam(fields[3])
                grp.getgrnam(fields[4])
                found.append((Path(fields[1]), int(fields[2], 8), fields[3], fields[4]))
            except (KeyError, ValueError):
                continue
    return found


def install_webserver(root: Path, spec: NodeSpec, topology: Topology) -> None:
    """A stand-in for the user's application: the lab's Apache (its own instance config, its page
    naming the node) on the node's address and port, answering 200 with that page at every path
    (HAProxy's health check asks a path of the user's: /healthz, /ok.html ...)."""
    render = renderer()
    balancer_networks = {interface.network for balancer in topology.loadbalancers for interface in balancer.interfaces}
    address = next((interface.address for interface in spec.interfaces if interface.network in balancer_networks),
                   spec.interfaces[0].address)
    context = {"root": str(root), "node": spec.name, "fqdn": f"{spec.name}.{topology.domain}",
               "address": address, "port": str(spec.port)}
    for relative in render.RUNTIME_DIRS:
        (root / relative).mkdir(parents=True, exist_ok=True)
    for template, (relative, mode) in render.ROLE_FILES["webserver"].items():
        text = Template((render.TEMPLATE_DIR / template).read_text(encoding="utf-8")).substitute(context)
        if template == "httpd-lab.conf":
            text += "# the rehearsal's stand-in answers every path with its page\nFallbackResource /index.html\n"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        os.chmod(target, mode)


class Enclosure:
    """A rehearsed load balancer's own mount and PID namespaces, kept by its holder process."""

    def __init__(self, namespace: str, root: Path):
        self.namespace = namespace  # the node's network namespace
        self.root = root

    def holder(self) -> int | None:
        """The holder's pid (this machine's number): the process of the node's network namespace that is
        PID 1 of a PID namespace of its own."""
        for pid in namespace_pids(self.namespace):
            if own_pid(pid) == 1 and pid != 1:
                return pid
        return None

    def ensure(self) -> int:
        """The holder, made first if there is none (at lab up, and after a halt killed it)."""
        if not self.root.is_dir():
            raise ChaoslabError(f"{self.namespace} has no root {self.root}: the lab is not up")
        with open(self.root / HOLDER_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self.holder() or self._start()

    def _start(self) -> int:
        """Make the holder and wait until its mounts are done (it says "ready"). setsid --fork: it is
        nobody's child here and outlives this process, as the daemons it holds do."""
        python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
        argv = ["ip", "netns", "exec", self.namespace, "setsid", "--fork",
                "unshare", "--pid", "--fork", "--mount-proc", "--mount", "--propagation", "private",
                "sh", "-c", HOLDER_SETUP, "sh", str(self.root), python, REAPER, *CONFIG_DIRS.values(), *PRIVATE_DIRS]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        process.wait()
        said = read_until(process.stdout, b"ready\n", HOLDER_TIMEOUT)
        process.stdout.close()
        pid = self.holder()
        if not said.endswith(b"ready\n") or pid is None:
            signal_pids([pid] if pid else [], signals.SIGKILL)  # its mounts go with it
            words = said.decode(errors="replace").strip() or "no word"
            raise ChaoslabError(f"the own namespaces of {self.namespace} could not be made: {words}")
        return pid

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv in the node's namespaces: its network, its mounts (its /etc/haproxy, /run...), its PIDs."""
        # --root: the target's root (entering a mount namespace from a chroot would otherwise give its real root)
        return ["nsenter", f"--target={self.ensure()}", "--mount", "--pid", "--net", "--root", "--wd=/", *argv]

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        """Run argv in the node's namespaces and wait for it."""
        return run(self.command(argv), timeout=timeout, check=check)


def read_until(stream, end: bytes, timeout: float) -> bytes:
    """What a pipe says until `end` (or its writers close it, or timeout seconds pass)."""
    said = b""
    descriptor = stream.fileno()
    deadline = time.monotonic() + timeout
    while not said.endswith(end):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([descriptor], [], [], left)[0]:
            break
        chunk = os.read(descriptor, 4096)
        if not chunk:
            break
        said += chunk
    return said


class RehearsalTransport(NetnsTransport):
    """Commands on a rehearsed load balancer run in its own namespaces, as on the user's host: `pidof
    haproxy`, `cat /run/haproxy.pid`, `ls /etc/keepalived` answer for this node alone. Monitors
    (ip monitor, tcpdump) need its network only and stay children of chaoslab (NetnsTransport.spawn)."""

    def __init__(self, namespace: str, root: Path, enclosure: Enclosure):
        super().__init__(namespace, root)
        self.enclosure = enclosure

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        return self.enclosure.run(argv, timeout, check)


def daemon_words(output: str, limit: int = 6) -> str:
    """A daemon's own last words: HAProxy's ALERT lines where it printed any, else its last lines;
    not the ALERT that the lab's -p causes (Debian's unit passes -p too: the config's pidfile is ignored)."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and PIDFILE_ALERT not in line]
    alerts = [line for line in lines if "[ALERT]" in line]
    return " | ".join((alerts or lines)[-limit:]) or "(it printed nothing)"
