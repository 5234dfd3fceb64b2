"""What the code imports is what the package declares: a fresh `pip install` brings every module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from chaoslab.commands import PACKAGES
from chaoslab.lab import box, libvirt_host
from chaoslab.lab.providers import netns
from chaoslab.paths import PROJECT_DIR, PROVISION_DIR


def top_level_imports(paths: list[Path]) -> set[str]:
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {normalized(re.split(r"[<>=!~\[; ]", requirement)[0]) for requirement in project["dependencies"]}
    third_party = top_level_imports(sorted((PROJECT_DIR / "chaoslab").rglob("*.py"))) \
        - set(sys.stdlib_module_names) - {"chaoslab"}
    distributions = packages_distributions()
    undeclared = {module: distributions.get(module) for module in third_party
                  if not {normalized(name) for name in distributions.get(module, [module])} & declared}
    assert not undeclared, f"imported but not in pyproject.toml's dependencies (module: distributions): {undeclared}"


def test_the_renderer_needs_nothing_but_python():
    """provision/render.py runs on every VM with the distribution's python3 and no pip."""
    assert top_level_imports([PROVISION_DIR / "render.py"]) <= set(sys.stdlib_module_names)


def host_packages() -> set[str]:
    """What provision/setup-host.sh installs: install.sh's lab role and provision/host-packages."""
    lines = (PROVISION_DIR / "host-packages").read_text(encoding="utf-8").splitlines()
    extra = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    listed = subprocess.run(["bash", str(PROVISION_DIR / "install.sh"), "--role", "lab", "--list", "--", *extra],
                            capture_output=True, text=True, check=True).stdout.split()
    return set(listed)


def test_the_set_up_installs_the_package_of_every_program_chaoslab_runs():
    """A bare Debian (a container image has only its essential packages) lacks mkfs.ext4 and more:
    nothing may be assumed present."""
    missing = {binary: package for binary, package in PACKAGES.items() if package not in host_packages()}
    assert not missing, f"provision/setup-host.sh does not install: {missing}"
    unknown = [tool for tool in (*box.TOOLS, *netns.BINARIES, *libvirt_host.BINARIES) if tool not in PACKAGES]
    assert not unknown, f"programs run without a package named in chaoslab.commands.PACKAGES: {unknown}"
