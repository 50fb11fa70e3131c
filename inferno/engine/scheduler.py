"""The scheduler: models loaded on demand, one worker thread each, keep_alive, LRU eviction, a bounded queue.

Callers see submit() → RequestHandle (async or sync iteration of events, cancel()), embed(), load(),
unload(), loaded(). Everything else is internal, so a batching engine can replace it behind that surface.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from inferno.engine.handle import Failure, RequestHandle
from inferno.engine.types import (
    Done,
    EmbedRequest,
    Event,
    GenerateRequest,
    LoadedModelInfo,
    LoadOptions,
    ScoreRequest,
    Scores,
    TokenizeRequest,
    Tokens,
)
from inferno.errors import BusyError, InfernoError, ModelLoadError

if TYPE_CHECKING:
    from inferno.engine.backend import LoadedModel
    from inferno.host import Inferno

_STOP = object()
log = logging.getLogger("inferno.engine")


class _Job:
    __slots__ = ("handle", "host", "keep_alive", "load", "request", "run")

    def __init__(self, request: Any, load: LoadOptions, keep_alive: float | None, handle: RequestHandle,
                 run: Callable[[LoadedModel, _Job, int], None], host: Inferno) -> None:
        self.request, self.load, self.keep_alive, self.handle, self.run = request, load, keep_alive, handle, run
        self.host = host


def model_host(job: _Job) -> Inferno:
    return job.host


class _Worker:
    """Owns one model name: loads it, runs its jobs one at a time, unloads it."""

    def __init__(self, scheduler: Scheduler, name: str) -> None:
        self.scheduler, self.name = scheduler, name
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.model: LoadedModel | None = None
        self.busy = False
        self.waiting = 0
        self.expires_at: float | None = time.time() + 300
        self.last_used = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name=f"inferno-{name}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                self._unload()
                return
            self.scheduler._started(self)
            try:
                if job.handle.cancelled.is_set():
                    job.handle._put(Done(reason="cancelled"))
                    continue
                load_ns = self._ensure(job.load)
                assert self.model is not None
                job.run(self.model, job, load_ns)
            except InfernoError as e:
                job.handle._put(Failure(e))
            except Exception as e:  # a bug or a llama.cpp failure: report it to this caller only
                job.handle._put(Failure(InfernoError(f"generation failed: {type(e).__name__}: {e}")))
            finally:
                self.scheduler._finished(self, job)

    def _ensure(self, options: LoadOptions) -> int:
        if self.model is not None and self.model.options == options:
            return 0
        self._unload()
        t0 = time.perf_counter_ns()
        self.model = self.scheduler._load_model(self.name, options)
        return time.perf_counter_ns() - t0

    def _unload(self) -> None:
        if self.model is not None:
            model, self.model = self.model, None
            with contextlib.suppress(Exception):
                model.close()

    def info(self) -> LoadedModelInfo | None:
        m = self.model
        if m is None:
            return None
        return LoadedModelInfo(name=self.name, path=str(m.path), size=m.size, context_length=m.n_ctx,
                               expires_at=self.expires_at, busy=self.busy,
                               load_options=m.options.model_dump(exclude_none=True))


class Scheduler:
    def __init__(self, host: Inferno) -> None:
        self.host = host
        self.settings = host.settings
        self.lock = threading.Lock()
        self.workers: dict[str, _Worker] = {}
        self.defaults: dict[str, LoadOptions] = {}  # per-model load options set by `serve --n-ctx …`
        self.global_defaults = LoadOptions()
        self.queued = 0
        self._closed = False
        self._reaper = threading.Thread(target=self._reap_loop, name="inferno-reaper", daemon=True)
        self._reaper.start()

    # public surface ---------------------------------------------------------------------------------

    def submit(self, request: GenerateRequest) -> RequestHandle:
        """Queue a generation; iterate the handle for TextDelta / ToolCalls events and a final Done."""
        return self._enqueue(request, request.load, request.keep_alive, _run_generate)

    def embed(self, request: EmbedRequest) -> RequestHandle:
        """Queue an embedding; the handle yields one Embeddings event."""
        return self._enqueue(request, request.load, request.keep_alive, _run_embed)

    def tokenize(self, request: TokenizeRequest) -> RequestHandle:
        """Tokenize request.text (or detokenize request.tokens) with the model's vocabulary; one Tokens event."""
        return self._enqueue(request, request.load, request.keep_alive, _run_tokenize)

    def score(self, request: ScoreRequest) -> RequestHandle:
        """Log-probability of each token of request.text; one Scores event."""
        return self._enqueue(request, request.load, request.keep_alive, _run_score)

    def load(self, name: str, options: LoadOptions | None = None, keep_alive: float | None = None) -> RequestHandle:
        """Load (or keep) a model without generating; yields Done(reason="load")."""
        return self._enqueue(name, options or LoadOptions(), keep_alive, _run_load, name=name)

    def unload(self, name: str) -> bool:
        """Unload a model once its current work ends. False if it was not loaded."""
        canonical = self.host.lookup(name).name
        with self.lock:
            worker = self.workers.pop(canonical, None)
        if worker is None:
            return False
        worker.jobs.put(_STOP)
        return True

    def loaded(self) -> list[LoadedModelInfo]:
        with self.lock:
            infos = [w.info() for w in self.workers.values()]
        return [i for i in infos if i is not None]

    def set_defaults(self, name: str | None, options: LoadOptions) -> None:
        if name is None:
            self.global_defaults = options
        else:
            self.defaults[self.host.lookup(name).name] = options

    def close(self, timeout: float = 10.0) -> None:
        """Cancel nothing, accept nothing more, unload every model after its current job."""
        with self.lock:
            self._closed = True
            workers = list(self.workers.values())
            self.workers.clear()
        for w in workers:
            w.jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for w in workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))

    # internals --------------------------------------------------------------------------------------

    def _enqueue(self, request: Any, load: LoadOptions, keep_alive: float | None,
                 run: Callable[[LoadedModel, _Job, int], None], name: str | None = None) -> RequestHandle:
        info = self.host.lookup(name or request.model)  # ModelNotFoundError before anything queues
        options = load.merged(self.defaults.get(info.name, self.global_defaults))
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        handle = RequestHandle(loop)
        with self.lock:
            if self._closed:
                raise BusyError("server is shutting down")
            if self.queued >= self.settings.max_queue:  # submitted but not started, across all models
                raise BusyError()
            worker = self.workers.get(info.name)
            if worker is None:
                worker = self.workers[info.name] = _Worker(self, info.name)
                self._evict_locked()
            worker.waiting += 1
            worker.last_used = time.monotonic()
            self.queued += 1
        worker.jobs.put(_Job(request, options, keep_alive, handle, run, self.host))
        return handle

    def _load_model(self, name: str, options: LoadOptions) -> LoadedModel:
        from inferno.engine.backend import LoadedModel

        info = self.host.store.get(name)
        try:
            meta = self.host.metadata(name)
        except InfernoError as e:
            raise ModelLoadError(f"cannot load {name}: {e.message}") from e
        extra = info.model_extra or {}
        defaults = {k: extra[k] for k in ("system", "template", "parameters") if extra.get(k)}
        return LoadedModel(name, info.file, meta, options, self.settings.default_context, defaults,
                           self.settings.max_prompt_tokens)

    def _started(self, worker: _Worker) -> None:
        with self.lock:
            worker.busy = True
            worker.waiting -= 1
            self.queued -= 1

    def _finished(self, worker: _Worker, job: _Job) -> None:
        keep = job.keep_alive if job.keep_alive is not None else self.settings.keep_alive_seconds
        if keep is None or keep < 0:
            keep = None
        with self.lock:
            worker.busy = False
            worker.last_used = time.monotonic()
            worker.expires_at = None if keep is None else time.time() + keep
            if keep == 0 and worker.waiting == 0 and self.workers.get(worker.name) is worker:
                # keep_alive 0: unload as soon as this request ends (Open WebUI unloads this way)
                del self.workers[worker.name]
                worker.jobs.put(_STOP)

    def _evict_locked(self) -> None:
        """Past the maximum, stop the least recently used idle workers (never a busy one)."""
        excess = len(self.workers) - self.settings.max_loaded_models
        if excess <= 0:
            return
        idle = sorted((w for w in self.workers.values() if not w.busy and w.waiting == 0),
                      key=lambda w: w.last_used)
        for w in idle[:excess]:
            del self.workers[w.name]
            w.jobs.put(_STOP)

    def _reap_loop(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.time()
            with self.lock:
                if self._closed:
                    return
                for w in list(self.workers.values()):
                    if not w.busy and w.waiting == 0 and w.expires_at is not None and w.expires_at <= now:
                        del self.workers[w.name]
                        w.jobs.put(_STOP)
                self._evict_locked()


def _run_generate(model: LoadedModel, job: _Job, load_ns: int) -> None:
    def emit(event: Any) -> None:
        if isinstance(event, Done):  # one line per request for operators (and the tests' evidence)
            if "metrics" in model_host(job).__dict__:
                model_host(job).metrics.observe_generation(model.name, event)
            log.info(json.dumps({"event": "generation", "model": model.name, "reason": event.reason,
                                 "prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
                                 "cached_tokens": event.cached_tokens, "total_ms": round(event.total_ns / 1e6, 1)}))
        job.handle._put(event)

    model.generate(job.request, job.handle.cancelled, emit, load_ns)


def _run_embed(model: LoadedModel, job: _Job, load_ns: int) -> None:
    job.handle._put(model.embed(job.request, load_ns))


def _run_tokenize(model: LoadedModel, job: _Job, load_ns: int) -> None:
    req: TokenizeRequest = job.request
    if req.tokens is not None:
        bad = [t for t in req.tokens if not 0 <= t < model.llama.n_vocab()]
        if bad:
            from inferno.errors import BadRequestError

            raise BadRequestError(f"token {bad[0]} is outside the vocabulary of {model.name}", param="tokens")
        job.handle._put(Tokens(tokens=list(req.tokens), text=model.detokenize(list(req.tokens))))
    else:
        text = req.text or ""
        job.handle._put(Tokens(tokens=model.tokenize(text, add_bos=False, special=False), text=text))


def _run_score(model: LoadedModel, job: _Job, load_ns: int) -> None:
    tokens, logprobs = model.score(job.request.text)
    job.handle._put(Scores(tokens=tokens, logprobs=logprobs))


def _run_load(model: LoadedModel, job: _Job, load_ns: int) -> None:
    if "metrics" in job.host.__dict__:
        job.host.metrics.observe_load(model.name, load_ns)
    job.handle._put(Done(reason="load", load_ns=load_ns, total_ns=load_ns))


EventStream = AsyncIterator[Event]
