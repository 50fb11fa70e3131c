"""Which architectures llama.cpp's converter converts by running code from the model folder.

For some architectures (Qwen v1, some DeepSeek, Dream, Nemotron …) the converter calls
`AutoTokenizer.from_pretrained(dir, trust_remote_code=True)`, which imports whatever Python file the folder's
`auto_map` names. Which ones is read from the converter's own source (it changes between releases): its
classes, the architectures each registers (`@ModelBase.register("A", "B")`), and whether a public method of the
class — or one it inherits and does not override — always reaches `trust_remote_code=True`, calls resolved
through the class's MRO. The result is cached beside the converter. Paths that reach it only for some folders
need an `auto_map` to name the code, which is refused for every architecture; no .py file is ever copied for the
converter either (__init__.py of the convert plugin).
"""

from __future__ import annotations

import ast
import contextlib
import json
from collections.abc import Iterable
from pathlib import Path

CACHE = "remote-code.json"


def _trusts(node: ast.AST) -> bool:
    """Whether a call in node passes trust_remote_code=True (or anything but a literal False)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            for kw in sub.keywords:
                if kw.arg == "trust_remote_code" and not (isinstance(kw.value, ast.Constant) and not kw.value.value):
                    return True
    return False


def _registered(cls: ast.ClassDef) -> list[str]:
    """The architecture names a class registers with a `….register("A", "B")` decorator."""
    names: list[str] = []
    for d in cls.decorator_list:
        if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "register":
            names += [a.value for a in d.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return names


Method = ast.FunctionDef | ast.AsyncFunctionDef


def _base_names(cls: ast.ClassDef) -> list[str]:
    return [b.attr if isinstance(b, ast.Attribute) else b.id for b in cls.bases
            if isinstance(b, ast.Attribute | ast.Name)]


def _unconditional(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements of a body that run whenever it runs (up to the first return or raise)."""
    out: list[ast.stmt] = []
    for st in body:
        if isinstance(st, ast.With | ast.AsyncWith):
            out += _unconditional(st.body)
        elif not isinstance(st, ast.If | ast.For | ast.AsyncFor | ast.While | ast.Try | ast.Match):
            out.append(st)
        if isinstance(st, ast.Return | ast.Raise):
            break
    return out


class _Program:
    """The converter's classes and functions, with calls resolved as Python would for an instance of a class:
    `self.x()` through that class's MRO, `super().x()` past the defining class, `f()` to a module function."""

    def __init__(self, trees: list[ast.Module]) -> None:
        self.classes: dict[str, ast.ClassDef] = {}
        self.functions: dict[str, Method] = {}
        for tree in trees:
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    self.classes[node.name] = node
                elif isinstance(node, Method):
                    self.functions[node.name] = node
        self._mro: dict[str, list[str]] = {}
        self._memo: dict[tuple[str, int], bool] = {}

    def mro(self, name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        if name in self._mro:
            return self._mro[name]
        cls = self.classes.get(name)
        if cls is None or name in seen:
            return []
        out = [name]
        for base in _base_names(cls):
            out += [c for c in self.mro(base, seen | {name}) if c not in out]
        self._mro[name] = out
        return out

    def methods(self, cls: str) -> dict[str, Method]:
        return {n.name: n for n in self.classes[cls].body if isinstance(n, Method)}

    def resolve(self, cls: str, method: str, after: str | None = None) -> tuple[str, Method] | None:
        order = self.mro(cls)
        if after is not None and after in order:
            order = [c for c in self.mro(after)[1:]]
        for c in order:
            found = self.methods(c).get(method)
            if found is not None:
                return c, found
        return None

    def reaches(self, cls: str, owner: str | None, func: Method, visiting: set[int]) -> bool:
        """Whether calling func on an instance of cls (func defined in owner) reaches trust_remote_code=True on
        every run: through statements of the function body itself (or its `with` blocks), not under an if, a
        loop or a try — a path that depends on the folder's files (LlamaModel's HybridDNA tokenizer branch) needs
        an auto_map to run any code, and that is refused on its own."""
        key = (cls, id(func))
        if key in self._memo:
            return self._memo[key]
        if id(func) in visiting:
            return False
        visiting.add(id(func))
        statements = _unconditional(func.body)
        found = any(_trusts(st) for st in statements)
        for sub in (n for st in statements for n in ast.walk(st)):
            if found:
                break
            if not isinstance(sub, ast.Call):
                continue
            f, target = sub.func, None
            if isinstance(f, ast.Attribute):
                obj = f.value
                if isinstance(obj, ast.Name) and obj.id in ("self", "cls"):
                    target = self.resolve(cls, f.attr)
                elif isinstance(obj, ast.Call) and isinstance(obj.func, ast.Name) and obj.func.id == "super":
                    target = self.resolve(cls, f.attr, after=owner)
                elif isinstance(obj, ast.Name) and obj.id in self.classes:
                    target = self.resolve(obj.id, f.attr)
            elif isinstance(f, ast.Name) and f.id in self.functions:
                target = (None, self.functions[f.id])  # type: ignore[assignment]
            if target is not None:
                found = self.reaches(cls, target[0], target[1], visiting)
        visiting.discard(id(func))
        self._memo[key] = found
        return found

    def needs_remote_code(self, cls: str) -> bool:
        """Whether converting with this class runs the model folder's code: a public method (or __init__) it has
        or inherits reaches trust_remote_code=True unconditionally."""
        names = {m for c in self.mro(cls) for m in self.methods(c) if not m.startswith("_") or m == "__init__"}
        for name in names:
            target = self.resolve(cls, name)
            if target is not None and self.reaches(cls, target[0], target[1], set()):
                return True
        return False


def analyse(sources: Iterable[str]) -> set[str]:
    """The architectures whose conversion reaches trust_remote_code=True, from the converter's source texts."""
    program = _Program([ast.parse(s) for s in sources])
    return {arch for name, cls in program.classes.items() if _registered(cls) and program.needs_remote_code(name)
            for arch in _registered(cls)}


def converter_sources(env: Path) -> list[Path]:
    """The converter's Python files inside its environment (a module, or a package of per-family modules)."""
    found: list[Path] = []
    for site in env.glob("lib*/python*/site-packages") or []:
        found += sorted(site.glob("convert_hf_to_gguf*.py"))
        found += sorted(p for d in site.glob("convert_hf_to_gguf*") if d.is_dir() for p in d.rglob("*.py"))
        found += sorted((site / "conversion").rglob("*.py")) if (site / "conversion").is_dir() else []
    for site in env.glob("Lib/site-packages"):
        found += sorted(site.glob("convert_hf_to_gguf*.py"))
    return found


def remote_code_architectures(env: Path) -> set[str] | None:
    """The architectures of this converter that need remote code (cached); None when its source is not found."""
    cache = env / CACHE
    try:
        return set(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    files = converter_sources(env)
    if not files:
        return None
    found = analyse(p.read_text(encoding="utf-8", errors="replace") for p in files)
    with contextlib.suppress(OSError):
        cache.write_text(json.dumps(sorted(found)))
    return found
