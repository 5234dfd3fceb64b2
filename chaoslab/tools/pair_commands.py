"""chaoslab import and chaoslab lint: a pair's own configs, read, judged and turned into a topology."""

from __future__ import annotations

import argparse
import base64
import io
import ipaddress
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from chaoslab.configs import daemons, lint, sources
from chaoslab.configs.importer import Imported, import_pair, prediction_rows
from chaoslab.errors import ChaoslabError
from chaoslab.lab import inventory as inventories
from chaoslab.lab.transport.ssh import SshConnection, SshTransport
from chaoslab.measure.results import write_json
from chaoslab.tools.tables import table

TOPOLOGY_FILE = "topology.json"  # written into DIR by chaoslab import
# on a host: its /etc/keepalived and /etc/haproxy as base64 of a gzipped tar (the transport carries text),
# failing as tar fails (a pipe would hide it)
COPY_ETC = (f't=$(mktemp) && tar -C /etc -czf "$t" {sources.KEEPALIVED_DIR} {sources.HAPROXY_DIR} && base64 -w0 "$t"; '
            'status=$?; rm -f "$t"; exit $status')


def imported(directory: Path, addresses: Mapping[str, str] | None = None) -> Imported:
    """The import of the pair in directory (DIR/<node>/keepalived|haproxy)."""
    return import_pair(sources.read_pair(directory), addresses)


def parse_addresses(values: Sequence[str]) -> dict[str, str]:
    """--address NODE=ADDRESS values, checked."""
    addresses = {}
    for value in values:
        node, separator, address = value.partition("=")
        if not separator or not node or not is_address(address):
            raise ChaoslabError(f"--address {value!r}: write it NODE=ADDRESS with an IP address, such as lb1=10.0.0.11")
        addresses[node] = address
    return addresses


def import_command(args: argparse.Namespace) -> int:
    """chaoslab import DIR: the topology written, what was assumed, the daemons' verdicts, the promises;
    exit status 1 when a daemon would not start with a file."""
    addresses = {}
    if args.from_inventory:
        for line in fetch_pair(Path(args.from_inventory), args.directory):
            print(line)
        addresses = inventory_addresses(Path(args.from_inventory))
    result = imported(args.directory, {**addresses, **parse_addresses(args.address)})
    output = args.output or args.directory / TOPOLOGY_FILE
    write_json(output, result.topology)
    print(f"topology written to {output}")
    for note in result.notes:
        print(f"note: {note}")
    refused = False
    for line, ok in verdict_lines(args.directory, result.topology):
        print(line)
        refused = refused or not ok
    print(table([("FAULT", "THE CONFIGS PROMISE", "WHY"), *prediction_rows(result.predictions)]))
    return 1 if refused else 0


def verdict_lines(directory: Path, topology: dict) -> list[tuple[str, bool]]:
    """What keepalived -t and haproxy -c say of each node's files, where they are installed, each
    seeing the node's copies in place of /etc/keepalived and /etc/haproxy: (line, whether the daemon
    would start with it; keepalived -t complains of much it starts despite)."""
    lines = []
    nics = {node["name"]: [interface["name"] for interface in node["interfaces"]] for node in topology["nodes"]}
    for files in sources.node_files(directory):
        folders = {str(host): files.root / folder for folder, host in sources.HOST_DIRS.items()}
        verdicts = (daemons.keepalived_verdict(files.keepalived, nics[files.node], files.node, folders),
                    daemons.haproxy_verdict(files.haproxy, folders=folders))
        for verdict in verdicts:
            if verdict is None:
                continue
            lines.append((f"{files.node}: {verdict.summary}", not verdict.refused))
            lines += [(f"    {message}", not verdict.refused) for message in verdict.messages if not verdict.ok]
    return lines


def lint_command(args: argparse.Namespace) -> int:
    """chaoslab lint DIR: the findings and their count by severity; exit status 1 when any is an error."""
    files = {files.node: files.root for files in sources.node_files(args.directory)}
    findings = lint.lint(sources.read_pair(args.directory), files)
    for line in lint.format_findings(findings):
        print(line)
    counts = {severity: sum(finding.severity == severity for finding in findings) for severity in lint.SEVERITIES}
    print(", ".join(f"{count} {severity}{'s' if count != 1 else ''}" for severity, count in counts.items()))
    return lint.exit_status(findings)


def inventory_addresses(inventory_path: Path) -> dict[str, str]:
    """The inventory's load balancers' addresses (ansible_host, where it is an IP address), for configs
    that do not name them."""
    return {host.name: host.address for host in inventories.load(inventory_path).hosts.values()
            if host.group == "loadbalancers" and is_address(host.address)}


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def fetch_pair(inventory_path: Path, directory: Path) -> list[str]:
    """Copy /etc/keepalived and /etc/haproxy of an Ansible inventory's load balancers into DIR/<node>/
    (one tar stream over ssh each, with the inventory's privileges: sudo where its user is not root).
    The folder is readable by its owner only: keepalived.conf holds the VRRP password."""
    inventory = inventories.load(inventory_path)
    balancers = [host for host in inventory.hosts.values() if host.group == "loadbalancers"]
    if len(balancers) != 2:
        raise ChaoslabError(f"inventory {inventory_path}: the group loadbalancers must hold the pair's two hosts, "
                            f"it holds {len(balancers)}")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    done = []
    with tempfile.TemporaryDirectory(prefix="chaoslab-import-") as control_dir:
        for host in balancers:
            connection = SshConnection(host, Path(control_dir), lab_host=inventory.lab_hosts)
            try:
                result = SshTransport(host.name, connection).run_as(
                    ["sh", "-c", COPY_ETC],
                    privileged=True, timeout=60)
            finally:
                connection.close()
            if result.returncode != 0 or not result.stdout.strip():
                raise ChaoslabError(f"could not read /etc/keepalived and /etc/haproxy on {host.name}: "
                                    f"{result.stderr.strip() or 'tar printed nothing'}")
            target = directory / host.name
            try:
                with tarfile.open(fileobj=io.BytesIO(base64.b64decode(result.stdout)), mode="r:gz") as archive:
                    archive.extractall(target, members=plain_members(archive, host.name))
            except (tarfile.TarError, EOFError, OSError, ValueError) as error:
                raise ChaoslabError(f"the copy of /etc/keepalived and /etc/haproxy from {host.name} is not whole "
                                    f"({error}); tar said: {result.stderr.strip() or 'nothing'}") from None
            done.append(f"{host.name}: /etc/keepalived and /etc/haproxy copied into {target}")
    return done


def plain_members(archive: tarfile.TarFile, host: str) -> list[tarfile.TarInfo]:
    """The archive's members, each a file, folder or link under /etc/keepalived or /etc/haproxy (the
    tarfile module's own filters are not in every Python 3.11 release)."""
    members = archive.getmembers()
    for member in members:
        path = PurePosixPath(member.name)
        linked = PurePosixPath(member.linkname) if member.islnk() else None
        outside = path.is_absolute() or ".." in path.parts or path.parts[:1] not in ((sources.KEEPALIVED_DIR,),
                                                                                    (sources.HAPROXY_DIR,))
        if outside or not (member.isfile() or member.isdir() or member.issym() or member.islnk()) or (
                linked is not None and (linked.is_absolute() or ".." in linked.parts)):
            raise ChaoslabError(f"the copy from {host} holds {member.name!r}, which is no file, folder or link under "
                                "/etc/keepalived or /etc/haproxy: nothing of it was kept")
    return members
