"""The provisioners a VM runs, checked without a VM: shell scripts lint clean, the
Vagrantfile validates and builds its machines from the topology, install.sh picks
the right packages, and every node's rendered configuration passes its daemon's
own config check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROVISION_DIR = PROJECT_DIR / "provision"
TOPOLOGY = json.loads((PROVISION_DIR / "topology.json").read_text(encoding="utf-8"))
NODES = [node["name"] for node in TOPOLOGY["nodes"]]
LOADBALANCERS = [node["name"] for node in TOPOLOGY["nodes"] if node["role"] == "loadbalancer"]
WEBSERVERS = [node["name"] for node in TOPOLOGY["nodes"] if node["role"] == "webserver"]
VIP_NETWORK = TOPOLOGY["vip"]["network"]

ROLE_FILES = {
    "loadbalancer": [
        "etc/haproxy/haproxy.cfg",
        "etc/keepalived/keepalived.conf",
        "etc/keepalived/chaoslab/check_haproxy.sh",
        "etc/keepalived/chaoslab/vrrp_notify.sh",
    ],
    "webserver": [
        "etc/chaoslab/httpd-site.conf",
        "etc/chaoslab/httpd-lab.conf",
        "var/www/html/index.html",
    ],
}


def node_spec(name: str) -> dict:
    return next(node for node in TOPOLOGY["nodes"] if node["name"] == name)


def address(name: str, network: str) -> str:
    return next(i["address"] for i in node_spec(name)["interfaces"] if i["network"] == network)


def tool(name: str) -> str:
    """The path of a command this test needs; skips the test when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run(list(args), capture_output=True, text=True, **kwargs)


def configure(node: str, root: Path) -> Path:
    """Render a node the way the netns lab does: configure.sh with a root of its own."""
    result = run("bash", str(PROVISION_DIR / "configure.sh"), "--node", node, "--root", str(root))
    assert result.returncode == 0, result.stderr
    return root


def write_stub(directory: Path, name: str, body: str) -> None:
    stub = directory / name
    stub.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    stub.chmod(0o755)


# --- shell scripts -------------------------------------------------------------------------------


