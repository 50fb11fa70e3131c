"""The OpenAI dialect: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings (SSE streaming).

It talks only to the engine's core requests and events; it knows nothing of the Ollama dialect.
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
    register_error_shape(app, "/v1", error_body)
