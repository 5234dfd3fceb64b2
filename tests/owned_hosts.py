"""Four real hosts with systemd that chaoslab did not build: an owner's HAProxy + Keepalived pair
and two web servers, as systemd-nspawn containers in network namespaces of their own.

    with owned_pair(workdir) as pair:
        pair.ssh("ha01", ["sudo", "-n", "ip", "-o", "addr"])      # from the client namespace, as ops
        pair.exec("ha02", ["journalctl", "-u", "keepalived"])      # inside the container, as root
        pair.in_client(["curl", "-si", f"http://{pair.vip}/"])

What the hosts are (configured the way an owner would, nothing of chaoslab's on them):

- Debian 12 with systemd, journald, sshd and sudo; an ssh user `ops` with passwordless sudo and a
  key of the fixture's; each host its own ed25519 host key (a known_hosts file is written) and its
  own time zone (none of them UTC).
- ha01 and ha02: HAProxy 2.6 and Keepalived 2.2 with Debian's units; both `state BACKUP` with
  `nopreempt` (priorities 101 and 100), a track script asking systemd whether haproxy is active
  (no weight: a failure is FAULT), a sync group whose notify script only calls logger. The
  frontend binds *:80; the backend balances round robin and names the server in a cookie SRV
  (a or b) only: the pages say nothing of who served them.
- web-a: Apache (unit apache2), web-b: nginx (unit nginx), both on port 8080 serving / and /ok.html.
- NIC names of their own: ens5, and enp1s0 on ha02 and web-b; addresses in 10.203.7.0/24, the
  VIP 10.203.7.100; the controller (ssh, HTTP clients) runs in the client namespace 10.203.7.200.

How: a root file system from mmdebstrap, cached under /var/cache/chaoslab/nspawn/ by a hash of
its recipe (built under a lock into a temporary directory, then renamed), seen by each container
through an overlayfs whose upper layer is in the test's directory (the cache stays pristine); the
owner's files are written there before boot. Namespaces `PREFIX-switch` (a bridge),
`PREFIX-client` and one per host, joined by veth pairs; nothing touches the machine's network.
No systemd runs on this machine: each systemd-nspawn runs with --register=no --keep-unit in a
cgroup of its own (`PREFIX-HOST` under the cgroup of this process), since nspawn puts the
container in a `payload` cgroup beside itself, which two containers in one cgroup would share.

Teardown, always (failure, KeyboardInterrupt, a boot that failed halfway): SIGTERM to every
systemd-nspawn (it asks the container's systemd for an orderly shutdown), SIGKILL to what is left
after a timeout, then the overlays, cgroups, namespaces and temporary files. A per-prefix lock
keeps two sessions from sharing a prefix; a session killed outright leaves its resources to the
next one of the same prefix, which removes them first.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

CACHE_ROOT = Path("/var/cache/chaoslab/nspawn")
LOCK_DIR = Path("/run/lock")
SUITE = "bookworm"
VARIANT = "apt"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "haproxy", "keepalived", "apache2",
    "nginx-light", "iproute2", "iptables", "procps", "tzdata",
)
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)
# mmdebstrap's customize hook ($1: the tree): nothing of the build machine in the image, no host
# keys shared by every container (the fixture gives each host its own), no machine id.
CUSTOMIZE_HOOK = """\
set -e
rm -f "$1"/etc/ssh/ssh_host_*
: > "$1"/etc/machine-id
echo localhost > "$1"/etc/hostname
printf '127.0.0.1\\tlocalhost\\n' > "$1"/etc/hosts
: > "$1"/etc/resolv.conf
echo LANG=C.UTF-8 > "$1"/etc/default/locale
"""

SUBNET_PREFIX = 24
VIP = "10.203.7.100"
CLIENT_ADDRESS = "10.203.7.200"
CLIENT_NIC = "eth0"
USER = "ops"
AUTH_PASS = "s3cret12"  # Keepalived 2.2 keeps 8 characters of a PASS
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
PAGE = "<!DOCTYPE html>\n<html><head><title>Shop</title></head><body><h1>Shop</h1></body></html>\n"
HOST_SERVICES = ("apache2", "nginx", "haproxy", "keepalived")  # the image has them all enabled


@dataclass(frozen=True)
class HostPlan:
    """One host as its owner set it up."""

    name: str
    role: str  # loadbalancer or webserver
    address: str
    interface: str
    time_zone: str
    services: tuple[str, ...]  # the units that run there (ssh on every host besides)
    priority: int | None = None


PLAN = (
    HostPlan("ha01", "loadbalancer", "10.203.7.11", "ens5", "Asia/Tokyo", ("haproxy", "keepalived"), 101),
    HostPlan("ha02", "loadbalancer", "10.203.7.12", "enp1s0", "America/New_York", ("haproxy", "keepalived"), 100),
    HostPlan("web-a", "webserver", "10.203.7.21", "ens5", "Europe/Berlin", ("apache2",)),
    HostPlan("web-b", "webserver", "10.203.7.22", "enp1s0", "Australia/Sydney", ("nginx",)),
)
COOKIES = {"web-a": "a", "web-b": "b"}
TOPOLOGY = Path(__file__).parent / "data" / "owned-topology.json"  # the owner's description, for chaoslab
UNITS = {"web-b": {"httpd": "nginx"}}  # the inventory's chaoslab_unit_<service>, where not Debian's


@dataclass(frozen=True)
class OwnedHost:
    name: str
    namespace: str
    address: str
    interface: str
    role: str
    time_zone: str
    services: tuple[str, ...]


@dataclass
class Container:
    """A booted systemd-nspawn and what it was started with."""

    host: OwnedHost
    root: Path
    log: Path
    process: subprocess.Popen
    cgroups: list[Path]
    leader: int | None = None  # the container's PID 1, as this machine numbers it


@dataclass
class OwnedPair:
    """The four hosts, up; see the module's docstring."""

    prefix: str
    directory: Path
    inventory: Path
    topology: Path
    client_namespace: str
    vip: str
    hosts: dict[str, OwnedHost]
    key_file: Path
    known_hosts: Path
    timings: dict[str, float] = field(default_factory=dict)
    containers: dict[str, Container] = field(default_factory=dict)

    @property
    def ssh_options(self) -> list[str]:
        return ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]

    def ssh_argv(self, host: str) -> list[str]:
        """ssh to the host as ops, with the fixture's key and known_hosts (run it in the client namespace)."""
        return ["ssh", "-F", "/dev/null", "-i", str(self.key_file), "-o", "IdentitiesOnly=yes", *self.ssh_options,
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"{USER}@{self.hosts[host].address}"]

    def ssh(self, host: str, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run argv on the host over ssh as ops, from the client namespace."""
        return self.in_client([*self.ssh_argv(host), "--", shlex.join(argv)], timeout=timeout)

    def exec(self, host: str, argv: Sequence[str], timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside the host's container, as its root, in all its namespaces."""
        leader = self.containers[host].leader
        if leader is None:
            raise RuntimeError(f"{host} has not booted")
        return container_exec(leader, argv, timeout=timeout, input=input)

    def in_client(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run argv in the client namespace (this machine's file system, the hosts' network)."""
        return run(["ip", "netns", "exec", self.client_namespace, *argv], timeout=timeout)


def run(argv: Sequence[str], timeout: float = 60, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input, env=env)


def check(argv: Sequence[str], timeout: float = 60, input: str | None = None) -> str:
    result = run(argv, timeout=timeout, input=input)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
    return result.stdout


def container_exec(leader: int, argv: Sequence[str], timeout: float = 60,
                   input: str | None = None) -> subprocess.CompletedProcess[str]:
    nsenter = shutil.which("nsenter") or "nsenter"
    # the container's root and working directory too: this process's own root may be a chroot's,
    # which the container's mount namespace would otherwise show (a fresh machine's chroot does)
    return run([nsenter, "--target", str(leader), "--all", "--root", "--wd", "--", *argv], timeout=timeout, input=input,
               env={"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"})


def kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def log(message: str) -> None:
    print(f"owned hosts: {message}", file=sys.stderr, flush=True)


# --- the root file system ---------------------------------------------------------------------

def recipe() -> dict[str, object]:
    """What the cached root file system is made of; its hash names the cache."""
    return {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES), "dpkg": list(DPKG_OPTIONS),
            "customize": CUSTOMIZE_HOOK}


def recipe_key() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def mirror_arguments() -> tuple[list[str], list[str]]:
    """mmdebstrap's sources and apt options: this machine's Debian mirror when it serves bookworm
    (a snapshot mirror's Release files are past their Valid-Until: do as the machine does)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if not (sources.is_file() and any(line.startswith("Suites:") and SUITE in line.split()
                                      for line in sources.read_text(encoding="utf-8").splitlines())):
        return [], []
    options = []
    valid = run(["apt-config", "shell", "value", "Acquire::Check-Valid-Until"]).stdout
    if "false" in valid.lower():
        options.append('--aptopt=Acquire::Check-Valid-Until "false"')
    return [str(sources)], options


def remove_tree(path: Path) -> None:
    """rm -rf that stays on one file system (never into a mount left inside)."""
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def root_filesystem() -> Path:
    """The cached root file system (built if missing), to be used read-only as a lower layer."""
    key = recipe_key()
    final = CACHE_ROOT / key
    if (final / "root").is_dir():
        return final / "root"
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "root").is_dir():
            return final / "root"
        for stale in CACHE_ROOT.glob(f".build-{key}-*"):  # an interrupted build of this recipe
            remove_tree(stale)
        building = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=CACHE_ROOT))
        try:
            sources, options = mirror_arguments()
            started = time.monotonic()
            # a mount namespace of its own: a build killed halfway leaves no mount behind
            argv = ["unshare", "--mount", "--propagation", "private", "--",
                    "mmdebstrap", "--mode=root", f"--variant={VARIANT}", "--format=directory",
                    f"--include={','.join(PACKAGES)}", *options,
                    *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
                    f"--customize-hook={CUSTOMIZE_HOOK}", SUITE, str(building / "root"), *sources]
            # a session of its own (Ctrl-C is ours: we kill its whole process group, dpkg in the chroot
            # included, and its mounts vanish with its namespace); the lock's descriptor goes with it, so
            # that a build outliving a killed session still keeps the next one waiting
            with open(building / "build.log", "w") as output:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                           start_new_session=True, pass_fds=(lock.fileno(),))
            try:
                returncode = process.wait(timeout=1200)
            except BaseException:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise
            if returncode != 0:
                tail = (building / "build.log").read_text(errors="replace").splitlines()[-20:]
                raise RuntimeError(f"mmdebstrap failed ({returncode}):\n" + "\n".join(tail))
            (building / "recipe.json").write_text(json.dumps(recipe(), indent=2, sort_keys=True) + "\n")
            building.chmod(0o755)
            building.rename(final)
            log(f"root file system {final} built in {time.monotonic() - started:.1f} s")
        except BaseException:
            remove_tree(building)
            raise
    return final / "root"


