"""Plugins import only the host's declared public API (inferno.api), so the host can change behind it."""

from __future__ import annotations

import ast
from pathlib import Path

import inferno.api

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import of an inferno module in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "inferno":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "inferno"]
    return out


def plugin_files() -> list[Path]:
    files = [*ROOT.joinpath("inferno_plugins").rglob("*.py"), *ROOT.joinpath("examples").rglob("*.py")]
    return [f for f in files if "build" not in f.parts and ".venv" not in f.parts]


def test_plugins_import_only_the_public_api() -> None:
    offenders = []
    for f in plugin_files():
        for module, names in _imports(f):
            if module != "inferno.api":
                offenders.append(f"{f.relative_to(ROOT)}: {module}")
            offenders += [f"{f.relative_to(ROOT)}: inferno.api.{n}" for n in names
                          if (n.startswith("_") and n != "__version__") or n == "*"]
    assert not offenders, "plugins may import only inferno.api:\n" + "\n".join(offenders)


def test_the_public_api_resolves_and_is_declared() -> None:
    assert inferno.api.__all__ == sorted(set(inferno.api.__all__), key=inferno.api.__all__.index)
    missing = [n for n in inferno.api.__all__ if not hasattr(inferno.api, n)]
    assert not missing
    public = {n for n in vars(inferno.api) if n[0] not in "_@" and n != "annotations"}
    assert public <= set(inferno.api.__all__), public - set(inferno.api.__all__)


def test_the_public_api_imports_nothing_heavy() -> None:
    from tests.conftest import heavy_imports

    _, heavy = heavy_imports("import inferno.api", ("quart", "hypercorn", "llama_cpp", "huggingface_hub", "numpy"))
    assert heavy == []


def test_openapi_keeps_same_named_body_models_of_two_dialects_apart(tmp_path: Path) -> None:
    from inferno.config import load_settings
    from inferno.host import Inferno
    from inferno.server import create_app, openapi_document

    doc = openapi_document(create_app(Inferno(load_settings({"INFERNO_HOME": str(tmp_path)}))))
    schemas = doc["components"]["schemas"]
    chat_messages = [n for n in schemas if n.endswith("ChatMessage")]
    assert len(chat_messages) >= 2  # the OpenAI and the Ollama dialect each have their own
    refs = [op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for ops in doc["paths"].values() for op in ops.values() if "requestBody" in op]
    assert refs and all(r in schemas for r in refs)
