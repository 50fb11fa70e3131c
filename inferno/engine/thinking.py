"""Thinking models: the capability read from the chat template, and the reasoning split from the answer.

Qwen3, DeepSeek-R1 (and its distills), QwQ, Phi-4-reasoning, GLM and others write their reasoning as
`<think>…</think>` before the answer. Some templates open the block themselves (the prompt ends inside
`<think>`), so the output starts with reasoning and only the closing tag appears. The splitter works on
streamed text pieces, so a tag split across tokens is still found; an unterminated block is reasoning.
"""

from __future__ import annotations

from typing import Literal

OPEN, CLOSE = "<think>", "</think>"
# What a template shows when its model thinks: the tags, Qwen3's switch, the reasoning of earlier turns.
_MARKERS = (OPEN, CLOSE, "enable_thinking", "reasoning_content", "<|channel|>")

Think = bool | Literal["low", "medium", "high"] | None


def supports_thinking(template: str | None) -> bool:
    """Whether a chat template is a thinking model's (Ollama's `thinking` capability)."""
    return bool(template) and any(m in template for m in _MARKERS)  # type: ignore[operator]


def can_switch_off(template: str | None) -> bool:
    """Whether the template has a switch that turns the thinking off (`enable_thinking`)."""
    return bool(template) and "enable_thinking" in template  # type: ignore[operator]


def template_vars(think: Think) -> dict[str, object]:
    """Variables a thinking switch reads: Qwen3's `enable_thinking`, gpt-oss' `reasoning_effort`.

    Nothing is passed for None, so a template's own default (`enable_thinking is defined`) holds."""
    if think is None:
        return {}
    out: dict[str, object] = {"enable_thinking": think is not False}
    if isinstance(think, str):
        out["reasoning_effort"] = think
    return out


