"""chaoslab as a user installs it: the wheel, built from this tree, in a fresh virtualenv outside any
checkout, carries what it runs (provisioners, templates, topology, experiments) and starts a folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaoslab.paths import PROJECT_DIR

NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "results", "build", "*.egg-info", "__pycache__", ".*_cache",
                                     "tests", ".vagrant")


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the wheel installed (its dependencies from the package index or pip's cache)."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    shutil.copytree(PROJECT_DIR, source, ignore=NOT_SHIPPED)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w", str(root / "dist"),
         str(source)], cwd=root)
    [wheel] = (root / "dist").glob("chaoslab-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)], cwd=root, timeout=600)
    shutil.rmtree(source)
    return venv


def test_the_installed_wheel_finds_its_files_outside_any_checkout(installed: Path, tmp_path: Path):
    found = run([str(installed / "bin" / "python"), "-c",
                 "from chaoslab import paths; print(paths.PROJECT_DIR); print(paths.results_dir())"], cwd=tmp_path)
    project, results = found.stdout.split()
    assert Path(project) == installed / "share" / "chaoslab" and Path(results) == tmp_path / "results"
    for shipped in ("provision/topology.json", "provision/configure.sh", "provision/render.py",
                    "provision/templates/haproxy.cfg", "provision/templates/keepalived.conf", "experiments/failover.json",
                    "Vagrantfile", "docs/grafana-dashboard.json"):
        assert (Path(project) / shipped).is_file(), shipped


def test_chaoslab_init_writes_a_folder_that_chaoslab_check_accepts(installed: Path, tmp_path: Path):
    chaoslab = str(installed / "bin" / "chaoslab")
    written = run([chaoslab, "init", "mine"], cwd=tmp_path).stdout
    assert "wrote mine/experiments/failover.json" in written and "wrote mine/inventory.ini" in written
    experiments = sorted(str(path) for path in (tmp_path / "mine" / "experiments").glob("*.json"))
    assert len(experiments) == len(list((PROJECT_DIR / "experiments").glob("*.json")))
    checked = run([chaoslab, "check", *experiments], cwd=tmp_path).stdout
    assert checked.count("ok: ") == len(experiments)
    inventory = run([chaoslab, "check", "--inventory", "mine/inventory.ini", experiments[0]], cwd=tmp_path).stdout
    assert "against the topology mine/topology.json" in inventory
    again = subprocess.run([chaoslab, "init", "mine"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already has" in again.stderr and "--force" in again.stderr
