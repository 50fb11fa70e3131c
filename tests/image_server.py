"""A local http server that hands out one file, for the tests of image URLs a server may fetch."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

from tests.local_http import LocalServer, QuietHandler


@contextlib.contextmanager
def serve_bytes(data: bytes, content_type: str = "image/png") -> Generator[str]:
    """The URL of `data` on 127.0.0.1, served while the context lasts."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_bytes(200, data, content_type)

    server = LocalServer(Handler)
    try:
        yield f"{server.url}/image.png"
    finally:
        server.close()
