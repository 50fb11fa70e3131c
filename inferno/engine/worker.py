"""One model's worker thread: loads the model, feeds its batcher and embedder, reloads, unloads.

Jobs arrive in order on a queue. Generations and scores wait for a slot in the batcher; tokenize and load
answer at once; embeddings go to the embedding thread. A job whose load options differ from the loaded
model's (another num_ctx …) holds everything behind it until the running sequences end, then the model
reloads: a running stream is never cut.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from inferno.engine.handle import Failure, RequestHandle
from inferno.engine.types import Done, Event, LoadedModelInfo, LoadOptions, Scores, Tokens
from inferno.errors import InfernoError

if TYPE_CHECKING:
    from inferno.engine.batcher import Batcher
    from inferno.engine.embedder import Embedder
    from inferno.engine.model import Model
    from inferno.engine.scheduler import Scheduler

STOP = object()
log = logging.getLogger("inferno.engine")


class Job:
    __slots__ = ("ended", "handle", "keep_alive", "kind", "load", "request", "running", "started")

    def __init__(self, kind: str, request: Any, load: LoadOptions, keep_alive: float | None,
                 handle: RequestHandle) -> None:
        self.kind, self.request, self.load, self.keep_alive, self.handle = kind, request, load, keep_alive, handle
        self.started = False  # left the queue (admitted to a slot, or begun)
        self.running = False  # counted in the worker's running jobs
        self.ended = False  # its final event (or error) was sent


class Worker:
    """Owns one model name."""

    def __init__(self, scheduler: Scheduler, name: str) -> None:
        self.scheduler, self.name = scheduler, name
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.inbox: collections.deque[Any] = collections.deque()  # taken off the queue, not yet dispatched
        self.model: Model | None = None
        self.batcher: Batcher | None = None
        self.embedder: Embedder | None = None
        self.scores: collections.deque[Job] = collections.deque()  # waiting for a free slot
        self.running = 0  # jobs dispatched and not finished
        self.active: set[Job] = set()  # those jobs
        self.current: Job | None = None  # the job whose model is loading
        self.abandoned = False  # an RPC worker under the model died: this thread and model are never used again
        self.waiting = 0  # jobs submitted and not yet running (counted in the scheduler's queue bound)
        self.expires_at: float | None = time.time() + 300
        self.last_used = time.monotonic()
        self.thread = threading.Thread(target=self._loop, name=f"inferno-{name}", daemon=True)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self.running > 0

    # the loop -------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            stepping = (self.batcher is not None and self.batcher.busy) or bool(self.scores)
            # Idle: sleep until a job comes. Held jobs (a reload, an unload) wait for work running elsewhere
            # (an embedding on its own thread) to end: look again every 50 ms rather than spin.
            self._take(block=not stepping, timeout=0.05 if self.inbox else None)
            if self.abandoned or self._dispatch():
                break
            if self.batcher is not None and self.batcher.busy:
                try:
                    self.batcher.step()
                except Exception as e:  # a bug: fail what runs, keep serving
                    log.exception("decode step failed for %s", self.name)
                    self.batcher._fail_all(InfernoError(f"generation failed: {type(e).__name__}: {e}"))
                if self.batcher.broken and not self.abandoned:
                    log.error("%s: the decode failed; the model reloads for the next request", self.name)
                    self._unload()
            self._run_scores()
        if not self.abandoned:
            self._unload()

    def _take(self, block: bool, timeout: float | None) -> None:
        try:
            self.inbox.append(self.jobs.get(block=block, timeout=timeout))
            while True:
                self.inbox.append(self.jobs.get_nowait())
        except queue.Empty:
            pass

    def _dispatch(self) -> bool:
        """Start the jobs of the inbox in order; True when the worker should stop."""
        while self.inbox:
            job = self.inbox[0]
            idle = self.running == 0
            if job is STOP:
                return idle  # else unload after the current work
            if job.handle.cancelled.is_set():
                self.inbox.popleft()
                self._end(job, Done(reason="cancelled"))
                continue
            needs_model = job.kind != "tokenize" or self.model is None  # any loaded model tokenizes
            if needs_model and self.model is not None and self.model.options != job.load and not idle:
                return False  # reload once the running sequences end; hold everything behind it
            self.inbox.popleft()
            self.current = job
            try:
                load_ns = self._ensure(job.load) if needs_model else 0
                self._start(job, load_ns)
            except InfernoError as e:
                self._end(job, e)
            except Exception as e:  # a bug or a llama.cpp failure: report it to this caller only
                log.exception("request failed for %s", self.name)
                self._end(job, InfernoError(f"generation failed: {type(e).__name__}: {e}"))
            finally:
                self.current = None
        return False

    def _start(self, job: Job, load_ns: int) -> None:
        from inferno.engine.sequence import Sequence

        assert self.model is not None and self.batcher is not None
        if job.kind == "generate":
            seq = Sequence(self.model, job.request, self._emitter(job), job.handle.cancelled.is_set, load_ns)
            job.running = True
            with self.scheduler.lock:
                self.running += 1
            self.active.add(job)
            self.batcher.enqueue(seq, lambda: self._begin(job))
            return
        job.running = True
        with self.scheduler.lock:
            self.running += 1
        self.active.add(job)
        self._begin(job)
        if job.kind == "embed":
            if self.embedder is None:
                from inferno.engine.embedder import Embedder

                self.embedder = Embedder(self.model)
            self.embedder.submit(job.request, load_ns, lambda r: self._end(job, r))
        elif job.kind == "score":
            self.scores.append(job)
        elif job.kind == "tokenize":
            req = job.request
            if req.prompt_of is not None:  # rendered and tokenized, nothing decoded: counting is cheap
                self._end(job, Tokens(tokens=self.model.prompt_tokens(req.prompt_of), text=""))
            elif req.tokens is not None:
                self.model.check_tokens(req.tokens)
                self._end(job, Tokens(tokens=list(req.tokens), text=self.model.detokenize(list(req.tokens))))
            else:
                text = req.text or ""
                self._end(job, Tokens(tokens=self.model.tokenize(text, add_bos=False, special=False), text=text))
        else:  # load
            self.scheduler.observer.observe_load(self.name, load_ns)
            self._end(job, Done(reason="load", load_ns=load_ns, total_ns=load_ns))

    def _run_scores(self) -> None:
        while self.scores and self.batcher is not None:
            job = self.scores[0]
            try:
                assert self.model is not None
                tokens = self.model.tokenize(job.request.text, special=False)
                if len(tokens) < 2:
                    from inferno.errors import BadRequestError

                    raise BadRequestError("text to score needs at least two tokens", param="text")
                logprobs = self.batcher.score(tokens)
                if logprobs is None:
                    return  # no free slot or room yet: after the next step
                self.scores.popleft()
                self._end(job, Scores(tokens=tokens, logprobs=logprobs))
            except InfernoError as e:
                self.scores.popleft()
                self._end(job, e)

    # replies --------------------------------------------------------------------------------------

    def _emitter(self, job: Job) -> Callable[[Event], None]:
        def emit(event: Any) -> None:
            if isinstance(event, Done):  # one line per request for operators (and the tests' evidence)
                self.scheduler.observer.observe_generation(self.name, event)
                log.info(json.dumps({"event": "generation", "model": self.name, "reason": event.reason,
                                     "prompt_tokens": event.prompt_tokens,
                                     "completion_tokens": event.completion_tokens,
                                     "cached_tokens": event.cached_tokens,
                                     "total_ms": round(event.total_ns / 1e6, 1)}))
            if isinstance(event, Failure):
                self._end(job, event.error)
            elif isinstance(event, Done):
                self._end(job, event)
            else:
                job.handle._put(event)

        return emit

    def _begin(self, job: Job) -> None:
        if not job.started:
            job.started = True
            self.scheduler._started(self)

    def _end(self, job: Job, result: Any) -> None:
        """The job's final event (or its error): the caller gets it, the counts and keep_alive follow."""
        self._begin(job)
        if job.running:
            job.running = False
            with self.scheduler.lock:  # the embedding thread ends its jobs too
                self.running -= 1
        self.active.discard(job)
        job.ended = True
        job.handle._put(Failure(result) if isinstance(result, BaseException) else result)
        self.scheduler._finished(self, job)

    # loading --------------------------------------------------------------------------------------

    def _ensure(self, options: LoadOptions) -> int:
        if self.model is not None and self.model.options == options:
            return 0
        self._unload()
        from inferno.engine.batcher import Batcher
        from inferno.engine.model import Model

        t0 = time.perf_counter_ns()
        sched = self.scheduler
        rpc = sched.settings.rpc_servers and options.n_gpu_layers != 0  # 0: every layer on this machine's CPU
        if rpc:
            from inferno.engine.rpc import pool

            pool().acquire(self)  # before loading: a worker may die while the weights go to it
        try:
            model = Model(sched.resolver.resolve(self.name), options, sched.settings)
            try:
                self.batcher = Batcher(model, sched.settings.num_parallel)
            except BaseException:
                model.close()
                raise
        except BaseException:
            if rpc:
                pool().release(self)
            raise
        self.model = model
        return time.perf_counter_ns() - t0

    def _unload(self) -> None:
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        if self.model is not None:
            model, self.model = self.model, None
            with contextlib.suppress(Exception):
                model.close()
            if model.rpc:
                from inferno.engine.rpc import pool

                pool().release(self)

    def abandon(self, error: InfernoError) -> None:
        """An RPC worker holding part of the model died. Called on another thread while this one is stuck in
        llama.cpp for good (or idle): the model leaves service, every request it holds or awaits fails with
        error, and its thread and llama.cpp objects are never touched again (see inferno.engine.rpc)."""
        from inferno.engine.rpc import pool

        self.abandoned = True
        pool().keep(self.model, self.batcher, self.embedder)
        with self.scheduler.lock:
            if self.scheduler.workers.get(self.name) is self:
                del self.scheduler.workers[self.name]
        waiting = [j for j in (self.current, *self.active, *self.inbox, *self.scores) if isinstance(j, Job)]
        while True:
            try:
                waiting.append(self.jobs.get_nowait())
            except queue.Empty:
                break
        self.inbox.clear()
        self.scores.clear()
        for job in dict.fromkeys(j for j in waiting if isinstance(j, Job)):
            if not job.ended:
                self._end(job, error)
        self.jobs.put(STOP)  # an idle thread wakes up and leaves without unloading

    def info(self) -> LoadedModelInfo | None:
        m, b = self.model, self.batcher
        if m is None or b is None:
            return None
        return LoadedModelInfo(name=self.name, path=str(m.path), size=m.size, context_length=m.n_ctx,
                               devices=m.devices(),
                               expires_at=self.expires_at, busy=self.busy,
                               load_options=m.options.model_dump(exclude_none=True), slots=len(b.slots),
                               slots_in_use=b.in_use, queued=self.waiting,
                               tokens_per_second=round(b.tokens_per_second(), 1))
