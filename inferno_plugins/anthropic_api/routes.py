"""POST /v1/messages (a message, or its stream of named server-sent events) and /v1/messages/count_tokens."""

from __future__ import annotations

import asyncio
from typing import Any

from inferno.api import (
    ImagePolicy,
    Inferno,
    body,
    collect,
    count_tokens,
    primed,
    read_json,
    stream,
)

from . import translate as t
from .events import message_events
from .schemas import CountTokensBody, MessagesBody


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint

    bp = Blueprint("anthropic_api", __name__, url_prefix="/v1/messages")
    policy = ImagePolicy.of(inferno.settings)

    @bp.post("")
    @body(MessagesBody)
    async def messages() -> Any:
        """Anthropic Messages API: a message, or its stream of server-sent events."""
        req: MessagesBody = await read_json(MessagesBody)
        engine = inferno.engine
        core = await asyncio.to_thread(t.core_request, req, policy)
        handle = engine.submit(core)
        if req.stream:
            events = await primed([handle])
            return stream(message_events(events, req), kind="sse", error=t.error_body,
                          event_of=lambda o: o["type"])
        r = await collect(handle)
        return t.message(t.new_id(), req.model, t.content(r.text, r.calls, r.thinking),
                         t.stop_reason(r.done, req.max_tokens, r.done.stop_sequence), r.done.stop_sequence, r.done)

    @bp.post("/count_tokens")
    @body(CountTokensBody)
    async def count_message_tokens() -> Any:
        """The number of tokens a Messages request's prompt (system, messages, tools) takes in the model."""
        req: CountTokensBody = await read_json(CountTokensBody)
        core = await asyncio.to_thread(t.core_request, req, policy)
        return {"input_tokens": await count_tokens(inferno.engine, core)}

    return bp
