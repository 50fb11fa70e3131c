"""Dependencies point one way: core ← toolkit ← server and CLI ← plugins (DESIGN.md, section 1).

Every `import` counts, also those inside functions and under TYPE_CHECKING: a type-only import upward is still
a dependency a reader has to carry. Plugins are held to `inferno.api` by tests/test_public_api.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import inferno

ROOT = Path(inferno.__file__).parent
CORE, TOOLKIT, APP, SUPPORT = 0, 1, 2, 3
# the first matching prefix decides; test support (fixtures, synthetic GGUFs) may use anything
LAYERS: list[tuple[str, int]] = [
    ("inferno.testing_", SUPPORT), ("inferno.pytest_plugin", SUPPORT),
    ("inferno.server", APP), ("inferno.cli", APP), ("inferno.__main__", APP),
    ("inferno.dialect", TOOLKIT), ("inferno.tables", TOOLKIT), ("inferno.progress", TOOLKIT),
    ("inferno.download", TOOLKIT),
    ("inferno.bodies", TOOLKIT), ("inferno.api", TOOLKIT),
    ("inferno.client", CORE),  # the native client stands alone: it must not need the server's modules
    ("inferno", CORE),
]
NAMES = {CORE: "core", TOOLKIT: "toolkit", APP: "server/CLI", SUPPORT: "test support"}


def layer(module: str) -> int:
    return next(level for prefix, level in LAYERS if module == prefix or module.startswith(prefix))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str | None = None) -> set[str]:
    """The inferno modules a file imports (relative imports resolved against its package)."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                out.add(node.module)
    return {m for m in out if m == "inferno" or m.startswith("inferno.")}


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_its_own(path: Path) -> None:
    mine = layer(module_name(path))
    upward = sorted(m for m in imports(path) if m != "inferno" and layer(m) > mine)
    assert not upward, (f"{module_name(path)} ({NAMES[mine]}) imports {', '.join(upward)} "
                        f"({', '.join(sorted({NAMES[layer(m)] for m in upward}))})")


def test_the_checker_finds_an_import_inside_a_function(tmp_path: Path) -> None:
    """So the test above can fail: a core module reaching for the CLI from inside a function is seen."""
    fake = tmp_path / "store.py"
    fake.write_text("def f():\n    from .cli.models import table\n    from inferno.server import create_app\n")
    found = imports(fake, "inferno.store")
    assert found == {"inferno.cli.models", "inferno.server"}
    assert all(layer(m) > layer("inferno.store") for m in found) and len(MODULES) > 40
