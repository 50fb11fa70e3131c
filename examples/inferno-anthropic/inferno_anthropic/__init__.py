"""Anthropic's Messages API for Inferno — written only against Inferno's public plugin API."""

from __future__ import annotations

from typing import Any

from inferno.hookspecs import hookimpl


@hookimpl
def register_routes(app: Any, inferno: Any) -> None:
    from inferno.server import error_shape

    from .routes import error_body, make_blueprint

    app.register_blueprint(make_blueprint(inferno))
    error_shape(app, "/v1/messages", error_body)
