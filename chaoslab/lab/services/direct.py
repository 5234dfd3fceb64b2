"""The netns lab's daemons, run by chaoslab itself (no systemd here): each with its config, pid
and log files under the node's root, found by its namespace and process name, stopped as its
service manager would. In a rehearsal (chaoslab.lab.rehearsal) a load balancer's HAProxy and
Keepalived run the user's own configs in the node's own mount and PID namespaces."""

from __future__ import annotations

import signal as signals
import subprocess
from collections.abc import Sequence
from pathlib import Path

from chaoslab.commands import CommandResult, run
from chaoslab.errors import ChaoslabError
from chaoslab.lab.namespaces import (
    kill_at_once,
    listens,
    namespace_pids,
    own_pid,
    pid_named,
    process_name,
    process_state,
    signal_pids,
    wait_gone,
    wait_stopped,
    wait_until,
)
from chaoslab.lab.rehearsal import CONSOLE_STATES, KEEPALIVED_CONFIG, Enclosure, daemon_words
from chaoslab.lab.services import ServiceManager
from chaoslab.lab.transport.netns import NetnsTransport
from chaoslab.stack import SERVICES

FAMILY = "debian"  # the lab runs this machine's Debian binaries
# the pid files a daemon's children write besides its own: Keepalived's VRRP and checker processes
CHILD_PID_FILES = {"keepalived": ("run/keepalived-vrrp.pid", "run/keepalived-checkers.pid")}
# the checker before Keepalived, which reads the file the checker writes
START_ORDER = ("httpd", "haproxy", "haproxy-health", "keepalived")
RELOADABLE = ("haproxy",)  # what reload() can do here: HAProxy's own -sf hand-over
RELOAD_TIMEOUT = 10  # seconds for the new HAProxy to run and the old ones to stop listening


