"""Where a pair's configuration files are: a folder per load balancer, as its hosts hold them.

    DIR/<node>/keepalived/   the content of that host's /etc/keepalived (keepalived.conf, its includes, scripts)
    DIR/<node>/haproxy/      the content of its /etc/haproxy (haproxy.cfg, errors/, certificates)

The folder's name is the node's name in the imported topology; `read_pair` parses it
(`chaoslab import --from-inventory` fills such a folder from the hosts over ssh). Paths the configs write under
/etc/keepalived or /etc/haproxy are looked up in the node's folder, never on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from chaoslab.configs import haproxy, keepalived
from chaoslab.configs.model import LoadBalancerConfig, haproxy_config, keepalived_config
from chaoslab.errors import ChaoslabError

KEEPALIVED_DIR = "keepalived"
HAPROXY_DIR = "haproxy"
KEEPALIVED_FILE = "keepalived.conf"
HAPROXY_FILE = "haproxy.cfg"
HOST_DIRS = {KEEPALIVED_DIR: PurePosixPath("/etc/keepalived"), HAPROXY_DIR: PurePosixPath("/etc/haproxy")}
LAYOUT = (f"DIR/<node>/{KEEPALIVED_DIR}/{KEEPALIVED_FILE} and DIR/<node>/{HAPROXY_DIR}/{HAPROXY_FILE}, "
          "one folder per load balancer holding its /etc/keepalived and /etc/haproxy")


@dataclass(frozen=True)
class NodeFiles:
    """One load balancer's folder."""

    node: str
    root: Path

    @property
    def keepalived(self) -> Path:
        return self.root / KEEPALIVED_DIR / KEEPALIVED_FILE

    @property
    def haproxy(self) -> Path:
        return self.root / HAPROXY_DIR / HAPROXY_FILE

    def host_path(self, path: str) -> Path | None:
        """Where a path of the host's (/etc/keepalived/check.sh) is in this folder, if under one it holds."""
        posix = PurePosixPath(path)
        for folder, host_dir in HOST_DIRS.items():
            if posix == host_dir or host_dir in posix.parents:
                return self.root / folder / posix.relative_to(host_dir)
        return None


def node_files(directory: Path) -> list[NodeFiles]:
    """The pair's folders, checked: two load balancers, each with both files."""
    if not directory.is_dir():
        raise ChaoslabError(f"{directory} is not a folder; the configs are read from {LAYOUT}")
    nodes = [NodeFiles(entry.name, entry) for entry in sorted(directory.iterdir())
             if entry.is_dir() and not entry.name.startswith(".")]
    problems = [f"{path} is missing" for files in nodes for path in (files.keepalived, files.haproxy)
                if not path.is_file()]
    if len(nodes) != 2:
        found = ", ".join(files.node for files in nodes) or "none"
        problems.insert(0, f"{directory} must hold two load balancers' folders, it holds {len(nodes)} ({found})")
    if problems:
        raise ChaoslabError("; ".join(problems) + f"; the layout is {LAYOUT}")
    return nodes


def read_node(files: NodeFiles) -> LoadBalancerConfig:
    """Both daemons' configs of one load balancer, parsed and mapped."""
    parsed_keepalived = keepalived.parse(files.keepalived, config_id=files.node, resolve=files.host_path)
    parsed_haproxy = haproxy.parse(files.haproxy)
    return LoadBalancerConfig(files.node, keepalived_config(parsed_keepalived), haproxy_config(parsed_haproxy))


def read_pair(directory: Path) -> list[LoadBalancerConfig]:
    """Both load balancers of DIR, parsed and mapped, in the order of their folders' names."""
    return [read_node(files) for files in node_files(directory)]