# --- namespaces, cgroups, mounts: names, leftovers ------------------------------------------------

def namespace_names(prefix: str) -> list[str]:
    return [f"{prefix}-switch", f"{prefix}-client", *(f"{prefix}-{plan.name}" for plan in PLAN)]


def overlay_source(prefix: str, host: str) -> str:
    """The source field of a host's overlay mount, by which a later session finds it."""
    return f"chaoslab-{prefix}-{host}"


def cgroup_bases() -> list[Path]:
    """Where this process sits in the hierarchies systemd-nspawn uses: the name=systemd one (legacy or
    hybrid mode) and the unified one."""
    mounts: dict[str, Path] = {}
    with open("/proc/self/mounts") as table:
        for line in table:
            _, target, kind, options, *_ = line.split()
            if kind == "cgroup2":
                mounts.setdefault("", Path(target))
            elif kind == "cgroup" and "name=systemd" in options.split(","):
                mounts["name=systemd"] = Path(target)
    bases = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            bases.append(mounts[controllers] / path.lstrip("/"))
    return bases


def cgroup_processes(cgroup: Path) -> list[int]:
    pids: list[int] = []
    for procs in cgroup.rglob("cgroup.procs"):
        try:
            pids += [int(pid) for pid in procs.read_text().split()]
        except OSError:
            continue
    return pids


