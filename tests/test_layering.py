"""The layers, read from the code's own imports (every `import`, at any depth, by the AST):
core < memory < agents < matching < environment < training; each imports only layers below it,
and only environment/ and training/ (and run.py) read Hydra/OmegaConf config.

`python -m tests.test_layering` prints every import that breaks a rule."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "memory", "agents", "matching", "environment", "training")
CONFIG_PACKAGES = ("hydra", "omegaconf")
CONFIG_FREE = ("core", "memory", "agents", "matching")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in the file, including those inside functions."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            for line, module in imports(path):
                target = module.split(".")[0]
                where = f"{path.relative_to(root)}:{line} imports {module}"
                if target in LAYERS and LAYERS.index(target) > LAYERS.index(layer):
                    found.append(f"{where} (a layer above {layer}/)")
                if target in CONFIG_PACKAGES and layer in CONFIG_FREE:
                    found.append(f"{where} ({layer}/ is a plain library: no config)")
    return found


def test_no_layer_imports_a_layer_above_it_and_libraries_read_no_config() -> None:
    assert violations() == []


def test_the_check_finds_an_upward_import_and_a_config_reader(tmp_path: Path) -> None:
    """The check above can fail: a planted upward import and a planted config read are found."""
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "core" / "bad.py").write_text("def f():\n    from agents.persona import Persona\n")
    (tmp_path / "memory" / "bad.py").write_text("from omegaconf import DictConfig\n")
    (tmp_path / "training" / "fine.py").write_text("import core.errors\nfrom agents import chat\n")
    found = violations(tmp_path)
    assert len(found) == 2
    assert found[0].startswith("core/bad.py:2 imports agents.persona")
    assert found[1].startswith("memory/bad.py:1 imports omegaconf")


if __name__ == "__main__":
    print("\n".join(violations()) or "no layering violations")
