"""A local stand-in for Ollama's registry (registry.ollama.ai): manifests by tag with Docker's manifest media
type, blobs by digest through a 307 redirect to a "CDN" path as the public registry does, HTTP ranges, and
knobs for the tests (hold a blob's body, cut the connection part way, serve corrupt bytes). Tests point
INFERNO_OLLAMA_REGISTRY at it; nothing here reaches the network."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.local_http import LocalServer, QuietHandler

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.ollama.image."


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Model:
    """One tag's layers, by kind (model, projector, template, system, params, license, adapter …)."""

    layers: dict[str, bytes]
    config: bytes = b'{"model_format":"gguf","model_family":"llama","file_type":"F32"}'
    bad_digests: dict[str, str] = field(default_factory=dict)  # kind → the digest the manifest claims

    def manifest(self) -> bytes:
        layers = [{"mediaType": LAYER + kind, "digest": self.bad_digests.get(kind, digest_of(data)),
                   "size": len(data)} for kind, data in self.layers.items()]
        return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                           "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(self.config),
                                      "size": len(self.config)},
                           "layers": layers}).encode()


class OllamaRegistry:
    def __init__(self) -> None:
        self.models: dict[str, Model] = {}  # "namespace/model:tag" → Model
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.accepts: list[str] = []  # the Accept header of each manifest request
        self.gate: threading.Event | None = None  # set here: blob bodies wait until the test sets it
        self.cut_after: int | None = None  # set here: blob bodies stop (connection closed) after this many bytes
        self.hold_after: int | None = None  # set here: blob bodies pause after this many bytes until released
        self.release = threading.Event()
        self.corrupt: set[str] = set()  # digests served with other bytes than they name
        reg = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                reg._handle(self)

        self.server = LocalServer(Handler)
        self.url = self.server.url

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.release.set()
        self.server.close()

    def blobs(self) -> dict[str, bytes]:
        out = {digest_of(m.config): m.config for m in self.models.values()}
        for m in self.models.values():
            out.update({digest_of(data): data for data in m.layers.values()})
        return out

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]}).encode()
        self._send(h, status, body, {"Content-Type": "application/json"})

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        self.requests.append(("GET", path, h.headers.get("Range")))
        m = re.fullmatch(r"/v2/([^/]+)/([^/]+)/manifests/([^/]+)", path)
        if m:
            self.accepts.append(h.headers.get("Accept") or "")
            model = self.models.get(f"{m.group(1)}/{m.group(2)}:{m.group(3)}")
            if model is None:
                return self._error(h, 404, "MANIFEST_UNKNOWN")
            body = model.manifest()
            return self._send(h, 200, body, {"Content-Type": MANIFEST_TYPE, "Docker-Content-Digest": digest_of(body)})
        m = re.fullmatch(r"/v2/([^/]+)/([^/]+)/blobs/(sha256:[0-9a-f]{64})", path)
        if m:  # as the public registry: a redirect to where the bytes are
            if m.group(3) not in self.blobs():
                return self._error(h, 404, "BLOB_UNKNOWN")
            return self._send(h, 307, b"", {"Location": f"{self.url}/cdn/{m.group(3)}"})
        m = re.fullmatch(r"/cdn/(sha256:[0-9a-f]{64})", path)
        if m and m.group(1) in self.blobs():
            return self._blob(h, m.group(1))
        self._error(h, 404, "NAME_UNKNOWN")

    def _blob(self, h: BaseHTTPRequestHandler, digest: str) -> None:
        data = self.blobs()[digest]
        if digest in self.corrupt:
            data = bytes(len(data))
        start = 0
        rm = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if rm:
            start = int(rm.group(1))
        part = data[start:]
        h.send_response(206 if rm else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(part)))
        if rm:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if self.gate is not None:
            self.gate.wait()
        limit = len(part) if self.cut_after is None else min(len(part), self.cut_after)
        try:
            for i in range(0, limit, 64 * 1024):
                if self.hold_after is not None and i >= self.hold_after and not self.release.is_set():
                    h.wfile.flush()
                    self.release.wait()
                h.wfile.write(part[i:min(i + 64 * 1024, limit)])
            if limit < len(part):
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)  # a cut connection: the client sees fewer bytes than announced
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
