"""One model's engine thread, inside its runner process: loads the model, feeds its batcher and embedder, reloads.

Jobs arrive in order on a queue (from the runner's pipe reader). Generations and scores wait for a slot in the
batcher; tokenize and load answer at once; embeddings go to the embedding thread. A job whose load options the
loaded model does not satisfy (LoadOptions.satisfied_by: another option, or more context than it has) holds
everything behind it until the running sequences end, then the model reloads: a running stream is never cut
(the host sends such a job only once the runner is idle, so this is a second guard). Only this thread touches
the model's batcher; status is a snapshot it takes itself.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from inferno.engine.handle import Failure
from inferno.engine.types import Done, Event, LoadedModelInfo, LoadOptions, Scores, Tokens
from inferno.errors import InfernoError

if TYPE_CHECKING:
    from inferno.engine.batcher import Batcher
    from inferno.engine.embedder import Embedder
    from inferno.engine.model import Model
    from inferno.engine.protocol import EngineSettings, ResolvedModel

STOP = object()
log = logging.getLogger("inferno.engine")
PROVEN_AFTER = 16  # decode steps after which a crash is no longer blamed on how the weights were placed
SNAPSHOT_EVERY = 0.5  # seconds between status snapshots while something runs


class Reply(Protocol):
    """Where a job's events go (the runner's pipe), and whether its caller cancelled it."""

    cancelled: threading.Event

    def put(self, item: Any) -> None:
        """An event for the job (its last one ends it)."""

    def taken(self) -> None:
        """The runner began this request (past loading): a crash from here on is this request's."""

    def admitted(self) -> None:
        """The request left the queue (a slot, or begun)."""


class Flush(Protocol):
    """Where a loop turn's events go (the runner's Outbox.send); hold: the loop steps on, a stream's tokens may wait."""

    def __call__(self, snapshot: LoadedModelInfo | None, *, hold: bool = False) -> None: ...


class Job:
    __slots__ = ("ended", "handle", "kind", "load", "request", "running", "started")

    def __init__(self, kind: str, request: Any, load: LoadOptions, handle: Reply) -> None:
        self.kind, self.request, self.load, self.handle = kind, request, load, handle
        self.started = False  # left the queue (admitted to a slot, or begun)
        self.running = False  # counted in the worker's running jobs
        self.ended = False  # its final event (or error) was sent


class _Prepared:
    """A job the preparing thread is done with: a Sequence for the batcher, or the job's final event/error."""

    __slots__ = ("job", "result")

    def __init__(self, job: Job, result: Any) -> None:
        self.job, self.result = job, result


