"""GBNF grammars for structured output: JSON mode, a JSON schema, a forced tool call.

llama-cpp-python's JSON-schema converter is used for the schema → GBNF work, with one correction: its
`char` rule (`[^"\\]`) lets a JSON string hold raw control characters (a newline, a tab), so a schema-
constrained answer could stop with text that `json.loads` rejects. llama.cpp's own converter excludes them
(`[^"\\\x7F\x00-\x1F]`); so do we, in every grammar made here.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from inferno.errors import BadRequestError

# The string character rule of llama.cpp's json-schema-to-grammar (common/json-schema-to-grammar.cpp).
JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)


def _fix_char_rule(gbnf: str) -> str:
    return _CHAR_RULE.sub(lambda _: "char ::= " + JSON_CHAR, gbnf)


@lru_cache(maxsize=64)
def _schema_grammar(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return _fix_char_rule(json_schema_to_gbnf(schema_json))
    except Exception as e:  # the converter raises plain exceptions on schemas it cannot express
        raise BadRequestError(f"cannot turn the JSON schema into a grammar: {e}", param="format") from e


def json_mode_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF  # its string rule already excludes control characters


def grammar_for(fmt: Any) -> str | None:
    """The GBNF text for a request's `format` (or a forced tool call's schema); None: unconstrained."""
    if fmt is None:
        return None
    if fmt == "json":
        return json_mode_grammar()
    if isinstance(fmt, dict):
        if not fmt:  # `{}` means "any JSON", as with JSON mode
            return json_mode_grammar()
        return _schema_grammar(json.dumps(fmt, sort_keys=True))
    raise BadRequestError('format must be "json" or a JSON schema object', param="format")
