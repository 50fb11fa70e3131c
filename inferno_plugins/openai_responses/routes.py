"""The /v1/responses routes: create (JSON or the official SSE event sequence), retrieve, delete, list a
response's input items, count input tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from inferno.api import (
    BadRequestError,
    ImagePolicy,
    Inferno,
    InfernoError,
    NotFoundError,
    body,
    collect,
    count_tokens,
    parse_duration,
    primed,
    read_json,
    stream,
)

from . import streaming
from . import translate as t
from .schemas import CreateResponse, InputTokens, PromptBody
from .store import Limits, ResponseStore, new_id

log = logging.getLogger("inferno.responses")
Event = dict[str, Any]


def limits_from_env(env: Mapping[str, str] = os.environ) -> Limits:
    """INFERNO_RESPONSES_MAX_COUNT, _MAX_BYTES (positive integers) and _MAX_AGE (a duration such as 720h;
    negative = no age limit) over the defaults; a value that does not parse is a warning, not a failure."""
    limits = Limits()
    for name, field in (("MAX_COUNT", "max_count"), ("MAX_BYTES", "max_bytes"), ("MAX_AGE", "max_age")):
        raw = env.get(f"INFERNO_RESPONSES_{name}")
        if not raw:
            continue
        try:
            value = parse_duration(raw) if field == "max_age" else int(raw)
            if value is not None and value <= 0:
                raise ValueError(raw)
        except (ValueError, InfernoError):
            log.warning("INFERNO_RESPONSES_%s=%r is not valid; keeping %s", name, raw, getattr(limits, field))
            continue
        limits = dataclasses.replace(limits, **{field: value})
    return limits


def make_blueprint(inferno: Inferno) -> Any:
    from quart import Blueprint, request

    bp = Blueprint("openai_responses", __name__, url_prefix="/v1/responses")
    engine = inferno.engine
    store = ResponseStore(inferno.settings.home / "responses", limits_from_env())
    policy = ImagePolicy.of(inferno.settings)

    async def stored(rid: str, param: str | None = None) -> dict[str, Any]:
        record = await asyncio.to_thread(store.get, rid)
        if record is None or not isinstance(record.get("response"), dict):
            raise NotFoundError(f"response {rid!r} not found (never stored, deleted or expired)", param=param)
        return record

    async def history(req: PromptBody) -> list[t.Item]:
        """The conversation a request continues: the previous response's input and output items."""
        if req.previous_response_id is None:
            return []
        record = await stored(req.previous_response_id, "previous_response_id")
        return [*record.get("history", []), *record["response"].get("output", [])]

    async def keep(rid: str, response: dict[str, Any], items: list[t.Item]) -> None:
        try:
            await asyncio.to_thread(store.put, rid, {"response": response, "history": items})
        except OSError as e:  # a full disk must not cost the client its answer; the operator sees why
            log.error("could not store response %s: %s", rid, e)

    @bp.post("")
    @body(CreateResponse)
    async def create() -> Any:
        """Create a model response (the Responses API); streamed as server-sent events when stream is true."""
        req: CreateResponse = await read_json(CreateResponse)
        before = await history(req)
        core, new = await asyncio.to_thread(t.core_request, req, before, policy)
        rid, created = new_id(), int(time.time())
        handle = engine.submit(core)
        save = (lambda response: keep(rid, response, [*before, *new])) if req.store else None
        if req.stream:
            events = await primed([handle])
            seq = itertools.count()
            return stream(streaming.events(events, seq, rid, req, created, save), kind="sse",
                          error=streaming.error_event(seq), event_of=lambda e: e["type"])
        result = await collect(handle)
        response = t.response_object(rid, req, created_at=created, output=t.output_items(result),
                                     done=result.done)
        if save is not None:
            await save(response)
        return response

    @bp.post("/input_tokens")
    @body(InputTokens)
    async def input_tokens() -> Any:
        """Count the tokens a request's input makes: instructions, history, tools and input under the template."""
        req: InputTokens = await read_json(InputTokens)
        core, _ = await asyncio.to_thread(t.core_request, req, await history(req), policy)
        return {"object": "response.input_tokens", "input_tokens": await count_tokens(engine, core)}

    @bp.get("/<response_id>")
    async def retrieve(response_id: str) -> Any:
        """A stored response."""
        return (await stored(response_id, "response_id"))["response"]

    @bp.delete("/<response_id>")
    async def delete(response_id: str) -> Any:
        """Delete a stored response."""
        if not await asyncio.to_thread(store.delete, response_id):
            raise NotFoundError(f"response {response_id!r} not found", param="response_id")
        return {"id": response_id, "object": "response", "deleted": True}

    @bp.get("/<response_id>/input_items")
    async def input_items(response_id: str) -> Any:
        """The input items of a stored response (its whole conversation up to it), newest first by default."""
        items = list((await stored(response_id, "response_id")).get("history", []))
        order, after = request.args.get("order", "desc"), request.args.get("after")
        try:
            limit = int(request.args.get("limit", "20"))
        except ValueError:
            raise BadRequestError("limit must be an integer", param="limit") from None
        if order not in ("asc", "desc") or not 1 <= limit <= 100:
            raise BadRequestError("order is asc or desc, limit 1 to 100", param="order" if order else "limit")
        if order == "desc":
            items.reverse()
        if after:
            ids = [i.get("id") for i in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return {"object": "list", "data": page, "first_id": page[0].get("id") if page else None,
                "last_id": page[-1].get("id") if page else None, "has_more": len(items) > limit}

    return bp