def opens_inside(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open think block (the output then starts with reasoning)."""
    return prompt.rfind(OPEN) > prompt.rfind(CLOSE)


def _partial_tail(text: str, tag: str) -> int:
    """Length of the longest end of text that is a proper start of tag (a tag that may be split)."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-k:]):
            return k
    return 0


class ThinkSplitter:
    """Splits generated text into (thinking, answer) pieces as it streams."""

    def __init__(self, inside: bool = False) -> None:
        # start: nothing said yet (a block may open); think: inside the block; after: the block just closed
        # (blank lines before the answer are dropped); answer: everything else passes through.
        self.state: Literal["start", "think", "after", "answer"] = "think" if inside else "start"
        self.buf = ""
        self.fresh = True  # at the start of the reasoning: leading blank lines are dropped

    def feed(self, piece: str) -> tuple[str, str]:
        """(reasoning, answer) text that can be sent now."""
        self.buf += piece
        thought, text = "", ""
        while True:
            if self.state == "start":
                stripped = self.buf.lstrip()
                if stripped.startswith(OPEN):
                    self.state, self.buf = "think", stripped[len(OPEN):]
                    continue
                if OPEN.startswith(stripped):  # empty or a tag still arriving
                    return thought, text
                self.state = "answer"
            if self.state == "think":
                if self.fresh:
                    self.buf = self.buf.lstrip()
                    if not self.buf:
                        return thought, text
                    self.fresh = False
                i = self.buf.find(CLOSE)
                if i >= 0:
                    thought += self.buf[:i].rstrip()
                    self.state, self.buf = "after", self.buf[i + len(CLOSE):]
                    continue
                cut = len(self.buf) - _partial_tail(self.buf, CLOSE)
                ready = self.buf[:cut].rstrip()  # trailing blanks wait: they may precede the closing tag
                thought += ready
                self.buf = self.buf[len(ready):]
                return thought, text
            if self.state == "after":
                self.buf = self.buf.lstrip()
                if not self.buf:
                    return thought, text
                self.state = "answer"
            text += self.buf
            self.buf = ""
            return thought, text

    def finish(self, tail: str = "") -> tuple[str, str]:
        """The rest at the end: an unterminated block is reasoning, a lone partial tag is answer text."""
        thought, text = self.feed(tail)
        if self.state == "think":
            thought += self.buf.rstrip()
        elif self.state in ("start", "answer"):
            text += self.buf
        self.buf = ""
        return thought, text


# gpt-oss' harmony format: messages of channels, `<|channel|>analysis<|message|>…<|end|>` (the reasoning),
# `<|start|>assistant<|channel|>final<|message|>…` (the answer), and tool calls as commentary addressed to a
# function: `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>`.
HARMONY = "<|channel|>"
_H_TAGS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>")
_H_ENDS = ("<|end|>", "<|return|>", "<|call|>", "<|start|>")


def is_harmony(template: str | None) -> bool:
    return bool(template) and HARMONY in template  # type: ignore[operator]


class HarmonySplitter:
    """(reasoning, answer) from harmony-formatted output; a tool call becomes `<tool_call>{…}</tool_call>` text,
    which the usual tool-call parser takes from there."""

    def __init__(self) -> None:
        self.state: Literal["header", "body", "plain"] = "header"
        self.buf = ""
        self.kind: Literal["thinking", "answer", "tool"] = "answer"
        self.tool = ""

    def _open(self, header: str) -> None:
        import re

        channel = header.split(HARMONY, 1)[1] if HARMONY in header else ""
        name = channel.split()[0] if channel.split() else ""
        recipient = re.search(r"to=functions\.([^\s<]+)", header)
        if recipient:
            self.kind, self.tool = "tool", recipient.group(1)
        else:
            self.kind = "thinking" if name == "analysis" else "answer"

    def _close(self, body: str) -> tuple[str, str]:
        import json

        if self.kind == "tool":
            try:
                args = json.loads(body or "{}")
            except json.JSONDecodeError:
                args = body
            return "", "<tool_call>" + json.dumps({"name": self.tool, "arguments": args}) + "</tool_call>"
        return (body, "") if self.kind == "thinking" else ("", body)

    def feed(self, piece: str) -> tuple[str, str]:
        self.buf += piece
        thought, text = "", ""
        while True:
            if self.state == "plain":
                text, self.buf = text + self.buf, ""
                return thought, text
            if self.state == "header":
                i = self.buf.find("<|message|>")
                if i < 0:
                    head = self.buf.lstrip()
                    looks = (head.startswith(("<|", "assistant")) or "assistant".startswith(head)
                             or any(t.startswith(head) for t in _H_TAGS))
                    if len(self.buf) > 256 or not looks:
                        self.state = "plain"  # not harmony after all: pass it through
                        continue
                    return thought, text
                self._open(self.buf[:i])
                self.state, self.buf = "body", self.buf[i + len("<|message|>"):]
                continue
            ends = [(self.buf.find(t), t) for t in _H_ENDS if t in self.buf]
            if ends:
                i, tag = min(ends)
                a, b = self._close(self.buf[:i])
                thought, text = thought + a, text + b
                self.state, self.buf = "header", self.buf[i + (len(tag) if tag != "<|start|>" else 0):]
                continue
            keep = max((_partial_tail(self.buf, t) for t in _H_TAGS), default=0)
            ready, self.buf = self.buf[:len(self.buf) - keep], self.buf[len(self.buf) - keep:]
            if self.kind == "thinking":
                thought += ready
            elif self.kind == "answer":
                text += ready
            else:
                self.buf = ready + self.buf  # a tool call's arguments are kept whole
                return thought, text
            return thought, text

    def finish(self, tail: str = "") -> tuple[str, str]:
        thought, text = self.feed(tail)
        if self.state == "body":
            a, b = self._close(self.buf)
            thought, text = thought + a, text + b
        elif self.buf and "<|" not in self.buf:
            text += self.buf
        self.buf = ""
        return thought, text
