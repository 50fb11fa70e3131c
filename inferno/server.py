"""The Quart app factory and the hypercorn runner. Dialects mount their routes through register_routes;
the host adds only /health, /inferno/ps, /openapi.json and the cross-cutting concerns (API key, CORS,
body size limit, access log, error shapes, graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import inspect
import json
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from inferno.bodies import body, read_json
from inferno.dialect import error_response, is_open_path
from inferno.errors import AuthenticationError, BadRequestError, InfernoError, NotFoundError

if TYPE_CHECKING:
    from quart import Quart

    from inferno.host import Inferno

log = logging.getLogger("inferno.access")
# a request body (an image, a model blob pushed to /api/blobs) may trickle in this long before a 408; what it
# may weigh is INFERNO_MAX_BODY_BYTES
BODY_TIMEOUT_S = 600


class TokenizeBody(BaseModel):
    model: str = Field(min_length=1, max_length=512)
    text: str


class DetokenizeBody(BaseModel):
    model: str = Field(min_length=1, max_length=512)
    tokens: list[int] = Field(max_length=1 << 20)




def create_app(inferno: Inferno) -> Quart:
    from quart import Quart, Response, request

    from inferno import guard as cross_site
    from inferno.pluginmanager import load_plugins, pm

    app = Quart("inferno")
    app.request_class = _request_class(app)
    settings = inferno.settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["RESPONSE_TIMEOUT"] = None  # generations stream for as long as they take
    app.config["BODY_TIMEOUT"] = BODY_TIMEOUT_S
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.extensions["inferno"] = inferno
    app.extensions["inferno_ready"] = True
    metrics = inferno.metrics
    policy = cross_site.make_policy(settings)
    # over HTTP, a request sets only the load options the operator allows (each would reload a shared model)
    allowed = tuple(settings.request_load_options)
    inferno.engine.settings = dataclasses.replace(inferno.engine.settings, request_load_options=allowed)

    @app.before_request
    async def guard() -> Any:
        request.environ_started = time.perf_counter()  # type: ignore
        # Host, Origin and content type, for every route of every dialect, before any body is read
        view = app.view_functions.get(request.endpoint or "")
        json_route = getattr(view, "_inferno_body", None) is not None
        refused = cross_site.check(policy, request.method, request.headers, json_route)
        if refused is not None:
            return error_response(app, request.path, refused)
        if request.method == "OPTIONS" and request.headers.get("Origin"):
            return Response("", status=204)  # a preflight of an allowed origin: finish() adds the CORS headers
        if settings.api_key and not is_open_path(app, request.path) and request.method != "OPTIONS":
            sent = request.headers.get("Authorization", "")
            token = sent[7:] if sent.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
            if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
                return error_response(app, request.path, AuthenticationError(
                    "missing or wrong API key: send Authorization: Bearer <INFERNO_API_KEY>"))
        return None

    @app.after_request
    async def finish(response: Any) -> Any:
        origin = request.headers.get("Origin")
        if origin and cross_site.origin_allowed(policy, origin):
            response.headers.update(cross_site.cors_headers(request.headers))
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(request.method, rule, str(response.status_code)).inc()
        started = getattr(request, "environ_started", None)
        log.info(json.dumps({"method": request.method, "path": request.path, "status": response.status_code,
                             "ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
                             "remote": request.remote_addr}))
        return response

    @app.errorhandler(InfernoError)
    async def inferno_error(error: InfernoError) -> Any:
        return error_response(app, request.path, error)

    @app.errorhandler(404)
    async def not_found(_: Any) -> Any:
        return error_response(app, request.path, NotFoundError(f"no route {request.method} {request.path}"))

    @app.errorhandler(405)
    async def bad_method(_: Any) -> Any:
        err = BadRequestError(f"method {request.method} not allowed on {request.path}")
        err.status = 405
        return error_response(app, request.path, err)

    @app.errorhandler(413)
    async def too_large(_: Any) -> Any:
        limits: dict[str, tuple[int, str]] = app.extensions.get("inferno_body_limits", {})
        prefix = max((p for p in limits if request.path.startswith(p)), key=len, default=None)
        limit, setting = limits[prefix] if prefix is not None else (settings.max_body_bytes, "INFERNO_MAX_BODY_BYTES")
        err = BadRequestError(f"request body is larger than {limit} bytes ({setting})")
        err.status = 413
        return error_response(app, request.path, err)

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Any:
        from werkzeug.exceptions import HTTPException

        if isinstance(error, HTTPException):
            err = InfernoError(error.description or error.name)
            err.status = error.code or 500
            return error_response(app, request.path, err)
        logging.getLogger("inferno").exception("unhandled error on %s", request.path)
        return error_response(app, request.path, InfernoError(f"internal error: {type(error).__name__}"))

    @app.get("/health")
    async def health() -> Any:
        """200 when serving (503 while the preloaded model loads), with the loaded models."""
        ready = app.extensions.get("inferno_ready", True)
        loaded = [m.name for m in inferno.engine.loaded()]
        body: dict[str, Any] = {"status": "ok" if ready else "loading", "models": loaded}
        failed = inferno.engine.failed()
        if failed:  # models whose engine kept stopping: their requests get a 503 with the cause for a while
            body["failed"] = [{"name": m.name, "error": m.error} for m in failed]
        spare = inferno.engine.spare_runner()
        if spare is not None:  # the next load's runner process: "starting" while its imports run, then "ready"
            body["spare_runner"] = spare
        if settings.rpc_servers:  # each RPC worker: connected, ready or gone (probing one may take a moment)
            body["rpc_workers"] = await asyncio.to_thread(inferno.engine.rpc_workers)
        return body, 200 if ready else 503

    @app.get("/metrics")
    async def prometheus() -> Any:
        """Prometheus metrics."""
        data, content_type = metrics.render()
        return Response(data, content_type=content_type)

    @app.get("/inferno/ps")
    async def ps() -> Any:
        rows = [*inferno.engine.loaded(), *inferno.engine.failed()]
        return {"models": [_ps_row(m) for m in rows]}

    @app.post("/inferno/tokenize")
    @body(TokenizeBody)
    async def tokenize() -> Any:
        """The model's tokens for a text."""
        from inferno.engine.types import TokenizeRequest

        req: TokenizeBody = await read_json(TokenizeBody)
        out = (await inferno.engine.tokenize(TokenizeRequest(model=req.model, text=req.text)).result())[-1]
        return {"model": req.model, "tokens": out.tokens}

    @app.post("/inferno/detokenize")
    @body(DetokenizeBody)
    async def detokenize() -> Any:
        """The text of a list of tokens."""
        from inferno.engine.types import TokenizeRequest

        req: DetokenizeBody = await read_json(DetokenizeBody)
        out = (await inferno.engine.tokenize(TokenizeRequest(model=req.model, tokens=req.tokens)).result())[-1]
        return {"model": req.model, "text": out.text}

    @app.get("/openapi.json")
    async def openapi() -> Any:
        return openapi_document(app)

    load_plugins()
    pm.hook.register_routes(app=app, inferno=inferno)
    return app


