"""The Jinja sandbox chat templates render in, with a budget: a template comes from a request, the store
(/api/create) or a downloaded GGUF, and none of them may spin a thread forever or fill the memory.

Jinja's own sandbox keeps templates away from Python internals; on top of it every render gets, in the thread
that renders (the model's worker, or its runner process):
- a step budget and a deadline, counted on every loop iteration (each `for` iterates through `bounded_iter`, put
  in by a rewrite of the parsed template), call, attribute or item lookup, operator and filter;
- a size cap on any value it makes: `*`, `+`, `%` and `**` are intercepted and checked before they compute,
  `~` concatenation is checked before it joins, numeric arguments of calls and filters (widths, counts) above
  the cap are refused, results are measured, and so is the output as it is generated.
Breaking a budget raises TemplateBudgetError; the render stops there, its partial output dropped.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from inferno.errors import BadRequestError


class TemplateBudgetError(BadRequestError):
    pass


class _Budget(threading.local):
    steps = 0
    deadline = 0.0
    max_size = 1 << 62
    timeout = 0.0
    max_steps = 0
    active = False


_budget = _Budget()
_NUMBER = re.compile(r"\d{4,}")
_INT_BITS = 1 << 16  # integers a template makes: at most 65,536 bits (no 10 ** 10 ** 9)


def _tick() -> None:
    b = _budget
    if not b.active:
        return
    b.steps -= 1
    if b.steps < 0:
        raise TemplateBudgetError(f"chat template: more than {b.max_steps} steps (INFERNO_TEMPLATE_MAX_STEPS)")
    if b.steps & 255 == 0 and time.monotonic() > b.deadline:
        raise TemplateBudgetError(f"chat template: rendering took more than {b.timeout:g} s "
                                  "(INFERNO_TEMPLATE_TIMEOUT)")


def _too_big(n: int) -> None:
    if _budget.active and n > _budget.max_size:
        raise TemplateBudgetError(f"chat template: a value of {n} characters or items is over the limit of "
                                  f"{_budget.max_size} (INFERNO_TEMPLATE_MAX_STRING)")


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


def _check_numbers(values: Iterable[Any]) -> None:
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > _budget.max_size:
            _too_big(int(abs(v)))


def _check_format(text: str) -> None:
    """Widths and precisions in a format string ("%3000000000s", "{:>3000000000}") are sizes too."""
    _check_numbers(int(n) for n in _NUMBER.findall(text))


@contextmanager
def budget(max_steps: int, timeout: float, max_size: int) -> Generator[None]:
    b = _budget
    saved = (b.active, b.steps, b.deadline, b.max_size, b.timeout, b.max_steps)
    b.active, b.steps, b.max_size, b.timeout, b.max_steps = True, max_steps, max_size, timeout, max_steps
    b.deadline = time.monotonic() + timeout
    try:
        yield
    finally:
        b.active, b.steps, b.deadline, b.max_size, b.timeout, b.max_steps = saved


def render(template: Any, variables: dict[str, Any]) -> str:
    """Render with the budget of this thread, measuring the output as it is generated."""
    out: list[str] = []
    total = 0
    for piece in template.generate(**variables):
        total += len(piece)
        _too_big(total)
        _tick()
        out.append(piece)
    return "".join(out)


def bounded_filter(f: Any) -> Any:
    @functools.wraps(f)  # keeps jinja_pass_arg (pass_context / pass_environment)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_numbers(args[1:])  # the first argument is the filtered value (or the context)
        _check_numbers(kwargs.values())
        result = f(*args, **kwargs)
        _too_big(_size(result))
        return result

    return bounded


def make_environment(**options: Any) -> Any:
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.visitor import NodeTransformer

    class _Rewrite(NodeTransformer):
        def visit_For(self, node: Any) -> Any:
            self.generic_visit(node)
            node.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None,
                                   lineno=node.lineno)
            return node

        def visit_Concat(self, node: Any) -> Any:
            self.generic_visit(node)
            return nodes.Call(nodes.EnvironmentAttribute("bounded_concat"), list(node.nodes), [], None, None,
                              lineno=node.lineno)

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+", "%"])

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            return _Rewrite().visit(super()._parse(source, name, filename))

        @staticmethod
        def bounded_iter(iterable: Any) -> Iterator[Any]:
            for item in iterable:
                _tick()
                yield item

        @staticmethod
        def bounded_concat(*parts: Any) -> str:
            texts = [p if isinstance(p, str) else str(p) for p in parts]
            _too_big(sum(len(t) for t in texts))
            return "".join(texts)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _tick()
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if _size(seq) and isinstance(n, int):
                        _too_big(_size(seq) * max(0, n))
                if isinstance(left, int) and isinstance(right, int) and \
                        left.bit_length() + right.bit_length() > _INT_BITS:
                    _too_big(_budget.max_size + 1)
            elif operator == "+":
                _too_big(_size(left) + _size(right))
            elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                if right * abs(left).bit_length() > _INT_BITS:
                    _too_big(_budget.max_size + 1)
            elif operator == "%" and isinstance(left, str):
                _check_format(left)
            result = super().call_binop(context, operator, left, right)
            _too_big(_size(result))
            return result

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            _tick()
            if __obj is not __self.bounded_concat and __obj is not __self.bounded_iter:
                _check_numbers(args)
                _check_numbers(kwargs.values())
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str) and getattr(__obj, "__name__", "") in ("format", "format_map"):
                _check_format(owner)
            result = super().call(__context, __obj, *args, **kwargs)
            _too_big(_size(result))
            return result

        def getattr(self, obj: Any, attribute: str) -> Any:
            _tick()
            if isinstance(obj, str) and attribute in ("format", "format_map"):
                _check_format(obj)  # the sandbox hands out its own wrapper of str.format, no bound method
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            _tick()
            return super().getitem(obj, argument)

    env = BoundedEnvironment(**options)
    filters: dict[str, Any] = env.filters
    for name in list(filters):
        filters[name] = bounded_filter(filters[name])
    return env
