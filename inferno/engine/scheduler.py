"""The scheduler: models loaded on demand, a runner process per model, keep_alive, LRU eviction, a bounded queue.

It implements the `Engine` protocol (inferno.engine.protocol) in the host process. Each loaded model runs in its
own runner process (inferno.engine.runner: the continuous-batching loop of inferno.engine.batcher), spoken to
through a proxy (inferno.engine.proxy); the scheduler decides which models are loaded and for how long, and a
model whose runner keeps dying is marked failed for a while (inferno.engine.supervisor).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from inferno.engine.handle import RequestHandle
from inferno.engine.limits import check_load
from inferno.engine.protocol import EngineSettings, NullObserver, Observer, Resolver
from inferno.engine.proxy import RunnerProxy
from inferno.engine.rpc_watch import RpcWatch
from inferno.engine.runnerconn import Job
from inferno.engine.spawn import Spawner
from inferno.engine.supervisor import Deaths, RepackMemory
from inferno.engine.types import (
    EmbedRequest,
    GenerateRequest,
    LoadedModelInfo,
    LoadOptions,
    RerankRequest,
    ScoreRequest,
    TokenizeRequest,
)
from inferno.errors import BusyError, InfernoError, UnavailableError

if TYPE_CHECKING:
    from inferno.lora import ServedLora


class Scheduler:
    def __init__(self, resolver: Resolver, settings: EngineSettings | None = None,
                 observer: Observer | None = None) -> None:
        self.resolver = resolver
        self.settings = settings or EngineSettings()
        self.observer: Observer = observer or NullObserver()
        self.lock = threading.Lock()
        self.workers: dict[str, RunnerProxy] = {}
        self.defaults: dict[str, LoadOptions] = {}  # per-model load options set by `serve --n-ctx …`
        self.global_defaults = LoadOptions()
        self.served_lora: ServedLora | None = None  # `serve --lora`: the served model's adapters
        self._queued = 0
        self._closed = False
        self.deaths = Deaths(self.settings.crash_limit, self.settings.crash_window)
        self.repack_memory = RepackMemory(self.settings.home)
        self.rpc_watch = RpcWatch()
        self.spawner = Spawner(self.settings.spare_runner)
        self._reaper = threading.Thread(target=self._reap_loop, name="inferno-reaper", daemon=True)
        self._reaper.start()

    # the Engine protocol ----------------------------------------------------------------------------

    def submit(self, request: GenerateRequest) -> RequestHandle:
        """Queue a generation; iterate the handle for TextDelta / ToolCalls events and a final Done."""
        return self._enqueue("generate", request.model, request, request.load, request.keep_alive)

    def embed(self, request: EmbedRequest) -> RequestHandle:
        """Queue an embedding; the handle yields one Embeddings event."""
        return self._enqueue("embed", request.model, request, request.load, request.keep_alive)

    def rerank(self, request: RerankRequest) -> RequestHandle:
        """Queue a reranking; the handle yields one Ranked event. It runs on the embedding thread, as embeddings."""
        return self._enqueue("embed", request.model, request, request.load, request.keep_alive)

    def tokenize(self, request: TokenizeRequest) -> RequestHandle:
        """Tokenize request.text (or detokenize request.tokens) with the model's vocabulary; one Tokens event."""
        return self._enqueue("tokenize", request.model, request, request.load, request.keep_alive)

    def score(self, request: ScoreRequest) -> RequestHandle:
        """Log-probability of each token of request.text; one Scores event."""
        return self._enqueue("score", request.model, request, request.load, request.keep_alive)

    def load(self, name: str, options: LoadOptions | None = None, keep_alive: float | None = None) -> RequestHandle:
        """Load (or keep) a model without generating; yields Done(reason="load")."""
        return self._enqueue("load", name, name, options or LoadOptions(), keep_alive)

    def unload(self, name: str) -> bool:
        """Unload a model once its running sequences end. False if it was not loaded."""
        canonical = self.resolver.canonical(name)
        with self.lock:
            worker = self.workers.pop(canonical, None)
            if worker is None:
                return False
            worker.stop()  # its accepted requests are served first
        return True

    def loaded(self) -> list[LoadedModelInfo]:
        """The loaded models, from the status snapshots their runners send (never from their live state)."""
        with self.lock:
            infos = [w.info() for w in self.workers.values()]
        return [i for i in infos if i is not None]

    def failed(self) -> list[LoadedModelInfo]:
        """The models marked failed (their runner died crash_limit times within crash_window), with the cause."""
        rows = []
        for name in self.deaths.failed_names():
            error = self.deaths.failed(name)
            if error is not None:
                rows.append(LoadedModelInfo(name=name, path="", size=0, context_length=0, expires_at=None,
                                            busy=False, state="failed", error=error.message))
        return rows

    def set_defaults(self, name: str | None, options: LoadOptions) -> None:
        if name is None:
            self.global_defaults = options
        else:
            self.defaults[self.resolver.canonical(name)] = options

    def spare_runner(self) -> str | None:
        """The spare runner process (inferno.engine.spawn): "ready", "starting", or None (none kept now)."""
        return self.spawner.state()

    def rpc_workers(self) -> list[dict[str, Any]]:
        """The state of each RPC worker (settings.rpc_servers): connected, ready or gone, and why. A worker that
        closed its connection under an idle model is found here: that model's runner ends, as on a failure."""
        if not self.settings.rpc_servers:
            return []
        held: dict[str, list[int]] = {}
        with self.lock:
            for w in self.workers.values():
                if w.runner is not None and w.runner.end_error is None:
                    for ep in w.runner.endpoints:
                        held.setdefault(ep, []).append(w.runner.proc.pid)
        rows, closed = self.rpc_watch.status(self.settings.rpc_servers, held)
        for ep, why in closed.items():
            self._end_split_over([ep], why)
        return rows

    def rpc_lost(self, proxy: RunnerProxy, runner: Any, why: str) -> InfernoError | None:
        """A runner died: if it was split over RPC workers and one of them is gone, the error its requests get
        (and the other models split over that worker end too); None when the death was the runner's own."""
        endpoints = sorted(runner.endpoints)
        if not endpoints and self.settings.rpc_servers and (runner.options is None
                                                            or runner.options.n_gpu_layers != 0):
            endpoints = list(self.settings.rpc_servers)  # it died before telling which it held
        if not endpoints:
            return None
        error = self.rpc_watch.lost(endpoints, [proxy.name], why)
        if error is not None:
            gone = [ep for ep in endpoints if self.rpc_watch.workers[ep].state == "gone"]
            self._end_split_over(gone, why, but=proxy)
        return error

    def _end_split_over(self, endpoints: list[str], why: str, but: RunnerProxy | None = None) -> None:
        """End the runners of the models split over these (gone) workers, each request told why."""
        with self.lock:
            hit = [w for w in self.workers.values() if w is not but and w.runner is not None
                   and w.runner.end_error is None and w.runner.endpoints & set(endpoints)]
        names = ", ".join(sorted(w.name for w in hit))
        for w in hit:
            w.kill(UnavailableError(f"RPC worker {', '.join(endpoints)} is gone ({why}); {names} will load again "
                                    "on the next request once the worker is back"))

    @property
    def queued(self) -> int:
        return self._queued

    def close(self, timeout: float = 10.0) -> None:
        """Accept nothing more, unload every model after its running sequences end."""
        with self.lock:
            self._closed = True
            workers = list(self.workers.values())
            self.workers.clear()
            for w in workers:
                w.stop()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        for w in workers:
            w.kill()  # past the timeout: runners still decoding end now
        self.spawner.close()

    # called by the proxies, under the lock ---------------------------------------------------------

    def dequeued_locked(self) -> None:
        """A request left the bounded queue: its runner admitted it, or it ended before that."""
        self._queued -= 1

    def requeued_locked(self) -> None:
        """An admitted request is queued again: its runner died before it began, a fresh one serves it."""
        self._queued += 1

    def finished_locked(self, worker: RunnerProxy, job: Job) -> None:
        """A job ended: its keep_alive starts now (0: the model unloads once nothing else runs on it)."""
        keep = job.keep_alive if job.keep_alive is not None else self.settings.keep_alive
        if keep is None or keep < 0:
            keep = None
        worker.last_used = time.monotonic()
        worker.expires_at = None if keep is None else time.time() + keep
        if (keep == 0 and not worker.busy and worker.waiting == 0
                and self.workers.get(worker.name) is worker):
            # keep_alive 0: unload as soon as this request ends (Open WebUI unloads this way)
            del self.workers[worker.name]
            worker.stop()

    # internals --------------------------------------------------------------------------------------

    def _enqueue(self, kind: str, model: str, request: object, load: LoadOptions,
                 keep_alive: float | None) -> RequestHandle:
        from inferno.lora import route

        asked = self.resolver.canonical(model)  # ModelNotFoundError before anything queues
        name, request = route(self.resolver, self.served_lora, asked, request)  # an adapter model: its base's runner
        check_load(self.resolver, name, load, self.settings)  # a request's load options within the limits (400)
        # `serve MODEL --n-ctx …` set for the model asked for (an adapter model) or for its base
        options = load.merged(self.defaults.get(asked, self.defaults.get(name, self.global_defaults)))
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        handle = RequestHandle(loop)
        if kind == "load":
            self.deaths.clear(name)  # loaded explicitly: a failed model is tried again
        elif (failed := self.deaths.failed(name)) is not None:
            raise failed  # its runner keeps dying: say why at once, until the window passes
        with self.lock:
            if self._closed:
                raise BusyError("server is shutting down")
            if self._queued >= self.settings.max_queue:  # accepted but not running, across all models
                raise BusyError()
            worker = self.workers.get(name)
            if worker is None:
                worker = self.workers[name] = RunnerProxy(self, name)
            # counted as waiting (and queued to it, under the lock) before any eviction looks at it
            self._queued += 1
            worker.last_used = time.monotonic()
            worker.put(Job(kind, request, options, keep_alive, handle))
            self._evict_locked(keep=worker)
        return handle

    def _evict_locked(self, keep: RunnerProxy | None = None) -> None:
        """Past the maximum, stop the least recently used idle workers (never a busy one, never keep: the one
        a request is being queued to). A model over the maximum that nothing idle can make room for loads
        beside the busy ones, and the busy ones are evicted once idle."""
        excess = len(self.workers) - self.settings.max_loaded_models
        if excess <= 0:
            return
        idle = sorted((w for w in self.workers.values() if not w.busy and w.waiting == 0 and w is not keep),
                      key=lambda w: w.last_used)
        for w in idle[:excess]:
            del self.workers[w.name]
            w.stop()

    def _reap_loop(self) -> None:
        while True:
            time.sleep(0.1)  # a timer, not a wait for an event: expiry is a point in time
            now = time.time()
            with self.lock:
                if self._closed:
                    return
                for w in list(self.workers.values()):
                    if not w.busy and w.waiting == 0 and w.expires_at is not None and w.expires_at <= now:
                        del self.workers[w.name]
                        w.stop()
                self._evict_locked()
