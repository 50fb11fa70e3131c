"""Every hook has a docs section with its exact signature, and a test_hook_<name> test."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from inferno import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(n for n, f in vars(hookspecs).items()
               if inspect.isfunction(f) and hasattr(f, "inferno_spec"))
DOCS = (ROOT / "docs" / "plugins.md").read_text()
TESTS = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))


def test_there_are_hooks() -> None:
    assert {"register_model_sources", "read_model_metadata", "register_routes", "register_commands",
            "startup", "shutdown"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    assert f"### {hook}\n" in DOCS, f"docs/plugins.md has no section for {hook}"
    section = DOCS.split(f"### {hook}\n", 1)[1].split("\n### ", 1)[0]
    params = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    m = re.search(rf"^def {hook}\(.*?\)(?: -> [^\n]*)?$", section, re.M | re.S)
    assert m, f"the {hook} section shows no signature"
    tree = ast.parse(m.group(0) + ": ...")
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    documented = [a.arg for a in func.args.args]
    assert documented == params, f"{hook}: documented {documented}, real {params}"
    # …and with the spec's types: the same annotations once module prefixes (quart., inferno.host.) are dropped
    spec = inspect.signature(getattr(hookspecs, hook))
    real = [_bare(str(p.annotation)) for p in spec.parameters.values()] + [_bare(str(spec.return_annotation))]
    shown = [_bare(ast.unparse(a.annotation)) if a.annotation else "" for a in func.args.args] + \
        [_bare(ast.unparse(func.returns)) if func.returns else ""]
    assert shown == real, f"{hook}: documented types {shown}, real {real}"


def _bare(annotation: str) -> str:
    return re.sub(r"\b[a-z_][a-z_0-9]*\.(?=[A-Za-z_])", "", annotation).replace(" ", "")


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    assert re.search(rf"def test_hook_{hook}\b", TESTS), f"no test_hook_{hook}"