def _request_class(app: Quart) -> Any:
    """Requests whose body limit is their route prefix's (register_body_limit), else INFERNO_MAX_BODY_BYTES."""
    from quart.wrappers import Request

    class InfernoRequest(Request):
        def __init__(self, method: str, scheme: str, path: str, *args: Any, max_content_length: int | None = None,
                     **kwargs: Any) -> None:
            limits: dict[str, tuple[int, str]] = app.extensions.get("inferno_body_limits", {})
            prefix = max((p for p in limits if path.startswith(p)), key=len, default=None)
            if prefix is not None:
                max_content_length = limits[prefix][0]
            super().__init__(method, scheme, path, *args, max_content_length=max_content_length, **kwargs)

    return InfernoRequest


def _ps_row(m: Any) -> dict[str, Any]:
    from datetime import datetime, timezone

    expires = datetime.fromtimestamp(m.expires_at, timezone.utc).isoformat() if m.expires_at else None
    return {"name": m.name, "path": m.path, "size": m.size, "context_length": m.context_length,
            "context_reason": m.context_reason, "expires_at": expires, "busy": m.busy,
            "load_options": m.load_options, "slots": m.slots,
            "slots_in_use": m.slots_in_use, "queued": m.queued, "tokens_per_second": m.tokens_per_second,
            "devices": m.devices, "state": m.state, "error": m.error, "repack": m.repack,
            "extra_buffers": m.extra_buffers, "pid": m.pid, "kv_cache": m.kv_cache, "kv_unified": m.kv_unified,
            "prompt_cache": {"bytes": m.prompt_cache_bytes, "entries": m.prompt_cache_entries,
                             "hits": m.prompt_cache_hits}}


