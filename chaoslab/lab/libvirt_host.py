"""A libvirt of the lab's own, in a network namespace: where the vagrant lab's VMs live.

libvirtd and virtlogd run by hand (no systemd needed) inside the namespace
<prefix>-vmhost, in a mount namespace of their own where libvirt's
directories (/etc/libvirt, /var/lib/libvirt, /run/libvirt, ...) are the lab's
folders under /var/lib/chaoslab/<prefix>/libvirt: every bridge, tap, dnsmasq
and QEMU process, every network and disk definition, stays the lab's and goes
with it. The host's libvirt, if it has one, is not touched.

There /dev/kvm is a 0660 root:kvm copy of the device node, so that libvirt's
QEMU user can probe it (else libvirtd probes QEMU again and again); the host's
node stays as it is. Vagrant runs with `nsenter --net` into the namespace, so
that it reaches the VMs' management network; it talks to this libvirtd through
its socket (uri()).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal as signals
import subprocess
from collections.abc import Sequence
from pathlib import Path

from chaoslab.commands import CommandResult, require_binaries, run
from chaoslab.errors import ChaoslabError
from chaoslab.lab.namespaces import NETNS_DIR, namespace_inode, namespace_pids, signal_pids, wait_gone, wait_until

DATA_ROOT = Path(os.environ.get("CHAOSLAB_DATA_ROOT", "/var/lib/chaoslab"))
BINARIES = ("libvirtd", "virtlogd", "virsh", "nsenter", "unshare", "mknod", "ip")
# libvirt's directories, each replaced by a folder of the lab's inside libvirtd's mount namespace
PRIVATE_DIRECTORIES = ("/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/cache/libvirt", "/var/log/libvirt")
# what the package installs (its settings); the rest are runtime and state directories that
# systemd-tmpfiles or the first start of libvirtd make, and that no systemd made here
PACKAGE_DIRECTORY = "/etc/libvirt"
KVM_DEVICE = (10, 232)
POOL = "default"
START_TIMEOUT = 30.0
# Appended to the lab's copy of qemu.conf (the last setting wins). libvirt gives each QEMU a /dev of
# its own, rebuilt from the host's /dev mounts; where /dev/pts has no ptmx node of its own (a chroot
# or container whose devpts is mounted with ptmxmode=000, such as a fresh system entered with chroot)
# QEMU then fails: "-chardev pty: Failed to create PTY: No such file or directory". The lab's QEMU
# already lives in namespaces of the lab's own; it uses the host's /dev.
QEMU_SETTINGS = "\n# chaoslab: QEMU shares the host's /dev (see chaoslab.lab.libvirt_host)\nnamespaces = []\n"
# inside the new mount namespace: bind the lab's folders over libvirt's, then start the daemons
LAUNCH = """
set -eu
data="$1"; shift
if [ -e "$data/kvm" ]; then mount --bind "$data/kvm" /dev/kvm; fi
for directory in "$@"; do
    mount --bind "$data/libvirt$directory" "$directory"
