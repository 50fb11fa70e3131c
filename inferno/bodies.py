"""Request bodies: a JSON body read and validated by a pydantic model (any fault a BadRequestError naming the
field), and the marker that tells /openapi.json which model a view's body follows. Shared by the host's routes
and every dialect plugin."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from inferno.errors import BadRequestError


async def read_json(model: Any) -> Any:
    """The request's JSON body validated by a pydantic model; anything wrong is a BadRequestError."""
    from pydantic import ValidationError
    from quart import request

    raw = await request.get_data()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BadRequestError(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequestError("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        message, param = _first_error(e)
        raise BadRequestError(message, param=param) from None
    except RecursionError:
        raise BadRequestError("request body is nested too deeply") from None


def _first_error(e: Any) -> tuple[str, str | None]:
    err = e.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    return (f"invalid {loc or 'body'}: {err['msg']}" if loc else err["msg"]), (loc or None)


def body(model: Any) -> Callable[[Any], Any]:
    """Mark a view with the pydantic model of its JSON body, for /openapi.json."""

    def mark(view: Any) -> Any:
        view._inferno_body = model
        return view

    return mark
