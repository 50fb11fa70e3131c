"""The Ollama dialect: /api/* and / as the official `ollama` client, LangChain and Open WebUI expect.

It talks only to the engine's core requests and the host's store; it knows nothing of the OpenAI dialect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferno.api import hookimpl

if TYPE_CHECKING:
    from quart import Quart

    from inferno.api import Inferno


@hookimpl
def register_routes(app: Quart, inferno: Inferno) -> None:
    from inferno.api import register_body_limit, register_error_shape

    from .manage import make_blueprint as management
    from .routes import make_blueprint as generation
    from .translate import error_body

    app.register_blueprint(generation(inferno))
    app.register_blueprint(management(inferno))
    register_error_shape(app, "/api", error_body)
    register_body_limit(app, "/api/blobs/", inferno.settings.max_blob_bytes, "INFERNO_MAX_BLOB_BYTES")