def remove_cgroup(cgroup: Path, timeout: float = 10) -> None:
    """Kill what is still in the cgroup, then remove it and its children, deepest first."""
    if not cgroup.is_dir():
        return
    deadline = time.monotonic() + timeout
    while (pids := cgroup_processes(cgroup)) and time.monotonic() < deadline:
        for pid in pids:
            kill(pid)
        time.sleep(0.1)
    for directory in sorted((path for path in cgroup.rglob("*") if path.is_dir()), key=lambda p: -len(p.parts)):
        directory.rmdir()
    cgroup.rmdir()


def overlay_mounts(prefix: str) -> list[Path]:
    sources = {overlay_source(prefix, plan.name) for plan in PLAN}
    found = []
    with open("/proc/self/mounts") as table:
        for line in table:
            source, target, kind, *_ = line.split()
            if kind == "overlay" and source in sources:
                found.append(Path(target.replace("\\040", " ")))
    return found


def unmount(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while run(["umount", str(path)]).returncode != 0:
        if not is_mounted(path):
            return
        if time.monotonic() > deadline:
            check(["umount", "--lazy", str(path)])
            return
        time.sleep(0.2)


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as table:
        return any(line.split()[1] == str(path) for line in table)


def leftovers(prefix: str = "ctowned") -> dict[str, list[str]]:
    """What of a pair of this prefix still exists: namespaces, processes, overlay mounts, cgroups."""
    namespaces = [name for name in namespace_names(prefix) if Path("/run/netns", name).exists()]
    machines = {f"--machine={prefix}-{plan.name}" for plan in PLAN}
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if machines & {argument.decode(errors="replace") for argument in argv}:
                processes.append(f"{entry.name} {b' '.join(argv).decode(errors='replace').strip()}")
    cgroups = [str(base / f"{prefix}-{plan.name}") for base in cgroup_bases() for plan in PLAN
               if (base / f"{prefix}-{plan.name}").exists()]
    return {"namespaces": namespaces, "processes": processes, "mounts": [str(path) for path in overlay_mounts(prefix)],
            "cgroups": cgroups}


def clear_leftovers(prefix: str) -> None:
    """Remove what a session of this prefix killed outright left (the prefix's lock is ours)."""
    found = leftovers(prefix)
    if not any(found.values()):
        return
    log(f"removing what an earlier session of {prefix} left: {found}")
    for process in found["processes"]:
        kill(int(process.split()[0]))
    for cgroup in found["cgroups"]:
        remove_cgroup(Path(cgroup))
    mounts = overlay_mounts(prefix)
    for path in mounts:
        # the lock systemd-nspawn takes on its directory, which a killed nspawn leaves
        with suppress(OSError):
            root = os.stat(path)
            Path(f"/run/systemd/nspawn/locks/inode-{root.st_dev}:{root.st_ino}").unlink(missing_ok=True)
        unmount(path)
    for session in {path.parent.parent for path in mounts}:  # the killed session's directory: SESSION/HOST/root
        if session.name.startswith(f"{prefix}-") and (session / "inventory.ini").is_file():
            remove_tree(session)
    for name in found["namespaces"]:
        run(["ip", "netns", "delete", name])


@contextmanager
def prefix_lock(prefix: str) -> Iterator[None]:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"chaoslab-owned-{prefix}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another session runs owned hosts with the prefix {prefix}; choose another") from None
        yield


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C waits until the teardown is done (then it is delivered)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


