"""Anthropic's Messages API: POST /v1/messages (streamed as named server-sent events or not, tools with
tool_choice enforced by grammar, stop sequences) and POST /v1/messages/count_tokens, with errors in
Anthropic's shape. Written against the host's public API only (inferno.api), like any third-party dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferno.api import hookimpl

if TYPE_CHECKING:
    from quart import Quart

    from inferno.api import Inferno


@hookimpl
def register_routes(app: Quart, inferno: Inferno) -> None:
    from inferno.api import register_error_shape

    from .routes import make_blueprint
    from .translate import error_body

    app.register_blueprint(make_blueprint(inferno))
    register_error_shape(app, "/v1/messages", error_body)