class DirectServices(ServiceManager):
    def __init__(self, node: str, transport: NetnsTransport, enclosure: Enclosure | None = None):
        self.node = node
        self.transport = transport
        self.namespace = transport.namespace
        self.root: Path = transport.root
        self.enclosure = enclosure  # a rehearsed load balancer's own namespaces, where its daemons run

    def pids(self, service: str) -> list[int]:
        process = SERVICES[service].processes[FAMILY]
        return [pid for pid in namespace_pids(self.namespace) if process_name(pid) == process]

    def main_pid(self, service: str) -> int | None:
        """The pid (this machine's) of the process the service's pid file names; the number in the file
        is the daemon's pid in its own PID namespace, which is this machine's in the lab's own mode."""
        text = self.transport.read_file(SERVICES[service].lab_pid_file)
        number = int(text.split()[0]) if text and text.split() and text.split()[0].isdigit() else None
        return pid_named(number, self.pids(service)) if number else None

    def signal(self, service: str, signal: signals.Signals) -> list[int]:
        if signal == signals.SIGKILL:  # a crash of the whole service, not one process after the other
            return kill_at_once(lambda: self.pids(service))
        signalled = signal_pids(self.pids(service), signal)
        if signal == signals.SIGSTOP:  # frozen when this returns, as a crash is over when kill_at_once returns
            wait_stopped(signalled, timeout=1)
        return signalled

    def is_frozen(self, service: str) -> bool:
        return any(process_state(pid) == "T" for pid in self.pids(service))

    def start(self, service: str) -> None:
        if self.main_pid(service):
            return
        # pid files left by a crash name no live process of ours (or a zombie not yet reaped,
        # which Keepalived takes for itself still running): a daemon must not trust them
        for pid_file in (SERVICES[service].lab_pid_file, *CHILD_PID_FILES.get(service, ())):
            (self.root / pid_file).unlink(missing_ok=True)
        if service == "httpd":
            self.transport.run(["apache2", "-f", str(self.root / "etc/chaoslab/httpd-lab.conf"), "-k", "start"],
                               check=True)
        elif self.enclosure:
            self._start_rehearsed(service)
        elif service == "haproxy":
            self.transport.run(self._haproxy_argv(), check=True)
        elif service == "haproxy-health":
            self._start_detached([str(self.root / "etc/keepalived/chaoslab/haproxy-health")], service)
        else:
            self._start_detached(self._keepalived_argv(self.root / "etc/keepalived/keepalived.conf"), service)
        if not wait_until(lambda: self.main_pid(service) is not None, timeout=10):
            raise ChaoslabError(
                f"{service} did not start on {self.node}; see the logs under {self.root / 'var/log/chaoslab'}"
                + self._last_words(service)
            )

    def _keepalived_argv(self, config: Path) -> list[str]:
        vrrp_pid, checkers_pid = CHILD_PID_FILES["keepalived"]
        return ["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp", "--use-file", str(config),
                "--pid", str(self.root / SERVICES["keepalived"].lab_pid_file),
                "--vrrp_pid", str(self.root / vrrp_pid), "--checkers_pid", str(self.root / checkers_pid)]

    def _start_rehearsed(self, service: str) -> None:
        """The user's own config, at the path their host has it, in the node's own namespaces. HAProxy
        with -p as Debian's unit starts it (-p /run/haproxy.pid: the node's <root>/run is its /run; a
        `pidfile` in the config is then ignored, with HAProxy's "already specified. Continuing."); a
        config it refuses fails here with HAProxy's words. Keepalived on the lab's configuration, which
        includes the user's keepalived.conf and adds the lab's notify FIFO."""
        if service == "haproxy":
            result = self._run_haproxy(self._haproxy_argv())
            if not result.ok:
                raise ChaoslabError(f"haproxy on {self.node} did not start on its own /etc/haproxy/haproxy.cfg "
                                    f"(exit {result.returncode}): {daemon_words(result.stderr + result.stdout)}")
        elif service == "keepalived":
            # as the host's own Keepalived, whose config id is its host name: the `@node` lines of its config
            argv = [*self._keepalived_argv(self.root / KEEPALIVED_CONFIG), "--config-id", self.node]
            if (self.root / CONSOLE_STATES).exists():
                argv = [str(self.root / CONSOLE_STATES), *argv]
            self._start_detached(argv, service)
        else:
            raise ChaoslabError(f"{service} is the lab's helper: a rehearsal runs the user's own daemons only")

    def _haproxy_argv(self) -> list[str]:
        """HAProxy as chaoslab starts it: the lab's config, which names its pid file; in a rehearsal the
        user's own config at its host's path, with -p as Debian's unit has it (see _start_rehearsed)."""
        if self.enclosure:
            return ["haproxy", "-D", "-f", "/etc/haproxy/haproxy.cfg", "-p", str(self.root / SERVICES["haproxy"].lab_pid_file)]
        return ["haproxy", "-D", "-f", str(self.root / "etc/haproxy/haproxy.cfg")]

    def _run_haproxy(self, argv: Sequence[str]) -> CommandResult:
        """An HAProxy command where the node's HAProxy runs: in a rehearsal its own namespaces."""
        return run(self.enclosure.command(list(argv))) if self.enclosure else self.transport.run(argv)

    def reload(self, service: str) -> None:
        """HAProxy's reload where no systemd runs: a new `haproxy -D` on the same config and pid file as
        start() runs, with -sf and the old processes' pids (their numbers in the PID namespace HAProxy
        runs in: a rehearsal's own). The new process binds the listeners beside the old ones
        (SO_REUSEPORT), writes the pid file and sends the old ones SIGUSR1: they give their listeners up,
        finish the requests in flight and exit. Returns once the pid file names a new process and no old
        one listens any more (one may still be finishing a connection)."""
        if service not in RELOADABLE:
            raise ChaoslabError(f"{service} cannot be reloaded on {self.node}: where chaoslab runs the daemons "
                                f"itself, only {', '.join(RELOADABLE)} can (restart_service restarts the others)")
        old = self.pids(service)
        if not old:
            raise ChaoslabError(f"{service} is not running on {self.node}: nothing to reload; start it with start_service")
        numbers = [str(number) for number in (own_pid(pid) for pid in old) if number]
        result = self._run_haproxy([*self._haproxy_argv(), "-sf", *numbers])  # -sf takes every argument after it
        if not result.ok:
            raise ChaoslabError(f"haproxy on {self.node} did not reload (exit {result.returncode}): "
                                f"{daemon_words(result.stderr + result.stdout)}; the old process still serves")

        def new_main() -> bool:
            main = self.main_pid(service)
            return main is not None and main not in old

        if not wait_until(new_main, timeout=RELOAD_TIMEOUT):
            raise ChaoslabError(f"the pid file of haproxy on {self.node} names no new process "
                                f"{RELOAD_TIMEOUT} s after its reload (old pids {', '.join(map(str, old))})")
        if not wait_until(lambda: not any(listens(pid) for pid in old), timeout=RELOAD_TIMEOUT):
            still = [pid for pid in old if listens(pid)]
            raise ChaoslabError(f"the old haproxy on {self.node} (pids {', '.join(map(str, still))}) still listens "
                                f"{RELOAD_TIMEOUT} s after the reload (frozen?); the new one runs beside it")

    def _last_words(self, service: str) -> str:
        """The end of a detached daemon's log, in its own words (empty if it has none)."""
        try:
            text = (self.root / f"var/log/chaoslab/{service}.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return f"; it said: {daemon_words(text)}" if text.strip() else ""

    def _start_detached(self, argv: Sequence[str], service: str) -> None:
        """Start a foreground daemon in the namespace, its output in var/log/chaoslab/<service>.log."""
        log = self.root / f"var/log/chaoslab/{service}.log"
        with open(log, "ab") as output:
            # setsid --fork: the daemon is nobody's child here and survives this process
            detached = ["setsid", "--fork", *argv]
            subprocess.run(
                self.enclosure.command(detached) if self.enclosure else ["ip", "netns", "exec", self.namespace, *detached],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, check=True,
            )

    def stop(self, service: str) -> None:
        main = self.main_pid(service)
        every = self.pids(service)
        targets = [main] if main else every
        signal_pids(targets, signals.SIGTERM)
        signal_pids(every, signals.SIGCONT)  # a frozen process must wake to die, as systemd does
        if not wait_gone(every, timeout=5):
            wait_gone(signal_pids(self.pids(service), signals.SIGKILL), timeout=2)

    def after_boot(self, services: Sequence[str]) -> None:
        """No init in a namespace: the daemons are started here, in the order they need each other."""
        for service in START_ORDER:
            if service in services:
                self.start(service)
