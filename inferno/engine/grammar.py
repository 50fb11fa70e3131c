"""GBNF grammars for structured output: JSON mode, a JSON schema, a forced tool call.

llama-cpp-python's JSON-schema converter is used for the schema → GBNF work, with one correction: its
`char` rule (`[^"\\]`) lets a JSON string hold raw control characters (a newline, a tab), so a schema-
constrained answer could stop with text that `json.loads` rejects. llama.cpp's own converter excludes them
(`[^"\\\x7F\x00-\x1F]`); so do we, in every grammar made here.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.protocol import EngineSettings

# The string character rule of llama.cpp's json-schema-to-grammar (common/json-schema-to-grammar.cpp).
JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)


def _fix_char_rule(gbnf: str) -> str:
    return _CHAR_RULE.sub(lambda _: "char ::= " + JSON_CHAR, gbnf)


# GBNF tokens that matter for its shape: comments, literals and character classes (skipped whole, so brackets
# inside them do not count), groups, and {m,n} repetitions; rule names and references count as one item each.
_TOKEN = re.compile(r'#[^\n]*|"(?:\\.|[^"\\])*"?|\[(?:\\.|[^\]\\])*\]?|\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}|[()]'
                    r"|[A-Za-z_][\w-]*")
_REPEAT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
                "minContains", "maxContains")
_PATTERN_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_CACHEABLE = 16 * 1024  # grammars made from schemas are cached only up to this size
_CACHED = 64  # schemas whose grammars are kept (a client sends a few over and over); the oldest goes first
_cache: dict[str, str] = {}


def check_grammar(gbnf: str, limits: EngineSettings, param: str = "grammar") -> str:
    """The grammar, refused (400 naming the setting) when llama.cpp's recursive parser or its expansion of
    repetitions could exhaust the stack or memory: too long, groups nested too deeply, or {m,n} repetitions
    expanding to too many copies (nested ones multiply). One linear pass; nothing reaches llama.cpp before."""
    if len(gbnf) > limits.max_grammar_bytes:
        raise BadRequestError(f"the grammar is {len(gbnf)} characters; at most {limits.max_grammar_bytes} are "
                              "accepted (INFERNO_MAX_GRAMMAR_BYTES)", param=param)
    frames = [[0, 0]]  # per open group: [copies made by repetitions so far, cost of the last item]
    extra = 0
    for m in _TOKEN.finditer(gbnf):
        tok = m.group(0)
        if tok[0] == "#":
            continue
        if tok == "(":
            frames.append([0, 0])
            if len(frames) - 1 > limits.max_grammar_depth:
                raise BadRequestError(f"the grammar nests groups more than {limits.max_grammar_depth} deep "
                                      "(INFERNO_MAX_GRAMMAR_DEPTH)", param=param)
        elif tok == ")":
            if len(frames) > 1:
                inner = frames.pop()
                frames[-1][1] = inner[0] + 1
        elif tok[0] == "{":
            times = max(int(m.group(1) or 0), int(m.group(2) or 0))
            last = frames[-1][1]
            extra += last * max(0, times - 1)
            frames[-1][1] = last * times
            frames[-1][0] += last * max(0, times - 1)
            if extra > limits.max_schema_repeat:
                raise BadRequestError(f"the grammar's repetitions expand to more than {limits.max_schema_repeat} "
                                      "copies (INFERNO_MAX_SCHEMA_REPEAT)", param=param)
        else:
            frames[-1][1] = 1
    return gbnf


def check_schema(schema: Any, limits: EngineSettings) -> None:
    """Refuse a schema whose repetition counts (minItems, maxLength …, {m,n} in patterns) add up past the limit:
    llama-cpp-python's converter writes every repetition out, so minItems 20,000,000 is gigabytes."""
    total, stack = 0, [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _REPEAT_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                    total += max(0, int(min(value, 1 << 62)))
                elif key == "pattern" and isinstance(value, str):
                    total += sum(max(int(a), int(b or 0)) for a, b in _PATTERN_REPEAT.findall(value))
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        if total > limits.max_schema_repeat:
            raise BadRequestError(f"the JSON schema's repetition counts (minItems, maxItems, minLength, maxLength "
                                  f"…) add up to more than {limits.max_schema_repeat} (INFERNO_MAX_SCHEMA_REPEAT)",
                                  param="format")


def _schema_grammar(schema_json: str, limits: EngineSettings) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if schema_json in _cache:
        return _cache[schema_json]
    try:
        gbnf = _fix_char_rule(json_schema_to_gbnf(schema_json))
    except RecursionError:
        raise BadRequestError("the JSON schema is nested too deeply", param="format") from None
    except Exception as e:  # the converter raises plain exceptions on schemas it cannot express
        raise BadRequestError(f"cannot turn the JSON schema into a grammar: {e}", param="format") from e
    check_grammar(gbnf, limits, "format")
    if len(gbnf) <= _CACHEABLE:  # only small grammars are kept: a cache of big ones is memory anyone can fill
        if len(_cache) >= _CACHED:
            _cache.pop(next(iter(_cache)))
        _cache[schema_json] = gbnf
    return gbnf


def json_mode_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF  # its string rule already excludes control characters


def grammar_for(fmt: Any, limits: EngineSettings | None = None) -> str | None:
    """The GBNF text for a request's `format` (or a forced tool call's schema); None: unconstrained."""
    from inferno.engine.protocol import EngineSettings

    if fmt is None:
        return None
    if fmt == "json":
        return json_mode_grammar()
    if isinstance(fmt, dict):
        if not fmt:  # `{}` means "any JSON", as with JSON mode
            return json_mode_grammar()
        limits = limits or EngineSettings()
        check_schema(fmt, limits)
        return _schema_grammar(json.dumps(fmt, sort_keys=True), limits)
    raise BadRequestError('format must be "json" or a JSON schema object', param="format")