def test_provision_scripts_pass_shellcheck():
    scripts = sorted(str(path) for path in PROVISION_DIR.glob("*.sh"))
    assert scripts, "no scripts in provision/"
    result = run(tool("shellcheck"), *scripts, cwd=PROJECT_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("node", LOADBALANCERS)
def test_rendered_keepalived_scripts_pass_shellcheck(node: str, tmp_path: Path):
    """The templates are /bin/sh scripts once rendered; check what Keepalived runs."""
    root = configure(node, tmp_path)
    scripts = [str(root / path) for path in ROLE_FILES["loadbalancer"] if path.endswith(".sh")]
    result = run(tool("shellcheck"), "-s", "sh", *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


# --- install.sh ----------------------------------------------------------------------------------


def run_install(stubs: Path, *args: str) -> subprocess.CompletedProcess:
    """install.sh with only the stub commands on PATH: nothing is installed for real."""
    return run(
        shutil.which("bash"),
        str(PROVISION_DIR / "install.sh"),
        *args,
        env={"PATH": str(stubs), "STUB_LOG": str(stubs / "calls.log")},
    )


@pytest.fixture
def debian_stubs(tmp_path: Path) -> Path:
    """apt-get and dpkg-query stubs; packages listed in 'missing' read as not installed,
    and the user is not root."""
    write_stub(tmp_path, "apt-get", 'printf "apt-get %s\\n" "$*" >> "$STUB_LOG"\n')
    write_stub(
        tmp_path,
        "dpkg-query",
        "for last; do :; done\n"
        'while read -r name; do [ "$name" = "$last" ] && exit 1; done < "${0%/*}/missing"\n'
        "printf 'ii '\n",
    )
    write_stub(tmp_path, "id", "echo 1000\n")
    (tmp_path / "missing").write_text("", encoding="utf-8")
    return tmp_path


@pytest.fixture
def rhel_stubs(tmp_path: Path) -> Path:
    """dnf and rpm stubs, as debian_stubs."""
    write_stub(tmp_path, "dnf", 'printf "dnf %s\\n" "$*" >> "$STUB_LOG"\n')
    write_stub(
        tmp_path,
        "rpm",
        "for last; do :; done\n"
        'while read -r name; do [ "$name" = "$last" ] && exit 1; done < "${0%/*}/missing"\n'
        "exit 0\n",
    )
    write_stub(tmp_path, "id", "echo 1000\n")
    (tmp_path / "missing").write_text("", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("role", "packages"),
    [("loadbalancer", ["haproxy", "keepalived", "tcpdump"]), ("webserver", ["apache2", "tcpdump"])],
)
def test_install_skips_the_package_manager_when_all_is_installed(debian_stubs: Path, role: str, packages):
    result = run_install(debian_stubs, "--role", role)
    assert result.returncode == 0, result.stderr
    assert not (debian_stubs / "calls.log").exists()
    for package in packages:
        assert package in result.stdout


def test_install_names_the_missing_packages(debian_stubs: Path):
    (debian_stubs / "missing").write_text("keepalived\ntcpdump\n", encoding="utf-8")
    result = run_install(debian_stubs, "--role", "loadbalancer")
    # The stubs say "not root": install.sh stops before running apt-get.
    assert result.returncode == 1
    assert "keepalived tcpdump" in result.stderr
    assert "haproxy" not in result.stderr
    assert not (debian_stubs / "calls.log").exists()


def test_install_uses_rhel_package_names(rhel_stubs: Path):
    result = run_install(rhel_stubs, "--role", "webserver")
    assert result.returncode == 0, result.stderr
    assert "httpd" in result.stdout and "apache2" not in result.stdout
    (rhel_stubs / "missing").write_text("httpd\n", encoding="utf-8")
    result = run_install(rhel_stubs, "--role", "webserver")
    assert result.returncode == 1
    assert "httpd" in result.stderr
    assert not (rhel_stubs / "calls.log").exists()


@pytest.mark.parametrize("args", [[], ["--role"], ["--role", "database"]])
def test_install_rejects_a_bad_role(debian_stubs: Path, args: list[str]):
    result = run_install(debian_stubs, *args)
    assert result.returncode == 2
    assert "usage" in result.stderr


# --- Vagrantfile ---------------------------------------------------------------------------------


def vagrant_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """Vagrant kept away from the user's home and the checkout, with a VBoxManage stub
    that only answers --version: enough for `vagrant validate` to check the VirtualBox
    provider's settings on a host without VirtualBox."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    write_stub(stubs, "VBoxManage", '[ "$1" = --version ] && echo 7.0.6r155176\nexit 0\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VAGRANT_", "CHAOSLAB_"))}
    env.update(
        PATH=f"{stubs}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        VAGRANT_HOME=str(tmp_path / "vagrant.d"),
        VAGRANT_DOTFILE_PATH=str(tmp_path / "dot-vagrant"),
        VAGRANT_CHECKPOINT_DISABLE="1",
    )
    env.update({key: value for key, value in overrides.items() if value is not None})
    return env


@pytest.mark.parametrize("default_provider", [None, "virtualbox"])
def test_vagrant_validate(tmp_path: Path, default_provider: str | None):
    env = vagrant_env(tmp_path, VAGRANT_DEFAULT_PROVIDER=default_provider)
    result = run(tool("vagrant"), "validate", cwd=PROJECT_DIR, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_vagrant_validate_rejects_an_unknown_profile(tmp_path: Path):
    env = vagrant_env(tmp_path, CHAOSLAB_PROFILE="no-such-profile")
    result = run(tool("vagrant"), "validate", cwd=PROJECT_DIR, env=env, timeout=180)
    assert result.returncode != 0
    assert "no-such-profile" in result.stdout + result.stderr


def probe_vagrantfile(tmp_path: Path, plugins: str = "vagrant-libvirt", **env: str) -> dict:
    """What the Vagrantfile configures, read by tests/vagrantfile_probe.rb (plain Ruby)."""
    probe = Path(__file__).with_name("vagrantfile_probe.rb")
    result = run(
        tool("ruby"),
        str(probe),
        str(PROJECT_DIR / "Vagrantfile"),
        env=vagrant_env(tmp_path, PROBE_PLUGINS=plugins, **env),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_vagrantfile_builds_every_node_from_the_topology(tmp_path: Path):
    config = probe_vagrantfile(tmp_path, CHAOSLAB_LIBVIRT_DRIVER="kvm")
    assert config["box"] == TOPOLOGY["vagrant"]["box"]
    assert list(config["machines"]) == NODES
    for name, machine in config["machines"].items():
        spec = node_spec(name)
        assert machine["hostname"] == name
        expected = [(i["network"], i["address"]) for i in spec["interfaces"]]

        virtualbox = machine["providers"]["virtualbox"]
        assert virtualbox["settings"]["memory"] == TOPOLOGY["vagrant"]["memory"]
        assert virtualbox["settings"]["cpus"] == TOPOLOGY["vagrant"]["cpus"]
        networks = virtualbox["networks"]
        assert [n["options"]["ip"] for n in networks] == [a for _, a in expected]
        for (network, _), defined in zip(expected, networks, strict=True):
            kind = "public_network" if network == VIP_NETWORK else "private_network"
            assert defined["type"] == kind

        libvirt = machine["providers"]["libvirt"]
        assert libvirt["settings"]["driver"] == "kvm"
        assert "cpu_mode" not in libvirt["settings"]
        assert libvirt["settings"]["management_network_keep"] is True
        networks = libvirt["networks"]
        assert [n["options"]["ip"] for n in networks] == [a for _, a in expected]
        assert all(n["type"] == "private_network" for n in networks)
        assert [n["options"]["libvirt__network_name"] for n in networks] == [
            f"chaoslab-{network}" for network, _ in expected
        ]

        file_upload, shell = machine["provisioners"]
        assert file_upload["type"] == "file"
        assert Path(file_upload["options"]["source"]) == PROVISION_DIR
        assert shell["type"] == "shell"
        script = shell["options"]["inline"]
        assert f"install.sh --role {spec['role']}" in script
        assert f"configure.sh --node {name} --profile {TOPOLOGY['default_profile']} --root /" in script


def test_vagrantfile_settings_from_the_environment(tmp_path: Path):
    config = probe_vagrantfile(
        tmp_path, CHAOSLAB_LIBVIRT_DRIVER="qemu", CHAOSLAB_BOX="generic/debian12", CHAOSLAB_BRIDGE="enp3s0"
    )
    assert config["box"] == "generic/debian12"
    for name, machine in config["machines"].items():
        settings = machine["providers"]["libvirt"]["settings"]
        assert (settings["driver"], settings["cpu_mode"], settings["cpu_model"]) == ("qemu", "custom", "qemu64")
        for network in machine["providers"]["virtualbox"]["networks"]:
            if network["type"] == "public_network":
                assert network["options"]["bridge"] == "enp3s0", name


def test_vagrantfile_without_the_libvirt_plugin(tmp_path: Path):
    config = probe_vagrantfile(tmp_path, plugins="")
    for machine in config["machines"].values():
        assert list(machine["providers"]) == ["virtualbox"]


# --- rendered configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("node", NODES)
def test_configure_renders_the_node_files(node: str, tmp_path: Path):
    root = configure(node, tmp_path)
    for relative in ROLE_FILES[node_spec(node)["role"]]:
        assert (root / relative).is_file(), relative


@pytest.mark.parametrize("node", WEBSERVERS)
def test_web_page_names_its_server(node: str, tmp_path: Path):
    root = configure(node, tmp_path)
    page = (root / "var/www/html/index.html").read_text(encoding="utf-8")
    assert page.strip() == f"{address(node, 'private')} {node}.{TOPOLOGY['domain']}"


@pytest.mark.parametrize("node", LOADBALANCERS)
def test_haproxy_accepts_the_rendered_config(node: str, tmp_path: Path):
    haproxy = tool("haproxy")
    root = configure(node, tmp_path)
    result = run(haproxy, "-c", "-f", str(root / "etc/haproxy/haproxy.cfg"))
    assert result.returncode == 0, result.stdout + result.stderr


def host_interface() -> str:
    """A non-loopback interface of this host (keepalived -t wants the VRRP interface to exist)."""
    names = sorted(path.name for path in Path("/sys/class/net").iterdir() if path.name != "lo")
    if not names:
        pytest.skip("no network interface but lo on this host")
    return names[0]


@pytest.mark.parametrize("node", LOADBALANCERS)
def test_keepalived_accepts_the_rendered_config(node: str, tmp_path: Path):
    keepalived = tool("keepalived")
    usage = run(keepalived, "--help")
    if "--config-test" not in usage.stdout + usage.stderr:
        pytest.skip("this keepalived has no --config-test")
    # Rendered as on a VM whose VRRP interface has another name than the topology's.
    interface = host_interface()
    result = run(
        "python3",
        str(PROVISION_DIR / "render.py"),
        "--node",
        node,
        "--root",
        str(tmp_path),
        "--vip-interface",
        interface,
    )
    assert result.returncode == 0, result.stderr
    config = tmp_path / "etc/keepalived/keepalived.conf"
    assert f"interface {interface}\n" in config.read_text(encoding="utf-8")
    result = run(keepalived, "--config-test", "-f", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", sorted(TOPOLOGY["profiles"]))
@pytest.mark.parametrize("node", LOADBALANCERS)
def test_every_profile_renders_configs_the_daemons_accept(node: str, profile: str, tmp_path: Path):
    haproxy, keepalived = tool("haproxy"), tool("keepalived")
    result = run("python3", str(PROVISION_DIR / "render.py"), "--node", node, "--profile", profile,
                 "--root", str(tmp_path), "--vip-interface", host_interface())
    assert result.returncode == 0, result.stderr
    result = run(haproxy, "-c", "-f", str(tmp_path / "etc/haproxy/haproxy.cfg"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(keepalived, "--config-test", "-f", str(tmp_path / "etc/keepalived/keepalived.conf"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("node", WEBSERVERS)
def test_apache_accepts_the_rendered_lab_config(node: str, tmp_path: Path):
    apache2 = tool("apache2")
    root = configure(node, tmp_path)
    result = run(apache2, "-t", "-f", str(root / "etc/chaoslab/httpd-lab.conf"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_notify_script_logs_states_only(tmp_path: Path):
    """Keepalived 2 writes MASTER_RX_LOWER_PRI to the FIFO when a master hears a lower priority's
    advert; it is no state change and must not reach the state log (the master stays MASTER)."""
    root = configure("haproxy-1", tmp_path)
    fifo_lines = tmp_path / "fifo.txt"
    fifo_lines.write_text('INSTANCE "VI_1" BACKUP 103\nINSTANCE "VI_1" MASTER 103\n'
                          'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 103\nGROUP "VG_1" MASTER\nINSTANCE "VI_1" FAULT 103\n')
    (root / "run/chaoslab").mkdir(parents=True, exist_ok=True)
    result = run("sh", str(root / "etc/keepalived/chaoslab/vrrp_notify.sh"), str(fifo_lines))
    assert result.returncode == 0, result.stderr
    log = (root / "run/chaoslab/vrrp-state.log").read_text().splitlines()
    assert [line.split()[1] for line in log] == ["BACKUP", "MASTER", "FAULT"]
