"""The layers a reader sees in the folder names, held by a rule: a module imports only from its own
layer or the ones below it. From the bottom: the base (errors, commands, paths, the services table),
the instrument and checker (measure/), a pair's own configs as read (configs/), the system under test
(lab/), the Chaos Toolkit activities, the control, the tools on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chaoslab.paths import PROJECT_DIR

LAYERS = ("base", "measure", "configs", "lab", "activities", "control", "tools")
ACTIVITIES = ("vip", "service", "keepalived", "node", "network")
CONTROL = ("control", "safeguard", "checks")


def layer(module: str) -> str:
    """The layer of a module of chaoslab, by its dotted name."""
    parts = module.split(".")[1:]
    head = parts[0] if parts else ""
    if head in ("measure", "configs", "lab", "tools"):
        return head
    if head in ACTIVITIES:
        return "activities"
    if head in CONTROL:
        return "control"
    return "base"


def module_name(path: Path, project: Path) -> str:
    relative = path.relative_to(project).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every chaoslab module the file imports, lazily or not."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("chaoslab")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("chaoslab"):
            found += [(node.lineno, f"{node.module}.{alias.name}") if node.module == "chaoslab" else (node.lineno, node.module)
                      for alias in node.names]
    return found


def upward_imports(project: Path) -> list[str]:
    """Every import of the package under project that reaches a higher layer, as file:line: what."""
    violations = []
    for path in sorted((project / "chaoslab").rglob("*.py")):
        importer = module_name(path, project)
        for line, module in imported(path):
            if LAYERS.index(layer(module)) > LAYERS.index(layer(importer)):
                violations.append(f"{path.relative_to(project)}:{line}: {layer(importer)} imports "
                                  f"{layer(module)} ({module})")
    return violations


def test_nothing_imports_upward():
    assert upward_imports(PROJECT_DIR) == []


@pytest.mark.parametrize("importer, module", [("measure/analysis.py", "chaoslab.lab.topology"),
                                              ("lab/node.py", "chaoslab.service.actions"),
                                              ("vip/probes.py", "chaoslab.control")])
def test_the_rule_catches_an_upward_import(tmp_path: Path, importer: str, module: str):
    """The rule fails on a tree with one upward import."""
    target = tmp_path / "chaoslab" / importer
    target.parent.mkdir(parents=True)
    target.write_text(f"import {module}\n")
    assert upward_imports(tmp_path) == [f"chaoslab/{importer}:1: {layer('chaoslab.' + importer.replace('/', '.'))} "
                                        f"imports {layer(module)} ({module})"]
