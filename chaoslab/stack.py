"""What a service of the stack is: the one table every layer reads (the stack, as data).

chaoslab names the stack's services by what they do (httpd, haproxy, keepalived) and
the lab's own helper, the HAProxy checker of the fast profile (haproxy-health). Each
distribution family names their units, processes and packages its own way; the
netns lab runs Debian's binaries with pid files under each node's root. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Service:
    name: str
    role: str  # the role of the nodes that run it: loadbalancer or webserver
    units: dict[str, str]  # family -> systemd unit
    processes: dict[str, str]  # family -> process name (/proc/PID/comm)
    packages: dict[str, str] = field(default_factory=dict)  # family -> package (none: chaoslab's own)
    version_command: dict[str, tuple[str, ...]] = field(default_factory=dict)  # family -> argv printing the version
    version_pattern: str = ""  # the version in that output: its first group
    lab_pid_file: str = ""  # in the netns lab: the main process's pid file, under the node's root
    helper: bool = False  # run only where a profile needs it, not part of the stack itself


SERVICES: dict[str, Service] = {service.name: service for service in (
    Service("httpd", "webserver",
            units={"debian": "apache2", "rhel": "httpd"}, processes={"debian": "apache2", "rhel": "httpd"},
            packages={"debian": "apache2", "rhel": "httpd"},
            version_command={"debian": ("apache2", "-v"), "rhel": ("httpd", "-v")}, version_pattern=r"Apache/(\S+)",
            lab_pid_file="run/apache2.pid"),
    Service("haproxy", "loadbalancer",
            units={"debian": "haproxy", "rhel": "haproxy"}, processes={"debian": "haproxy", "rhel": "haproxy"},
            packages={"debian": "haproxy", "rhel": "haproxy"},
            version_command={"debian": ("haproxy", "-v"), "rhel": ("haproxy", "-v")},
            version_pattern=r"HAProxy version (\S+)", lab_pid_file="run/haproxy.pid"),
    Service("keepalived", "loadbalancer",
            units={"debian": "keepalived", "rhel": "keepalived"}, processes={"debian": "keepalived", "rhel": "keepalived"},
            packages={"debian": "keepalived", "rhel": "keepalived"},
            version_command={"debian": ("keepalived", "--version"), "rhel": ("keepalived", "--version")},
            version_pattern=r"Keepalived v(\S+)", lab_pid_file="run/keepalived.pid"),
    Service("haproxy-health", "loadbalancer",
            units={"debian": "chaoslab-haproxy-health", "rhel": "chaoslab-haproxy-health"},
            processes={"debian": "haproxy-health", "rhel": "haproxy-health"},
            lab_pid_file="run/haproxy-health.pid", helper=True),
)}
HEALTH_CHECKER = "haproxy-health"  # the checker a load balancer runs when Keepalived tracks HAProxy through a file
ROLES = ("loadbalancer", "webserver")


def stack_services(role: str) -> tuple[str, ...]:
    """The stack's own services on a node of that role (helpers are a profile's to add)."""
    return tuple(name for name, service in SERVICES.items() if service.role == role and not service.helper)
