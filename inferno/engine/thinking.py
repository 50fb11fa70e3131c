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
_MARKERS = (OPEN, CLOSE, "enable_thinking", "reasoning_content")

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
