"""The web UI: a single-page app at /ui (chat, models, server status) that talks to the server's own APIs.

The app is built from frontend/ (Vite, Preact, marked, DOMPurify, highlight.js) into static/, which is
committed and shipped in the package, so installing Inferno needs no node. Disable it like any plugin:
INFERNO_DISABLE_PLUGINS=webui. docs/webui.md has the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferno.api import hookimpl

if TYPE_CHECKING:
    from quart import Quart

    from inferno.api import Inferno


@hookimpl
def register_routes(app: Quart, inferno: Inferno) -> None:
    from inferno.api import register_open_path

    from .routes import make_blueprint

    app.register_blueprint(make_blueprint())
    # the page and its scripts hold no data and must load before the user can type the API key; every API
    # call the page makes then carries the key
    register_open_path(app, "/ui")
