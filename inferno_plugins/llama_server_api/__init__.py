"""llama-server's own endpoints, for the editors and tools written against it: POST /infill (fill-in-the-middle,
as llama.vim / llama.vscode call it) and POST /v1/rerank (aliases /rerank, /v1/reranking, /reranking: Jina's and
Cohere's shape, as RAG stacks call it).

A plugin of its own rather than a part of the OpenAI one: these routes live outside /v1, take llama-server's
field names (n_predict, input_prefix …) and answer in its shapes, which are not OpenAI's; it imports only
inferno.api like every dialect.
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

    from .routes import error_body, make_blueprint

    app.register_blueprint(make_blueprint(inferno))
    for prefix in ("/lora-adapters", "/infill", "/rerank", "/reranking", "/v1/rerank", "/v1/reranking"):
        register_error_shape(app, prefix, error_body)
