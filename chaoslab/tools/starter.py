"""`chaoslab init DIR`: a folder to start from, for the user to edit.

It holds the experiments, a topology (the lab's, in provision/topology.json's format), an Ansible
inventory that names the topology's nodes as hosts and points at that topology, and a Chaos Toolkit
var file that turns every experiment onto those hosts:

    DIR/experiments/*.json    chaos run DIR/experiments/failover.json          (the netns lab)
    DIR/topology.json         the pair's addresses, VIP, NICs, VRRP and HAProxy settings
    DIR/inventory.ini         which host plays which node, and how to reach it over ssh
    DIR/hosts.json            chaos run --var-file DIR/hosts.json DIR/experiments/failover.json

Nothing is overwritten: a file that exists already is an error, unless --force.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from chaoslab.errors import ChaoslabError
from chaoslab.lab.inventory import GROUPS
from chaoslab.lab.topology import Topology
from chaoslab.paths import EXPERIMENTS_DIR, TOPOLOGY_FILE

TOPOLOGY = "topology.json"
INVENTORY = "inventory.ini"
HOSTS_VARS = "hosts.json"
README = "README.md"


def inventory_text(topology: Topology, topology_file: str) -> str:
    """An inventory of the topology's nodes, each at its address on its first network."""
    lines = ["# Which host plays which node of the topology, and how to reach it over ssh (Ansible's format).",
             "# Edit ansible_host and ansible_user; chaoslab_topology names the topology file, relative to this one.",
             ""]
    for group, role in GROUPS.items():
        lines.append(f"[{group}]")
        lines += [f"{spec.name} ansible_host={spec.interfaces[0].address} ansible_user=root"
                  for spec in topology.nodes if spec.role == role]
        lines.append("")
    lines += ["[all:vars]", f"chaoslab_topology={topology_file}", ""]
    return "\n".join(lines)


def readme_text(directory: Path) -> str:
    return f"""# chaoslab experiments

Written by `chaoslab init {directory}`: edit them to fit your pair.

    chaoslab check experiments/*.json                          # check them against chaoslab
    chaos run experiments/failover.json                        # the netns lab on this machine
    chaos run --var-file {HOSTS_VARS} experiments/failover.json   # your hosts, from {INVENTORY}

Before the first run on your hosts, describe them: `{TOPOLOGY}` (addresses, VIP, NICs, VRRP and
HAProxy settings; `chaoslab import` writes it from their keepalived.conf and haproxy.cfg) and
`{INVENTORY}` (how to reach each host). Each run leaves its results under results/.
"""


def init_folder(directory: Path, force: bool = False) -> list[Path]:
    """Write the starting files into directory; return them."""
    experiments = sorted(EXPERIMENTS_DIR.glob("*.json"))
    if not experiments:
        raise ChaoslabError(f"this chaoslab has no experiments in {EXPERIMENTS_DIR}: reinstall it")
    topology = Topology.load(TOPOLOGY_FILE)
    files: dict[Path, str | Path] = {directory / "experiments" / path.name: path for path in experiments}
    files[directory / TOPOLOGY] = TOPOLOGY_FILE
    files[directory / INVENTORY] = inventory_text(topology, TOPOLOGY)
    files[directory / HOSTS_VARS] = json.dumps(
        {"configuration": {"chaoslab_provider": "ssh", "chaoslab_inventory": str(directory.resolve() / INVENTORY)}},
        indent=2) + "\n"
    files[directory / README] = readme_text(directory)
    existing = [path for path in files if path.exists()]
    if existing and not force:
        raise ChaoslabError(f"{directory} already has {', '.join(str(path) for path in existing[:3])}"
                            f"{' and more' if len(existing) > 3 else ''}: choose an empty folder, or --force "
                            "to overwrite them")
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, path)
        else:
            path.write_text(content, encoding="utf-8")
    return list(files)
