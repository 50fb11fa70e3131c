"""A small local stand-in for the Hugging Face Hub: the endpoints huggingface_hub uses to list a repository
and download files (HEAD + ranged GET), with gated and missing repositories. Tests point HF_ENDPOINT at it."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.local_http import LocalServer, QuietHandler


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    corrupt: set[str] = field(default_factory=set)  # served bytes differ from the advertised sha256


class HubServer:
    def __init__(self, token: str = "hf_test_token") -> None:
        self.repos: dict[str, Repo] = {}
        self.token = token
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.delay_per_chunk = 0.0
        self.gate: threading.Event | None = None  # when set here, file bodies wait until the test sets it
        hub = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                hub._handle(self, "GET")

            def do_HEAD(self) -> None:
                hub._handle(self, "HEAD")

        self.server = LocalServer(Handler)
        self.url = self.server.url

    def close(self) -> None:
        self.server.close()

    def _authorised(self, h: BaseHTTPRequestHandler, repo: Repo) -> bool:
        return not repo.gated or h.headers.get("Authorization") == f"Bearer {self.token}"

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, method: str) -> None:
        body = json.dumps({"error": code}).encode()
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method == "GET":
            h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        self.requests.append((method, path, h.headers.get("Range")))
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
        if m:
            return self._info(h, m.group(1), method)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._file(h, m.group(1), m.group(3), method)
        self._error(h, 404, "RepoNotFound", method)

    def _info(self, h: BaseHTTPRequestHandler, repo_id: str, method: str) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 401, "RepoNotFound", method)  # the Hub answers 401 for unknown repos
        if not self._authorised(h, repo):
            return self._error(h, 401, "GatedRepo", method)
        siblings = [{"rfilename": name, "size": len(data), "blobId": hashlib.sha1(data).hexdigest(),
                     "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
                    for name, data in sorted(repo.files.items())]
        body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                           "gated": "auto" if repo.gated else False, "siblings": siblings}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method == "GET":
            h.wfile.write(body)

    def _file(self, h: BaseHTTPRequestHandler, repo_id: str, filename: str, method: str) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 401, "RepoNotFound", method)
        if not self._authorised(h, repo):
            return self._error(h, 403, "GatedRepo", method)
        if filename not in repo.files:
            return self._error(h, 404, "EntryNotFound", method)
        data = repo.files[filename]
        sha = hashlib.sha256(data).hexdigest()
        if filename in repo.corrupt:
            data = bytes(len(data))
        start = 0
        rng = h.headers.get("Range")
        if rng:
            rm = re.match(r"bytes=(\d+)-(\d*)", rng)
            if rm:
                start = int(rm.group(1))
                end = int(rm.group(2)) if rm.group(2) else len(data) - 1
                data_slice = data[start:end + 1]
            else:
                data_slice = data
        else:
            data_slice = data
        h.send_response(206 if rng else 200)
        h.send_header("X-Repo-Commit", repo.commit)
        h.send_header("ETag", f'"{sha}"')
        h.send_header("X-Linked-Etag", f'"{sha}"')
        h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) if method == "HEAD" else len(data_slice)))
        if rng:
            h.send_header("Content-Range", f"bytes {start}-{start + len(data_slice) - 1}/{len(data)}")
        h.end_headers()
        if method == "HEAD":
            return
        if self.gate is not None:
            self.gate.wait()
        try:
            for i in range(0, len(data_slice), 64 * 1024):
                h.wfile.write(data_slice[i:i + 64 * 1024])
                if self.delay_per_chunk:
                    time.sleep(self.delay_per_chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