done
virtlogd --daemon
exec libvirtd --daemon --pid-file "$data/libvirtd.pid"
"""


class LibvirtHost:
    """libvirtd, virtlogd and the VMs' networks inside the namespace <prefix>-vmhost."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.namespace = f"{prefix}-vmhost"
        self.data_dir = DATA_ROOT / prefix

    @property
    def socket(self) -> Path:
        return self.data_dir / "libvirt/run/libvirt/libvirt-sock"

    def uri(self) -> str:
        """The libvirt URI of this libvirtd, for virsh and vagrant-libvirt."""
        return f"qemu:///system?socket={self.socket}"

    def enter(self, argv: Sequence[str]) -> list[str]:
        """argv wrapped to run in the namespace (network only: the host's files stay visible)."""
        return ["nsenter", f"--net={NETNS_DIR / self.namespace}", "--", *argv]

    def virsh(self, *arguments: str, check: bool = False, timeout: float = 60.0) -> CommandResult:
        return run(self.enter(["virsh", "-c", self.uri(), *arguments]), timeout=timeout, check=check)

    def is_running(self) -> bool:
        return namespace_inode(self.namespace) is not None and self.socket.exists() and self.virsh("version").ok

    def start(self) -> list[str]:
        """Make the namespace and start the daemons; nothing if they run already."""
        if self.is_running():
            return []
        require_binaries(BINARIES)
        if namespace_inode(self.namespace) is None:
            run(["ip", "netns", "add", self.namespace], check=True)
            run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
        self._prepare_directories()
        log = self.data_dir / "libvirtd.log"
        with open(log, "ab") as output:
            subprocess.run(
                self.enter(["unshare", "--mount", "--propagation", "private",
                            "sh", "-c", LAUNCH, "sh", str(self.data_dir), *PRIVATE_DIRECTORIES]),
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=True, timeout=START_TIMEOUT,
            )
        if not wait_until(lambda: self.socket.exists() and self.virsh("version").ok, timeout=START_TIMEOUT):
            raise ChaoslabError(f"libvirtd did not start in namespace {self.namespace}; see {log}")
        self._define_pool()
        return [f"libvirtd and virtlogd in namespace {self.namespace}, state in {self.data_dir / 'libvirt'}"]

    def _prepare_directories(self) -> None:
        """The lab's copies of libvirt's directories: empty, but for the daemons' own settings
        (the *.conf files of /etc/libvirt; never the host's domains, networks or pools)."""
        if not Path(PACKAGE_DIRECTORY).is_dir():
            raise ChaoslabError(f"{PACKAGE_DIRECTORY} missing: install libvirt-daemon-system "
                                "(the vagrant lab runs its own libvirtd with the package's settings)")
        libvirt = self.data_dir / "libvirt"
        for directory in PRIVATE_DIRECTORIES:
            # the mount points: empty directories of the host's, as systemd-tmpfiles would make them
            Path(directory).mkdir(mode=0o755, parents=True, exist_ok=True)
            (libvirt / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for settings in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy2(settings, libvirt / "etc/libvirt" / settings.name)
        with open(libvirt / "etc/libvirt/qemu.conf", "a", encoding="utf-8") as qemu:
            qemu.write(QEMU_SETTINGS)
        kvm = self.data_dir / "kvm"
        if Path("/dev/kvm").exists() and not kvm.exists():
            os.mknod(kvm, 0o660 | 0o020000, os.makedev(*KVM_DEVICE))
            with contextlib.suppress(LookupError):  # no kvm group: root's QEMU still probes it
                shutil.chown(kvm, "root", "kvm")
            os.chmod(kvm, 0o660)

    def _define_pool(self) -> None:
        if self.virsh("pool-info", POOL).ok:
            self.virsh("pool-start", POOL)
            return
        self.virsh("pool-define-as", POOL, "dir", "--target", "/var/lib/libvirt/images", check=True)
        self.virsh("pool-build", POOL, check=True)
        self.virsh("pool-start", POOL, check=True)
        self.virsh("pool-autostart", POOL, check=True)

    def domains(self) -> list[str]:
        result = self.virsh("list", "--all", "--name")
        return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.ok else []

    def stop(self) -> list[str]:
        """Stop every VM, daemon and process of the namespace, then remove it and the lab's libvirt state."""
        removed = []
        if namespace_inode(self.namespace) is not None:
            pids = signal_pids(namespace_pids(self.namespace), signals.SIGKILL)
            wait_gone(pids, timeout=10)
            run(["ip", "netns", "del", self.namespace], check=True)
            removed.append(f"namespace {self.namespace}" + (f" and {len(pids)} processes (libvirtd, QEMU)"
                                                           if pids else ""))
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
            removed.append(f"VM disks and libvirt state in {self.data_dir}")
        return removed