class Worker:
    """Owns one model in its runner. flush() is called once per loop turn (after each decode step): the events
    of that step leave together; note(kind) tells the host about the model (extra buffers, first decodes)."""

    def __init__(self, name: str, resolved: ResolvedModel, settings: EngineSettings,
                 flush: Flush, note: Callable[[str], None],
                 fault: str = "") -> None:
        self.name, self.resolved, self.settings = name, resolved, settings
        self.flush, self.note, self.fault = flush, note, fault
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.inbox: collections.deque[Any] = collections.deque()  # taken off the queue, not yet dispatched
        self.model: Model | None = None
        self.batcher: Batcher | None = None
        self.embedder: Embedder | None = None
        self.scores: collections.deque[Job] = collections.deque()  # waiting for a free slot
        self.lock = threading.Lock()  # self.running: the embedding thread ends its jobs too
        self.running = 0  # jobs dispatched and not finished
        self.steps = 0  # decode steps since the model loaded
        self.extra_buffers = False
        # Rendering templates, tokenizing and building samplers (a JSON schema's grammar) happen on the preparing
        # thread, so a long prompt never stalls the slots decoding; ready work comes back on self.jobs.
        self.preparing = 0  # jobs handed to the preparing thread, not back yet
        self.ready: collections.deque[_Prepared] = collections.deque()
        self.doomed = False  # the decode failed: unload once nothing is being prepared on the model
        self._prep: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._prepare_loop, name=f"inferno-{name}-prep", daemon=True).start()
        self._snap: tuple[Any, ...] | None = None
        self._snap_at = 0.0
        self.thread = threading.Thread(target=self._loop, name=f"inferno-{name}", daemon=True)
        self.thread.start()

    # the loop -------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            stepping = (self.batcher is not None and self.batcher.busy) or (bool(self.scores) and
                                                                          self.batcher is not None)
            self.flush(self._snapshot(), hold=stepping)  # stepping on: a stream's tokens may wait for the next
            # Idle: sleep until a job comes. Held jobs (a reload) wait for work running elsewhere (an embedding
            # on its own thread) to end, and a busy model's tokens/s goes stale: look again after a while.
            timeout = 0.05 if self.inbox else (SNAPSHOT_EVERY if self._snap and self._snap[-1] else None)
            self._take(block=not stepping, timeout=timeout)
            if self._dispatch():
                break
            if self.batcher is not None and self.batcher.busy:
                if self.steps == 0 and self.fault == "segv-on-first-decode" and self.extra_buffers:
                    # the test-only fault switch (INFERNO_TEST_FAULT): where the AMX kernels crash, inside the
                    # first llama_decode, before a token of it has been sent
                    os.kill(os.getpid(), signal.SIGSEGV)
                try:
                    self.batcher.step()
                except Exception as e:  # a bug: fail what runs, keep serving
                    log.exception("decode step failed for %s", self.name)
                    self.batcher.fail_all(InfernoError(f"generation failed: {type(e).__name__}: {e}"))
                self._stepped()
                if self.batcher.broken and not self.doomed:
                    log.error("%s: the decode failed; the model reloads for the next request", self.name)
                    error = InfernoError(f"the decode failed for {self.name}; try again")
                    while self.scores:  # they would wait for a batcher that is gone (and spin)
                        self._end(self.scores.popleft(), error)
                    self.doomed = True
            if self.doomed and not self.preparing:
                self.doomed = False
                self._unload()
            self._run_scores()
        self._prep.put(None)
        self._unload()
        self.flush(None)

    def _stepped(self) -> None:
        self.steps += 1
        if self.steps == PROVEN_AFTER:
            self.note("proven")

    def _take(self, block: bool, timeout: float | None) -> None:
        try:
            item = self.jobs.get(block=block, timeout=timeout)
            while True:
                (self.ready if isinstance(item, _Prepared) else self.inbox).append(item)
                item = self.jobs.get_nowait()
        except queue.Empty:
            pass

    def _take_ready(self) -> None:
        while self.ready:
            p = self.ready.popleft()
            self.preparing -= 1
            if isinstance(p.result, BaseException) or not _is_sequence(p.result):
                self._end(p.job, p.result)
            elif self.batcher is None or self.doomed:
                self._end(p.job, InfernoError(f"the decode failed for {self.name}; try again"))
            else:
                try:  # on this thread: llama.cpp loads an adapter onto the model the batcher decodes with
                    self.batcher.model.adapters.load(p.result.lora)
                except InfernoError as e:
                    p.result.sampler.close()
                    self._end(p.job, e)
                    continue
                self.batcher.enqueue(p.result, lambda job=p.job: self._begin(job))

    def _prepare_loop(self) -> None:
        while (item := self._prep.get()) is not None:
            job, work = item
            try:
                result = work()
            except InfernoError as e:
                result = e
            except Exception as e:  # a bug or a llama.cpp failure: this caller's only
                log.exception("request failed for %s", self.name)
                result = InfernoError(f"generation failed: {type(e).__name__}: {e}")
            self.jobs.put(_Prepared(job, result))

    def _off_loop(self, job: Job, work: Callable[[], Any]) -> None:
        self.preparing += 1
        self._prep.put((job, work))

    def _dispatch(self) -> bool:
        """Start the jobs of the inbox in order; True when the worker should stop."""
        self._take_ready()
        while self.inbox:
            job = self.inbox[0]
            with self.lock:
                idle = self.running == 0
            if job is STOP:
                if not idle or len(self.inbox) > 1:
                    if len(self.inbox) > 1:  # a job found after STOP is still answered, STOP goes last
                        self.inbox.rotate(-1)
                        continue
                    return False  # unload after the current work
                return True
            if job.handle.cancelled.is_set():
                self.inbox.popleft()
                self._end(job, Done(reason="cancelled"))
                continue
            needs_model = job.kind != "tokenize" or self.model is None  # any loaded model tokenizes
            if needs_model and self.model is not None and not self._serves(job.load) and not idle:
                return False  # reload once the running sequences end; hold everything behind it
            self.inbox.popleft()
            try:
                load_ns = self._ensure(job.load) if needs_model else 0
                job.handle.taken()
                self._start(job, load_ns)
            except InfernoError as e:
                self._end(job, e)
            except Exception as e:  # a bug or a llama.cpp failure: report it to this caller only
                log.exception("request failed for %s", self.name)
                self._end(job, InfernoError(f"generation failed: {type(e).__name__}: {e}"))
        return False

    def _start(self, job: Job, load_ns: int) -> None:
        from inferno.engine.sequence import Sequence

        assert self.model is not None and self.batcher is not None
        job.running = True
        with self.lock:
            self.running += 1
        model = self.model
        if job.kind == "generate":
            self._off_loop(job, lambda: Sequence(model, job.request, self._emitter(job), job.handle.cancelled.is_set,
                                                 load_ns))
            return
        self._begin(job)
        if job.kind == "embed":
            if self.embedder is None:
                from inferno.engine.embedder import Embedder

                self.embedder = Embedder(self.model)
            self.embedder.submit(job.request, load_ns, lambda r: self._end(job, r))
        elif job.kind == "score":
            self.scores.append(job)
        elif job.kind == "tokenize":
            self._off_loop(job, lambda: _tokenize(model, job.request))
        else:  # load
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
                from inferno.engine.scoring import score

                logprobs = score(self.batcher, tokens)
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
            if isinstance(event, Failure):
                self._end(job, event.error)
            elif isinstance(event, Done):
                self._end(job, event)
            else:
                job.handle.put(event)

        return emit

    def _begin(self, job: Job) -> None:
        if not job.started:
            job.started = True
            job.handle.admitted()

    def _end(self, job: Job, result: Any) -> None:
        """The job's final event (or its error)."""
        self._begin(job)
        if job.running:
            job.running = False
            with self.lock:
                self.running -= 1
        job.ended = True
        job.handle.put(Failure(result) if isinstance(result, BaseException) else result)

    # loading --------------------------------------------------------------------------------------

    def _serves(self, options: LoadOptions) -> bool:
        """The loaded model serves a job asking for these options without a reload (LoadOptions.satisfied_by)."""
        return self.model is not None and options.satisfied_by(self.model.options, self.model.n_ctx)

    def _ensure(self, options: LoadOptions) -> int:
        if self._serves(options):
            return 0
        self._unload()
        from inferno.engine.batcher import Batcher
        from inferno.engine.devices import extra_buffers
        from inferno.engine.model import Model

        t0 = time.perf_counter_ns()
        try:
            model = Model(self.resolved, options, self.settings)
        except BaseException:
            self._release_rpc()
            raise
        self.extra_buffers = bool(extra_buffers(model.buffers))
        if self.fault == "segv-on-load" and self.extra_buffers:
            os.kill(os.getpid(), signal.SIGSEGV)  # the test-only fault switch (INFERNO_TEST_FAULT)
        try:
            self.batcher = Batcher(model, self.settings.num_parallel)
        except BaseException:
            model.close()
            self._release_rpc()
            raise
        self.model, self.steps = model, 0
        self._snap = None
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
            self._release_rpc()
        self._snap = None

    def _release_rpc(self) -> None:
        if self.settings.rpc_servers:
            from inferno.engine.rpc import pool

            pool().release()

    # status ---------------------------------------------------------------------------------------

    def _snapshot(self) -> LoadedModelInfo | None:
        """What `ps` shows of this model, taken on this thread, when it changed (or its tokens/s may have):
        None when nothing is new."""
        m, b = self.model, self.batcher
        if m is None or b is None:
            return None
        now = time.monotonic()
        key = (id(m), b.in_use, len(b.slots), bool(self.scores), b.ram.bytes, b.ram.hits)
        if key == (self._snap or ())[:-1] and now - self._snap_at < SNAPSHOT_EVERY:
            return None
        tps = round(b.tokens_per_second(), 1)
        self._snap, self._snap_at = (*key, tps), now
        return LoadedModelInfo(name=self.name, path=str(m.path), size=m.size, context_length=m.n_ctx,
                               devices=m.devices(), expires_at=None, busy=b.busy,
                               load_options=m.options.model_dump(exclude_none=True), slots=len(b.slots),
                               slots_in_use=b.in_use, tokens_per_second=tps,
                               repack=not self.settings.no_repack, extra_buffers=self.extra_buffers,
                               pid=os.getpid(), kv_cache=sum(d.get("kv_cache", 0) for d in m.devices()),
                               kv_unified=b.unified, context_reason=m.context_reason,
                               prompt_cache_bytes=b.ram.bytes, prompt_cache_entries=len(b.ram.entries),
                               prompt_cache_hits=b.ram.hits)


def _is_sequence(result: Any) -> bool:
    from inferno.engine.sequence import Sequence

    return isinstance(result, Sequence)


def _tokenize(model: Model, req: Any) -> Tokens:
    if req.prompt_of is not None:  # rendered and tokenized, nothing decoded: counting is cheap
        return Tokens(tokens=model.prompt_tokens(req.prompt_of), text="")
    if req.tokens is not None:
        model.check_tokens(req.tokens)
        return Tokens(tokens=list(req.tokens), text=model.detokenize(list(req.tokens)))
    text = req.text or ""
    return Tokens(tokens=model.tokenize(text, add_bos=False, special=False), text=text)