# --- the network ------------------------------------------------------------------------------

def create_network(stack: ExitStack, prefix: str, hosts: dict[str, OwnedHost]) -> str:
    """The switch (a bridge), the client and one namespace per host, joined by veth pairs. Returns
    the client namespace."""
    switch, client = f"{prefix}-switch", f"{prefix}-client"
    for name in [switch, client, *(host.namespace for host in hosts.values())]:
        check(["ip", "netns", "add", name])
        stack.callback(run, ["ip", "netns", "delete", name])
        check(["ip", "-n", name, "link", "set", "lo", "up"])
    check(["ip", "-n", switch, "link", "add", "br0", "type", "bridge"])
    check(["ip", "-n", switch, "link", "set", "br0", "up"])
    ends = [(client, "client", CLIENT_NIC, CLIENT_ADDRESS),
            *((host.namespace, host.name, host.interface, host.address) for host in hosts.values())]
    for namespace, port, nic, address in ends:
        check(["ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", nic, "netns", namespace])
        check(["ip", "-n", switch, "link", "set", port, "master", "br0", "up"])
        check(["ip", "-n", namespace, "addr", "add", f"{address}/{SUBNET_PREFIX}", "dev", nic])
        check(["ip", "-n", namespace, "link", "set", nic, "up"])
    return client


