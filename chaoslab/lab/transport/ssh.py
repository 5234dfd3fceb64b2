"""Commands on a host over OpenSSH: one shared connection per host, sudo only where a command
changes something, long-running commands that end with the connection."""

from __future__ import annotations

import itertools
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from chaoslab.commands import CommandResult, run
from chaoslab.lab.inventory import Host
from chaoslab.lab.transport import Transport, Unreachable

SSH_FAILED = 255  # ssh's own exit code: the host was not reached
# run "$@" until it ends or the ssh connection that started it goes away (stdin closes)
# (a background job's stdin is /dev/null: the watcher reads the connection through fd 3)
TIED_TO_CONNECTION = (
    'exec 3<&0; "$@" </dev/null 3<&- & child=$!; '
    '{ cat <&3 >/dev/null 2>&1; kill "$child" 2>/dev/null; } & watcher=$!; exec 3<&-; '
    'wait "$child"; status=$?; pkill -P "$watcher" 2>/dev/null; exit $status'
)


# commands that need no root: whatever reads processes, files the lab writes world-readable, addresses
UNPRIVILEGED = {"cat", "pgrep", "ps", "test", "true"}


def needs_root(argv: Sequence[str]) -> bool:
    """False for commands that only read (sudo is not free on a small VM); `env NAME=value ... COMMAND`
    is judged by its COMMAND."""
    if argv[0] == "env":
        argv = list(itertools.dropwhile(lambda argument: "=" in argument, argv[1:])) or ["env"]
    if argv[0] == "ip":
        return not ({"show", "monitor"} & set(argv))
    if argv[0] == "date":
        return "-s" in argv
    return argv[0] not in UNPRIVILEGED


class SshConnection:
    """OpenSSH to one host, one shared connection for every command."""

    def __init__(self, host: Host, control_dir: Path, wrapper: Sequence[str] = (), lab_host: bool = False):
        self.host = host
        self.control_dir = control_dir
        self.wrapper = list(wrapper)
        self.lab_host = lab_host

    def options(self) -> list[str]:
        options = [*self.host.ssh_args, "-o", "BatchMode=yes", "-o", "ControlMaster=auto",
                   "-o", f"ControlPath={self.control_dir}/%C", "-o", "ControlPersist=600",
                   "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3",
                   "-o", "LogLevel=ERROR"]
        if self.lab_host:  # machines made a minute ago have new host keys each time
            options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        if self.host.user:
            options += ["-l", self.host.user]
        if self.host.port:
            options += ["-p", str(self.host.port)]
        if self.host.key_file:
            options += ["-i", str(Path(self.host.key_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        return options

    def argv(self, remote: Sequence[str], privileged: bool = True) -> list[str]:
        """The local command that runs `remote` on the host, privileged as root (sudo where the user
        is not root: it costs the host a PAM session, 0.15 s on an emulated VM)."""
        if privileged and self.host.user not in (None, "root"):
            remote = ["sudo", "-n", *remote]
        return [*self.wrapper, "ssh", *self.options(), "--", self.host.address, shlex.join(remote)]

    def close(self) -> None:
        """End the shared connection, if any."""
        run([*self.wrapper, "ssh", *self.options(), "-O", "exit", "--", self.host.address], timeout=10)


class SshTransport(Transport):
    poll_interval = 0.5  # a look over ssh costs the host a session and a few processes

    def __init__(self, name: str, connection: SshConnection, halted: Callable[[], bool] = lambda: False):
        self.name = name
        self.connection = connection
        self.halted = halted  # the machine says it is off: no ssh timeout to wait for

    def run(self, argv: Sequence[str], timeout: float = 30.0, check: bool = False) -> CommandResult:
        return self.run_as(argv, needs_root(argv), timeout, check)

    def run_as(self, argv: Sequence[str], privileged: bool, timeout: float = 30.0,
               check: bool = False) -> CommandResult:
        if self.halted():
            raise Unreachable(f"{self.name} is halted")
        return self.run_anyway(argv, privileged, timeout, check)

    def run_anyway(self, argv: Sequence[str], privileged: bool, timeout: float = 30.0,
                   check: bool = False) -> CommandResult:
        """run_as, even while the machine says it is off (to see whether it answers again)."""
        result = run(self.connection.argv(argv, privileged), timeout=timeout)
        if result.returncode == SSH_FAILED and not result.stdout:
            raise Unreachable(f"{self.name} ({self.connection.host.destination}) did not answer over ssh: "
                              f"{result.stderr.strip() or 'no reason given'}")
        result = CommandResult(tuple(argv), result.returncode, result.stdout, result.stderr)
        return result.check() if check else result

    def answers(self) -> bool:
        try:
            return self.run_anyway(["true"], privileged=False, timeout=10).ok
        except Exception:
            return False

    def spawn(self, argv: Sequence[str]) -> subprocess.Popen:
        """A long-running command (a capture, a monitor); it ends on the host when this process ends."""
        return subprocess.Popen(
            self.connection.argv(["sh", "-c", TIED_TO_CONNECTION, "sh", *argv], needs_root(argv)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )

    def read_file(self, relative: str) -> str | None:
        try:
            result = self.run(["cat", f"/{relative}"])
        except Unreachable:
            return None
        return result.stdout if result.ok else None
