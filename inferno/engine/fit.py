"""A prompt fitted into the model's context window, as Ollama's `truncate` does it, or refused.

A chat that does not fit drops its oldest turns (a turn starts at a user message, so a template that wants user
and assistant to alternate still renders) until it does; the system messages, the tools and the last user turn
(with what follows it) are never dropped, and when those alone do not fit the request is refused with the
figures. A plain prompt keeps its first token and its newest half. Without `truncate` a prompt that does not
fit is refused (OpenAI's `context_length_exceeded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferno.errors import BadRequestError, ContextLengthError

if TYPE_CHECKING:
    from inferno.engine.model import Model
    from inferno.engine.types import GenerateRequest, Message
    from inferno.engine.vision import PromptImages


@dataclass
class Fitted:
    tokens: list[int]
    text: str  # the rendered chat ("" for a plain prompt)
    images: PromptImages | None
    original: int  # tokens before truncation
    dropped: int = 0  # messages dropped
    truncated: bool = False


def fit(model: Model, req: GenerateRequest) -> Fitted:
    """The request's prompt as it will be evaluated (rendered, tokenized, and truncated where allowed)."""
    tokens, text, images = model.prompt(req)
    limit = model.settings.max_prompt_tokens
    if limit and len(tokens) > limit:
        raise BadRequestError(f"the prompt is {len(tokens)} tokens; this server accepts at most "
                              f"{limit} (INFERNO_MAX_PROMPT_TOKENS)", param="messages")
    if len(tokens) < model.n_ctx:
        return Fitted(tokens, text, images, len(tokens))
    if req.truncate and req.messages is not None:
        return _drop_turns(model, req, req.messages, len(tokens))
    from inferno.engine.infill import infill_tokens, is_infill

    if req.truncate and is_infill(req):  # a FIM layout is cut part by part, as llama-server cuts it
        cut = infill_tokens(model, req, cut=True)
        if len(cut) < model.n_ctx:
            return Fitted(cut, text, None, len(tokens), truncated=True)
    elif req.truncate and images is None:
        keep = model.n_ctx // 2
        cut = tokens[:1] + tokens[-keep:] if model.add_bos else tokens[-keep:]
        return Fitted(cut, text, None, len(tokens), truncated=True)
    raise ContextLengthError(
        f"the prompt is {len(tokens)} tokens but the context window is {model.n_ctx}; "
        "shorten it or load the model with a larger context (num_ctx / n_ctx)", param="messages")


def kept(messages: list[Message], cut: int) -> list[Message]:
    """The system messages before `cut`, then every message from it on."""
    return [m for m in messages[:cut] if m.role == "system"] + messages[cut:]


def _drop_turns(model: Model, req: GenerateRequest, messages: list[Message], original: int) -> Fitted:
    first = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    cuts = [i for i, m in enumerate(messages) if m.role == "user" and i > first]  # where a kept part may start

    def attempt(cut: int) -> tuple[list[int], str, PromptImages | None]:
        return model.prompt(req.model_copy(update={"messages": kept(messages, cut)}))

    least = attempt(cuts[-1]) if cuts else None
    if least is None or len(least[0]) >= model.n_ctx:
        n = original if least is None else len(least[0])
        raise ContextLengthError(
            f"the prompt is {n} tokens with only the system prompt, the tools and the last turn left, but the "
            f"context window is {model.n_ctx}; shorten them or load the model with a larger context "
            "(num_ctx / n_ctx)", param="messages")
    # the earliest cut that fits: dropping more never makes a prompt longer, so a binary search over the cuts
    best, found = len(cuts) - 1, least
    lo, hi = 0, len(cuts) - 2
    while lo <= hi:
        mid = (lo + hi) // 2
        tried = attempt(cuts[mid])
        if len(tried[0]) < model.n_ctx:
            best, found, hi = mid, tried, mid - 1
        else:
            lo = mid + 1
    dropped = sum(m.role != "system" for m in messages[:cuts[best]])
    return Fitted(found[0], found[1], found[2], original, dropped=dropped, truncated=True)


def keep_count(model: Model, req: GenerateRequest, tokens: list[int]) -> int:
    """Tokens a context shift keeps at the start: the system prompt and the tools (what a chat renders before
    its first other message), else the BOS token."""
    bos = 1 if model.add_bos and tokens else 0
    if req.messages is None:
        return bos
    system = [m for m in req.messages if m.role == "system"]
    if not system and not req.tools and not model.defaults.system:
        return bos
    from inferno.engine.slots import common_prefix
    from inferno.errors import InfernoError

    try:
        head = model.prompt(req.model_copy(update={"messages": system}))[0]
    except InfernoError:  # a template that cannot render without a user message
        return bos
    return max(bos, common_prefix(head, tokens))