def openapi_document(app: Quart) -> dict[str, Any]:
    """An OpenAPI 3.1 document of every route, with the pydantic models of the request bodies.

    The bodies' schemas are made together (pydantic's models_json_schema), so two dialects' models of the same
    class name (ChatMessage …) get distinct component names instead of overwriting each other."""
    from pydantic.json_schema import models_json_schema

    from inferno import __version__

    paths: dict[str, Any] = {}
    bodies: list[tuple[dict[str, Any], Any]] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = "/".join("{" + p[1:-1].split(":")[-1] + "}" if p.startswith("<") else p
                        for p in rule.rule.split("/"))
        view = app.view_functions.get(rule.endpoint)
        for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}):
            op: dict[str, Any] = {"operationId": f"{rule.endpoint}_{method.lower()}".replace(".", "_"),
                                  "summary": (inspect.getdoc(view) or "").split("\n")[0],
                                  "responses": {"200": {"description": "OK"},
                                                "400": {"description": "Bad request"},
                                                "404": {"description": "Not found"}}}
            params = [{"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
                      for arg in sorted(rule.arguments)]
            if params:
                op["parameters"] = params
            model = getattr(view, "_inferno_body", None)
            if model is not None and method in ("POST", "PUT", "DELETE", "PATCH"):
                bodies.append((op, model))
            paths.setdefault(path, {})[method.lower()] = op
    models = list(dict.fromkeys(m for _, m in bodies))
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    for op, model in bodies:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[(model, "validation")]}}}
    return {"openapi": "3.1.0", "info": {"title": "Inferno", "version": __version__}, "paths": paths,
            "components": {"schemas": top.get("$defs", {})}}


async def _call_hook(results: list[Any]) -> None:
    for r in results:
        if inspect.isawaitable(r):
            await r


async def serve(inferno: Inferno, *, preload: str | None = None, preload_options: Any = None,
                ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting, let streams end (bounded), unload models."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from inferno.pluginmanager import pm

    settings = inferno.settings
    app = create_app(inferno)
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread / Windows
            loop.add_signal_handler(sig, stop.set)
    await _call_hook(pm.hook.startup(inferno=inferno))

    async def preload_model() -> None:
        if not preload:
            return
        app.extensions["inferno_ready"] = False
        try:
            if preload_options is not None:  # the operator's own options: defaults, not a request's ask
                inferno.engine.set_defaults(preload, preload_options)
            await inferno.engine.load(preload, keep_alive=-1).result()
        except InfernoError as e:  # keep serving the other models; say why this one is not loaded
            logging.getLogger("inferno").error("could not preload %s: %s", preload, e.message)
        finally:
            app.extensions["inferno_ready"] = True

    if ready:
        ready(f"http://{host}:{settings.port}")
    try:
        await asyncio.gather(hypercorn_serve(app, config, shutdown_trigger=stop.wait),
                             preload_model())
    finally:
        await _call_hook(pm.hook.shutdown(inferno=inferno))
        await asyncio.to_thread(inferno.engine.close)