# --- the owner's files ---------------------------------------------------------------------------

def write(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    target.chmod(mode)
    return target


def keepalived_conf(host: OwnedHost, priority: int) -> str:
    return f"""\
! Configuration File for keepalived ({host.name})

global_defs {{
    router_id {host.name}
    enable_script_security
    script_user root
}}

vrrp_script chk_haproxy {{
    script "/usr/bin/systemctl is-active --quiet haproxy"
    interval 1
    fall 2
    rise 2
}}

vrrp_sync_group VG_1 {{
    group {{
        VI_1
    }}
    notify /usr/local/sbin/vrrp-notify.sh
}}

vrrp_instance VI_1 {{
    state BACKUP
    nopreempt
    interface {host.interface}
    virtual_router_id 51
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass {AUTH_PASS}
    }}
    virtual_ipaddress {{
        {VIP}/{SUBNET_PREFIX} dev {host.interface}
    }}
    track_script {{
        chk_haproxy
    }}
}}
"""


NOTIFY_SCRIPT = """\
#!/bin/sh
# keepalived notify: TYPE NAME STATE PRIORITY
logger -t vrrp-notify "$1 $2 is now $3 (priority $4)"
"""


def haproxy_cfg(hosts: dict[str, OwnedHost]) -> str:
    servers = "\n".join(f"    server {host.name} {host.address}:8080 check inter 1s fall 2 rise 2 cookie {COOKIES[host.name]}"
                        for host in hosts.values() if host.role == "webserver")
    return f"""\
global
    log /dev/log local0
    log /dev/log local1 notice
    chroot /var/lib/haproxy
    stats socket /run/haproxy/admin.sock mode 660 level admin
    stats timeout 30s
    user haproxy
    group haproxy
    daemon

defaults
    log global
    mode http
    option httplog
    option dontlognull
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend shop
    bind *:80
    default_backend shop_web

backend shop_web
    balance roundrobin
    cookie SRV insert indirect nocache
    option httpchk GET /ok.html
    http-response del-header Server
{servers}
"""


APACHE_PORTS = "# web-a: the shop on 8080\nListen 8080\n"
APACHE_SITE = """\
<VirtualHost *:8080>
    ServerAdmin webmaster@localhost
    DocumentRoot /var/www/html
    ErrorLog ${APACHE_LOG_DIR}/error.log
    CustomLog ${APACHE_LOG_DIR}/access.log combined
</VirtualHost>
"""
NGINX_SITE = """\
server {
    listen 8080 default_server;
    listen [::]:8080 default_server;
    root /var/www/html;
    index index.html;
    server_name _;
    location / {
        try_files $uri $uri/ =404;
    }
}
"""


def set_enabled(root: Path, unit: str, enabled: bool) -> None:
    link = root / "etc/systemd/system/multi-user.target.wants" / f"{unit}.service"
    if enabled and not link.is_symlink():
        if not (root / "lib/systemd/system" / f"{unit}.service").exists():
            raise RuntimeError(f"the image has no unit {unit}.service")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit}.service")
    elif not enabled and link.is_symlink():
        link.unlink()


