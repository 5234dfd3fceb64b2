"""Linux network namespaces and the processes in them, for the netns lab and the VMs' libvirt.

A network namespace is a file under /run/netns; its processes are found from /proc (in the
lab's own mode the PID namespace is shared, so a process name alone would name another node's
too). A rehearsal's load balancers have PID namespaces of their own (chaoslab.lab.rehearsal):
the number a daemon writes in its pid file is its pid there, told apart by own_pid.
"""

from __future__ import annotations

import ctypes
import os
import signal as signals
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from chaoslab.errors import ChaoslabError

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
WAIT_STEP = 0.01


def require_root() -> None:
    if os.geteuid() != 0:
        raise ChaoslabError(
            "the netns lab needs root (it creates network namespaces and runs daemons in them); "
            "run it as root, e.g. with sudo"
        )


def namespace_inode(namespace: str) -> int | None:
    try:
        return (NETNS_DIR / namespace).stat().st_ino
    except FileNotFoundError:
        return None


def namespace_pids(namespace: str) -> list[int]:
    """Live processes whose network namespace is this one (what `ip netns pids` shows)."""
    inode = namespace_inode(namespace)
    if inode is None:
        return []
    marker = f"net:[{inode}]"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/net") == marker and process_state(int(entry.name)) != "Z":
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def own_pid(pid: int) -> int | None:
    """The pid a process has in its own (innermost) PID namespace: the last field of NSpid in
    /proc/PID/status, which has one field, pid itself, where there is no PID namespace of its own."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def pid_named(number: int, pids: Sequence[int]) -> int | None:
    """Which of pids (this machine's numbers) a pid file's number names: the one that its own PID
    namespace calls `number`. The same rule where a daemon runs in the lab's shared PID namespace
    (the number is its pid) and in a node's own (the number is its pid there): one place for both."""
    return next((pid for pid in pids if own_pid(pid) == number), None)


def listens(pid: int) -> bool:
    """True if the process holds a listening TCP socket (IPv4 or IPv6), seen from its own network
    namespace's /proc/PID/net/tcp*: a process that is still finishing its connections after it gave
    its listeners up (HAProxy after a reload) does not; a process that is gone does not."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    inodes = set()
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", encoding="utf-8") as handle:
                rows = [line.split() for line in handle.readlines()[1:]]
        except OSError:
            continue
        if any(len(row) > 9 and row[3] == "0A" and row[9] in inodes for row in rows):  # 0A: TCP_LISTEN
            return True
    return False


def signal_pids(pids: Sequence[int], signal: signals.Signals) -> list[int]:
    signalled = []
    for pid in pids:
        try:
            os.kill(pid, signal)
            signalled.append(pid)
        except ProcessLookupError:
            continue
    return signalled


def kill_at_once(pids_of: Callable[[], list[int]]) -> list[int]:
    """SIGKILL a group of processes as one: stop them all first (and whatever they forked
    meanwhile), then kill them, then wait until they are gone.

    Killed one after the other, a Keepalived child whose parent died first gets its
    parent-death signal, SIGTERM, and may say goodbye before its own SIGKILL lands: a
    priority-0 advert that turns a crash into a graceful stop."""
    stopped: list[int] = []
    while fresh := [pid for pid in pids_of() if pid not in stopped]:
        stopped += signal_pids(fresh, signals.SIGSTOP)
        wait_stopped(stopped, timeout=1)
    killed = signal_pids(stopped, signals.SIGKILL)
    wait_gone(killed, timeout=5)
    return killed


def wait_stopped(pids: Sequence[int], timeout: float) -> bool:
    """Wait until the processes are stopped (or dead)."""
    return wait_until(lambda: all(process_state(pid) in (None, "T", "t", "Z") for pid in pids), timeout)


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait until the processes are dead. A zombie counts as dead: this machine's
    init may take a second to reap it, and stale pid files are removed before a start."""
    return wait_until(lambda: all(process_state(pid) in (None, "Z") for pid in pids), timeout)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(WAIT_STEP)


def call_in_namespace(namespace: str, function: Callable[[], T]) -> T:
    """Call function on a thread that has joined the namespace: its sockets live there.

    A network namespace is a property of the thread, so the rest of the
    process (and the root namespace) is untouched."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(NETNS_DIR / namespace, "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns({namespace}) failed")
            outcome["value"] = function()
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
