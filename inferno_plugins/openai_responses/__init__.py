"""The OpenAI Responses dialect: /v1/responses (create, streamed or not; retrieve; delete; input items;
input token counts), with stored responses under INFERNO_HOME/responses for `previous_response_id`.

It talks only to the engine's core requests and the host's toolkit; it knows nothing of the other dialects.
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
    register_error_shape(app, "/v1/responses", error_body)