def configure(root: Path, host: OwnedHost, plan: HostPlan, hosts: dict[str, OwnedHost], public_key: str) -> str:
    """Write the owner's files into the container's tree (its overlay's upper layer). Returns the
    host's known_hosts line."""
    write(root, "/etc/hostname", f"{host.name}\n")
    write(root, "/etc/hosts", "127.0.0.1\tlocalhost\n" + "".join(
        f"{other.address}\t{other.name}.shop.example {other.name}\n" for other in hosts.values()))
    write(root, "/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    localtime = root / "etc/localtime"
    localtime.unlink(missing_ok=True)
    localtime.symlink_to(f"/usr/share/zoneinfo/{host.time_zone}")
    write(root, "/etc/timezone", f"{host.time_zone}\n")
    # sshd: a host key of its own, and only that one
    key = root / "etc/ssh/ssh_host_ed25519_key"
    check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(key)])
    write(root, "/etc/ssh/sshd_config.d/hostkey.conf", "HostKey /etc/ssh/ssh_host_ed25519_key\n")
    known = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    # the ops user, with passwordless sudo
    check(["useradd", "--root", str(root), "--create-home", "--shell", "/bin/bash", "--comment", "Operations", USER])
    entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                 if line.startswith(f"{USER}:"))
    uid, gid, home = int(entry[2]), int(entry[3]), root / entry[5].lstrip("/")
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = write(ssh_dir.parent, ".ssh/authorized_keys", public_key, 0o600)
    for path in (ssh_dir, authorized):
        os.chown(path, uid, gid)
    write(root, "/etc/sudoers.d/ops", f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL\n", 0o440)
    if host.role == "loadbalancer":
        assert plan.priority is not None
        write(root, "/etc/keepalived/keepalived.conf", keepalived_conf(host, plan.priority))
        write(root, "/usr/local/sbin/vrrp-notify.sh", NOTIFY_SCRIPT, 0o755)
        write(root, "/etc/haproxy/haproxy.cfg", haproxy_cfg(hosts))
    elif "apache2" in host.services:
        write(root, "/etc/apache2/ports.conf", APACHE_PORTS)
        write(root, "/etc/apache2/sites-available/000-default.conf", APACHE_SITE)
    elif "nginx" in host.services:
        write(root, "/etc/nginx/sites-available/default", NGINX_SITE)
    if host.role == "webserver":
        write(root, "/var/www/html/index.html", PAGE)
        write(root, "/var/www/html/ok.html", "OK\n")
    for unit in HOST_SERVICES:
        set_enabled(root, unit, unit in host.services)
    set_enabled(root, "ssh", True)
    return f"{host.address} {known}\n"


# --- the containers ---------------------------------------------------------------------------

def nspawn_argv(host: OwnedHost, root: Path) -> list[str]:
    return ["systemd-nspawn", "--register=no", "--keep-unit", "--console=passive",
            "--capability=CAP_NET_ADMIN,CAP_NET_RAW", f"--network-namespace-path=/run/netns/{host.namespace}",
            "-D", str(root), "-b", f"--hostname={host.name}",
            f"--machine={host.namespace}",  # else named after the directory: the same "root" for all
            "--timezone=off",  # else nspawn replaces the owner's /etc/localtime by this machine's
            "--resolv-conf=off", "--link-journal=no"]


def start_container(host: OwnedHost, root: Path, directory: Path) -> Container:
    """systemd-nspawn in a cgroup of its own, in a session of its own (Ctrl-C is the fixture's)."""
    cgroups = []
    for base in cgroup_bases():
        cgroup = base / host.namespace
        cgroup.mkdir()
        cgroups.append(cgroup)
    logfile = directory / f"{host.name}.nspawn.log"
    # the shell moves itself into the cgroups, then becomes systemd-nspawn
    wrapper = ["sh", "-c", 'for procs in $CGROUP_PROCS; do echo $$ > "$procs"; done; exec "$@"', "nspawn"]
    environment = {"PATH": os.environ.get("PATH", PATH), "LANG": "C.UTF-8",
                   "CGROUP_PROCS": " ".join(str(cgroup / "cgroup.procs") for cgroup in cgroups)}
    try:
        with open(logfile, "w") as output:
            process = subprocess.Popen([*wrapper, *nspawn_argv(host, root)], stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    except BaseException:
        for cgroup in cgroups:
            remove_cgroup(cgroup)
        raise
    return Container(host, root, logfile, process, cgroups)


def find_leader(container: Container) -> int | None:
    """The container's PID 1: the child of systemd-nspawn in another PID namespace."""
    pid = container.process.pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        own = os.readlink("/proc/self/ns/pid")
        for child in children:
            if os.readlink(f"/proc/{child}/ns/pid") != own:
                return int(child)
    except OSError:
        pass
    return None


def nspawn_tail(container: Container, lines: int = 15) -> str:
    try:
        return "\n".join(container.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_containers(containers: list[Container], timeout: float = STOP_TIMEOUT) -> None:
    """An orderly shutdown of every container at once (SIGTERM: nspawn sends the container's systemd
    SIGRTMIN+3), SIGKILL to whatever is still there after the timeout, then their cgroups."""
    for container in containers:
        if container.process.poll() is None:
            container.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for container in containers:
        try:
            container.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{container.host.name} did not shut down within {timeout:.0f} s: SIGKILL")
            for pid in (container.leader, container.process.pid):
                if pid is not None:
                    kill(pid)
            container.process.wait(10)
    for container in containers:
        for cgroup in container.cgroups:
            remove_cgroup(cgroup)


def wait_until(what: str, ready: Callable[[], bool], deadline: float, diagnose: Callable[[], str] = str) -> None:
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready within {READY_TIMEOUT:.0f} s. {diagnose()}")
        time.sleep(0.2)


def wait_booted(pair: OwnedPair, container: Container, deadline: float) -> None:
    name = container.host.name

    def booted() -> bool:
        if container.process.poll() is not None:
            raise RuntimeError(f"systemd-nspawn of {name} exited ({container.process.returncode}):\n"
                               f"{nspawn_tail(container)}")
        container.leader = container.leader or find_leader(container)
        if container.leader is None:
            return False
        state = pair.exec(name, ["systemctl", "is-system-running"], timeout=10).stdout.strip()
        if state in ("degraded", "maintenance", "stopping"):
            failed = pair.exec(name, ["systemctl", "--failed", "--no-legend", "--plain"]).stdout.strip()
            journal = pair.exec(name, ["journalctl", "-b", "-p", "warning", "-n", "30", "--no-pager"]).stdout
            raise RuntimeError(f"{name} booted {state}: failed units: {failed}\n{journal}")
        return state == "running"

    wait_until(f"{name}'s systemd", booted, deadline, lambda: nspawn_tail(container))
    inactive = [unit for unit in ("ssh", *container.host.services)
                if pair.exec(name, ["systemctl", "is-active", unit]).stdout.strip() != "active"]
    if inactive:
        raise RuntimeError(f"{name}: not active after boot: {', '.join(inactive)}")


def vip_answers(pair: OwnedPair) -> bool:
    result = pair.in_client(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1",
                             f"http://{pair.vip}/"], timeout=10)
    return result.stdout.strip() == "200"


# --- the inventory and topology ------------------------------------------------------------------

def write_inventory(pair: OwnedPair) -> None:
    """An owner's Ansible inventory (INI) of the four hosts."""
    groups = {"loadbalancers": "loadbalancer", "webservers": "webserver"}
    lines = ["# The shop's load balancers and web servers (tests/owned_hosts.py)"]
    for group, role in groups.items():
        lines.append(f"[{group}]")
        lines += [" ".join([f"{host.name} ansible_host={host.address}",
                            *(f"chaoslab_unit_{service}={unit}" for service, unit in UNITS.get(host.name, {}).items())])
                  for host in pair.hosts.values() if host.role == role]
        lines.append("")
    lines += ["[all:vars]", f"ansible_user={USER}", f"ansible_ssh_private_key_file={pair.key_file}",
              f"ansible_ssh_common_args='{shlex.join(pair.ssh_options)}'",
              f"chaoslab_topology={pair.topology.name}", ""]
    pair.inventory.write_text("\n".join(lines), encoding="utf-8")


def write_topology(path: Path) -> Path:
    """The owner's topology for chaoslab, tests/data/owned-topology.json, checked against the hosts
    the fixture makes (addresses, NICs, priorities, the VIP and the cookies)."""
    topology = json.loads(TOPOLOGY.read_text(encoding="utf-8"))
    nodes = {node["name"]: node for node in topology["nodes"]}
    for plan in PLAN:
        node = nodes[plan.name]
        [interface] = node["interfaces"]
        found = (node["role"], interface["address"], interface["name"], node.get("vrrp", {}).get("priority"))
        if found != (plan.role, plan.address, plan.interface, plan.priority):
            raise ValueError(f"{TOPOLOGY}: {plan.name} is {found}, the fixture makes {plan}")
    if topology["vip"]["address"] != VIP or topology["target"]["identity"]["markers"] != COOKIES:
        raise ValueError(f"{TOPOLOGY}: the VIP or the cookies are not the fixture's ({VIP}, {COOKIES})")
    path.write_text(json.dumps(topology, indent=2) + "\n", encoding="utf-8")
    return path


# --- the pair -----------------------------------------------------------------------------------

def owned_host(prefix: str, plan: HostPlan) -> OwnedHost:
    return OwnedHost(plan.name, f"{prefix}-{plan.name}", plan.address, plan.interface, plan.role, plan.time_zone,
                     plan.services)


@contextmanager
def owned_pair(workdir: Path | None = None, prefix: str = "ctowned") -> Iterator[OwnedPair]:
    """The four hosts up and answering (ssh, keepalived, haproxy, the VIP over HTTP); everything
    removed afterwards, whatever happened. workdir: where the pair's directory is made (default: the
    system's temporary directory); it holds the key, known_hosts, inventory, topology, the overlays'
    upper layers and the containers' nspawn logs, and is removed at teardown."""
    if os.geteuid() != 0:
        raise PermissionError("owned hosts need root: namespaces, overlay mounts, systemd-nspawn")
    stack = ExitStack()
    try:
        stack.enter_context(prefix_lock(prefix))
        clear_leftovers(prefix)
        started = time.monotonic()
        lower = root_filesystem()
        timings = {"rootfs_s": time.monotonic() - started}
        directory = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=workdir))
        stack.callback(remove_tree, directory)
        hosts = {plan.name: owned_host(prefix, plan) for plan in PLAN}
        key = directory / "id_ed25519"
        check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{USER}@chaoslab-tests", "-f", str(key)])
        key.chmod(0o600)
        pair = OwnedPair(prefix, directory, directory / "inventory.ini", directory / "topology.json",
                         f"{prefix}-client", VIP, hosts, key, directory / "known_hosts", timings)
        write_topology(pair.topology)
        write_inventory(pair)
        booting = time.monotonic()
        pair.client_namespace = create_network(stack, prefix, hosts)
        known_hosts = []
        for plan in PLAN:
            host = hosts[plan.name]
            layers = directory / host.name
            upper, work, root = layers / "upper", layers / "work", layers / "root"
            for path in (upper, work, root):
                path.mkdir(parents=True)
            check(["mount", "-t", "overlay", overlay_source(prefix, host.name), "-o",
                   f"lowerdir={lower},upperdir={upper},workdir={work}", str(root)])
            stack.callback(unmount, root)
            known_hosts.append(configure(root, host, plan, hosts, key.with_suffix(".pub").read_text()))
        pair.known_hosts.write_text("".join(known_hosts), encoding="utf-8")
        timings["configure_s"] = time.monotonic() - booting
        containers: list[Container] = []
        stack.callback(stop_containers, containers)  # before the overlays and namespaces go
        spawned = time.monotonic()
        for host in hosts.values():
            container = start_container(host, directory / host.name / "root", directory)
            containers.append(container)
            pair.containers[host.name] = container
        deadline = spawned + READY_TIMEOUT
        for container in containers:
            wait_booted(pair, container, deadline)
        timings["systemd_s"] = time.monotonic() - spawned
        for name in hosts:
            wait_until(f"ssh to {name}", lambda name=name: pair.ssh(name, ["true"], timeout=10).returncode == 0,
                       deadline, lambda name=name: pair.ssh(name, ["true"], timeout=10).stderr)
        timings["ssh_s"] = time.monotonic() - spawned
        wait_until(f"HTTP on the VIP {VIP}", lambda: vip_answers(pair), deadline,
                   lambda: pair.in_client(["curl", "-sS", "--max-time", "1", f"http://{VIP}/"]).stderr)
        timings["ready_s"] = time.monotonic() - spawned
        log(f"{prefix}: root file system {timings['rootfs_s']:.1f} s; the owner's files {timings['configure_s']:.1f} s; "
            f"from systemd-nspawn: every systemd running {timings['systemd_s']:.1f} s, ssh {timings['ssh_s']:.1f} s, "
            f"the VIP answering HTTP {timings['ready_s']:.1f} s")
        yield pair
    finally:
        with sigint_deferred():
            stopping = time.monotonic()
            stack.close()
            log(f"{prefix}: torn down in {time.monotonic() - stopping:.1f} s")


def owned_pair_fixture(workdir: Path, prefix: str = "ctowned") -> Iterator[OwnedPair]:
    """For a pytest fixture: `yield from owned_pair_fixture(tmp_path_factory.mktemp("owned"))`."""
    with owned_pair(workdir, prefix) as pair:
        yield pair
