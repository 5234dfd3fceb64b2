"""The one place chaoslab runs programs: argument lists only, never a shell string."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from chaoslab.errors import ChaoslabError
from chaoslab.stack import SERVICES

# every program chaoslab runs on this machine -> the Debian package that ships it
# (provision/setup-host.sh installs each; tests/test_dependencies.py checks that it does)
PACKAGES = {
    **{service.processes["debian"]: service.packages["debian"] for service in SERVICES.values() if service.packages},
    "ip": "iproute2",
    "tc": "iproute2",
    "pgrep": "procps",
    "iptables": "iptables",
    "tcpdump": "tcpdump",
    "setsid": "util-linux",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "partx": "util-linux",
    "fstrim": "util-linux",
    "mknod": "coreutils",
    "ssh": "openssh-client",
    "libvirtd": "libvirt-daemon-system",
    "virtlogd": "libvirt-daemon-system",
    "virsh": "libvirt-clients",
    "vagrant": "vagrant",
    "mmdebstrap": "mmdebstrap",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "bsdtar": "libarchive-tools",
}


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CommandResult:
        if not self.ok:
            detail = (self.stderr or self.stdout).strip().splitlines()
            raise ChaoslabError(
                f"command failed (exit {self.returncode}): {shlex.join(self.argv)}"
                + (f": {detail[-1]}" if detail else "")
            )
        return self


def run(argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
    """Run argv, capture its output, and return a CommandResult. A command that times out, or whose
    wait is interrupted (Ctrl-C), is killed and reaped before this returns: nothing it does lands
    after the caller has moved on to clean up (an `ip netns add` finishing after `lab down`)."""
    try:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise missing_binary(argv[0]) from None
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise ChaoslabError(f"command timed out after {timeout:g} s: {shlex.join(argv)}") from None
        except BaseException:
            process.kill()
            process.wait()
            raise
    result = CommandResult(tuple(argv), process.returncode, stdout, stderr)
    return result.check() if check else result


def missing_binary(binary: str) -> ChaoslabError:
    package = PACKAGES.get(binary)
    hint = f"; install it with: apt-get install {package}" if package else ""
    return ChaoslabError(f"{binary} is not installed (not found on PATH){hint}")


def require_binaries(binaries: Sequence[str], purpose: str = "the lab runs the real daemons") -> None:
    """Fail with one clear line naming the package for each missing binary."""
    missing = [binary for binary in binaries if shutil.which(binary) is None]
    if missing:
        packages = sorted({PACKAGES.get(binary, binary) for binary in missing})
        raise ChaoslabError(
            f"missing {', '.join(missing)}: {purpose}; "
            f"install them with: apt-get install {' '.join(packages)} (provision/setup-host.sh installs them all)"
        )


def stop(process: subprocess.Popen, grace: float = 5.0) -> None:
    """Ask a child to end (SIGTERM), wait up to grace seconds, then kill it; reaped either way."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
