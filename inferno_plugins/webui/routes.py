"""The web UI's routes: /ui/ (the page), /ui/assets/… (its scripts and styles), and the redirect of a browser
asking for / (Accept: text/html) to /ui/; every other client keeps Ollama's "Ollama is running" at /.

The files are the committed build in static/, read once into memory (a few hundred KB). A request names a
file by a key of that table, never by a path joined from its URL.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from inferno.api import NotFoundError

STATIC = Path(__file__).parent / "static"

# No inline script or style, nothing from another origin: the UI works offline, and markdown a model writes
# (sanitized already) cannot run code or load a tracking image even if the sanitizer missed something.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cross-Origin-Opener-Policy": "same-origin"}


def load_files(root: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """Every built file by its URL path under /ui/ ("index.html", "assets/index-….js"): content, type."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
                kind += "; charset=utf-8"
            files[path.relative_to(root).as_posix()] = (path.read_bytes(), kind)
    return files


def wants_html(accept: Any) -> bool:
    """A browser navigating: text/html named in Accept (a bare */*, as curl and the SDKs send, is not)."""
    return any(kind == "text/html" and quality > 0 for kind, quality in accept)


def make_blueprint() -> Any:
    from quart import Blueprint, Response, redirect, request

    bp = Blueprint("webui", __name__)
    files = load_files()

    def answer(name: str) -> Any:
        if name not in files:
            if not files:
                raise NotFoundError("the web UI's files are missing from this installation "
                                    "(inferno_plugins/webui/static): build them with `npm ci && npm run build`")
            raise NotFoundError(f"no file /ui/{name[:200]}")
        content, kind = files[name]
        response = Response(content, content_type=kind)
        # built assets carry their content hash in their name; the page itself is revalidated every time
        immutable = name.startswith("assets/")
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
        return response

    @bp.before_app_request
    async def browser_root() -> Any:
        if request.path == "/" and request.method == "GET" and wants_html(request.accept_mimetypes):
            response = redirect("/ui/", 302)
            response.headers["Vary"] = "Accept"
            return response
        return None

    @bp.get("/ui")
    async def bare() -> Any:
        """The web UI (redirects to /ui/)."""
        return redirect("/ui/", 308)

    @bp.get("/ui/")
    async def index() -> Any:
        """The web UI: chat, models and server status in the browser."""
        return answer("index.html")

    @bp.get("/ui/<path:name>")
    async def asset(name: str) -> Any:
        """The web UI's scripts and styles."""
        return answer(name)

    @bp.after_request
    async def security_headers(response: Any) -> Any:
        response.headers.update(HEADERS)
        return response

    return bp
