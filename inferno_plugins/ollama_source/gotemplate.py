"""Ollama's chat templates (Go text/template) → the Jinja chat templates the engine renders, for the common
forms only; anything else is refused with the construct named, never rendered half right.

Two shapes are understood:
- a messages template: `{{ range .Messages }}` … `{{ .Role }}` … `{{ .Content }}` … `{{ end }}`, with
  `{{ if eq .Role "user" }}` / `{{ else if … }}` / `{{ else }}` inside, `{{ if .System }}{{ .System }}{{ end }}`
  around it;
- a prompt template (Ollama's older kind): `{{ .System }}`, `{{ .Prompt }}`, `{{ .Response }}` with `{{ if … }}`,
  rendered once per user turn as Ollama does: the system prompt with the first turn, the text after
  `{{ .Response }}` only once the turn has an answer (the last turn ends where the model's answer begins).
"""

from __future__ import annotations

import re

from inferno.api import BadRequestError

# one action: `{{`, optional trim `-`, the body, optional trim `-`, `}}` (Go forbids braces inside actions)
_ACTION = re.compile(r"\{\{(-\s*)?(.*?)(\s*-)?\}\}", re.S)
_FIELDS_TOP = {".System": "system", ".Prompt": "prompt", ".Response": "response"}
_FIELDS_MSG = {".Role": "message.role", ".Content": "message.content"}


class Untranslatable(BadRequestError):
    pass


def translate(go: str) -> str:
    """The Jinja equivalent of the Go template go; Untranslatable (a 400) naming what it cannot take."""
    tokens = _tokens(go)
    # .System is every system message's text, joined as Ollama joins them
    prelude = ("{%- set ns = namespace(system='') -%}{%- for m in messages if m.role == 'system' -%}"
               "{%- set ns.system = ns.system ~ ('\n\n' if ns.system else '') ~ m.content -%}{%- endfor -%}")
    if any(kind == "act" and body.startswith("range") for kind, body in tokens):
        return prelude + "{%- set system = ns.system -%}" + _render(tokens)
    head, tail = _split_response(tokens)
    turn_head, turn_tail = _render(head), _render(tail)
    # Ollama's prompt templates run once per user turn; the answer (and what follows it) only where there is one
    return (prelude + "{%- set turns = messages | rejectattr('role', 'equalto', 'system') | list -%}"
            "{%- for m in turns -%}{%- if m.role == 'user' -%}"
            "{%- set system = ns.system if loop.first else '' -%}{%- set prompt = m.content -%}"
            "{%- set nxt = turns[loop.index] if loop.index < turns | length else none -%}"
            "{%- set response = nxt.content if nxt and nxt.role == 'assistant' else '' -%}"
            f"{turn_head}{{%- if nxt -%}}{{{{ response }}}}{turn_tail}{{%- endif -%}}"
            "{%- endif -%}{%- endfor -%}")


def _tokens(go: str) -> list[tuple[str, str]]:
    """("text", text) and ("act", body) in order, with Go's `{{-`/`-}}` trimming applied to the text."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(go):
        text = go[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        if text:
            out.append(("text", text))
        body = m.group(2).strip()
        if body.startswith("/*"):
            body = ""  # a comment
        if body:
            out.append(("act", body))
        pos, trim_next = m.end(), bool(m.group(3))
    text = go[pos:]
    if trim_next:
        text = text.lstrip()
    if "{{" in text or "}}" in text:
        raise Untranslatable("the model's Ollama template has an unclosed '{{'", param="model")
    if text:
        out.append(("text", text))
    return out


def _split_response(tokens: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    at = [i for i, (kind, body) in enumerate(tokens) if kind == "act" and body == ".Response"]
    if len(at) > 1:
        raise Untranslatable("the model's Ollama template uses {{ .Response }} twice", param="model")
    if not at:
        return tokens, []
    return tokens[:at[0]], tokens[at[0] + 1:]


def _render(tokens: list[tuple[str, str]]) -> str:
    out: list[str] = []
    stack: list[str] = []
    for kind, body in tokens:
        if kind == "text":
            out.append(_literal(body))
            continue
        fields = _FIELDS_MSG if "range" in stack else _FIELDS_TOP
        if body in fields:
            out.append("{{ " + fields[body] + " }}")
        elif body == "range .Messages" and "range" not in stack:
            stack.append("range")
            out.append("{%- for message in messages -%}")
        elif body.startswith("if ") or body.startswith("else if "):
            cond = _condition(body.split("if ", 1)[1].strip(), fields)
            if body.startswith("else"):
                if not stack or stack[-1] != "if":
                    raise _refuse(body)
                out.append("{%- elif " + cond + " -%}")
            else:
                stack.append("if")
                out.append("{%- if " + cond + " -%}")
        elif body == "else" and stack and stack[-1] == "if":
            out.append("{%- else -%}")
        elif body == "end" and stack:
            out.append("{%- endfor -%}" if stack.pop() == "range" else "{%- endif -%}")
        else:
            raise _refuse(body)
    if stack:
        raise Untranslatable("the model's Ollama template has an {{ if }} or {{ range }} without {{ end }}",
                             param="model")
    return "".join(out)


def _condition(cond: str, fields: dict[str, str]) -> str:
    if cond in fields:
        return fields[cond]
    m = re.fullmatch(r'eq\s+(\.Role)\s+"([a-z]+)"', cond)
    if m and m.group(1) in fields:
        return f"{fields[m.group(1)]} == '{m.group(2)}'"
    raise _refuse(f"if {cond}")


def _refuse(body: str) -> Untranslatable:
    shown = body if len(body) <= 60 else body[:57] + "..."
    return Untranslatable(f"the model's Ollama template uses {{{{ {shown} }}}}, which Inferno cannot translate to "
                          "Jinja, and its GGUF has no chat template of its own", param="model")


def _literal(text: str) -> str:
    """Text printed as a Jinja string expression: the engine renders with trim_blocks and lstrip_blocks, which
    would eat the newlines and indentation of raw text next to a tag; an expression keeps every character."""
    return "{{ " + repr(text) + " }}"
