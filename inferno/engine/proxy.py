"""The host's end of one model's runner process (inferno.engine.runner): the scheduler's worker for that model.

The proxy keeps the model's queue in the host: a job is sent to the runner in order, and one whose load options
the runner's model does not satisfy (LoadOptions.satisfied_by: a request naming no context is served by the
context loaded, one asking for no more too) is held (with everything behind it) until the runner's jobs end, so
the reload decision stays here. A driver thread starts runners and sends frames; a reader thread per runner takes its
events (batched per decode step) to the requests' handles; a third keeps the runner's last stderr lines.

A runner that dies (end of file, then its exit status): every request it had begun ends with one
EngineStoppedError naming the model and the cause; requests it had not begun are sent to a fresh runner. A death
by a signal while loading or in the first decodes with weights in llama.cpp's extra buffer types is
llama.cpp#20824's signature: the model is started once more without them, and that is remembered.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from inferno.engine.handle import FINAL, Failure
from inferno.engine.runnerconn import Job, Runner
from inferno.engine.supervisor import cause
from inferno.engine.types import Done, LoadedModelInfo, LoadOptions
from inferno.errors import EngineStoppedError, InfernoError

if TYPE_CHECKING:
    from inferno.engine.scheduler import Scheduler

log = logging.getLogger("inferno.engine")
FIRST_EXPIRY_S = 300.0  # shown until the first request ends and sets its keep_alive (the reaper spares the waiting)
# a native backtrace (ggml prints one through gdb when INFERNO_DEBUG asks for it) says nothing to an operator
_BACKTRACE = re.compile(r"^(#\d+\s|\d+\s|\[Inferior |\[New LWP|\[Thread debugging|Using host libthread_db|"
                        r"0x[0-9a-f]+ in )")


class RunnerProxy:
    def __init__(self, scheduler: Scheduler, name: str) -> None:
        self.scheduler, self.name = scheduler, name
        self.lock = scheduler.lock  # counts, queues and the scheduler's maps change together
        self.cv = threading.Condition(self.lock)
        self.pending: collections.deque[Job] = collections.deque()  # accepted, not sent to a runner
        self.sent: dict[int, Job] = {}  # sent to the runner, not ended
        self.cancels: list[int] = []
        self.waiting = 0  # accepted, not admitted (counted in the scheduler's queue bound)
        self.running = 0  # admitted, not ended
        self.stopping = False
        self.expires_at: float | None = time.time() + FIRST_EXPIRY_S
        self.last_used = time.monotonic()
        self.runner: Runner | None = None
        self.snapshot: LoadedModelInfo | None = None
        self.thread = threading.Thread(target=self._drive, name=f"inferno-{name}", daemon=True)
        self.thread.start()

    @property
    def busy(self) -> bool:
        return self.running > 0

    # called by the scheduler, under its lock ------------------------------------------------------------

    def put(self, job: Job) -> None:
        self.waiting += 1
        self.pending.append(job)
        job.handle.on_cancel = lambda: self._cancel(job)
        self.cv.notify_all()

    def stop(self) -> None:
        """Serve what was accepted, then end the runner."""
        self.stopping = True
        self.cv.notify_all()

    def info(self) -> LoadedModelInfo | None:
        snap, runner = self.snapshot, self.runner
        if snap is None or runner is None or runner.end_error is not None:
            return None
        return dataclasses.replace(snap, expires_at=self.expires_at, busy=self.busy, queued=self.waiting)

    # the driver thread: starts runners, sends ----------------------------------------------------------

    def _drive(self) -> None:
        while True:
            with self.cv:
                while (action := self._next_locked()) is None:
                    self.cv.wait()
            what, arg = action
            if what == "exit":
                return
            if what == "start":
                try:
                    self._start()
                except Exception as e:  # a bug: the requests waiting for this runner get it, never a hang
                    log.exception("starting the engine for %s failed", self.name)
                    self._fail_pending(InfernoError(f"cannot start the engine for {self.name}: "
                                                    f"{type(e).__name__}: {e}"))
            elif what == "cancel":
                runner = self.runner
                for jid in arg:
                    if runner is not None:
                        runner.send(("cancel", jid))
            elif what == "send":
                job, runner = arg
                if not runner.send(("job", job.id, job.kind, job.request, job.load)):
                    time.sleep(0.01)  # the reader sees the death and puts the job back
            elif what == "stop":
                arg.send(("stop",))

    def _next_locked(self) -> tuple[str, Any] | None:
        if self.cancels:
            ids, self.cancels = self.cancels, []
            return "cancel", ids
        runner = self.runner
        if self.pending:
            if runner is None:
                return "start", None
            if runner.stopping:
                return None  # the next runner starts once this one ended
            job = self.pending[0]
            loads = job.kind != "tokenize" or runner.options is None
            reload = loads and (runner.options is None or not job.load.satisfied_by(runner.options, runner.n_ctx))
            if reload and runner.options is not None and self.sent:
                return None  # reload once the runner's jobs end; everything behind it waits too
            self.pending.popleft()
            self.sent[job.id] = job
            if reload:
                runner.options, runner.n_ctx = job.load, None
            return "send", (job, runner)
        if self.stopping and not self.sent:
            if runner is None:
                return "exit", None
            if not runner.stopping:
                runner.stopping = True
                return "stop", runner
        return None

    def _start(self) -> None:
        sched = self.scheduler
        try:
            failed = sched.deaths.failed(self.name)
            if failed is not None:
                raise failed
            resolved = sched.resolver.resolve(self.name)
        except InfernoError as e:
            self._fail_pending(e)
            return
        no_repack = sched.settings.no_repack or sched.repack_memory.says_no(resolved.file)
        settings = dataclasses.replace(sched.settings, no_repack=no_repack)
        if resolved.draft is not None:  # the model's own draft model, in place of the server's --draft
            settings = dataclasses.replace(settings, draft=str(resolved.draft))
        try:
            started = sched.spawner.take()
        except OSError as e:
            self._fail_pending(InfernoError(f"cannot start the engine for {self.name}: {e}"))
            return
        runner = Runner(started.proc, started.conn, no_repack)
        runner.send(("start", self.name, resolved, settings, os.environ.get("INFERNO_TEST_FAULT", "")))
        runner.tail_thread = threading.Thread(target=self._tail, args=(runner,), daemon=True,
                                              name=f"inferno-{self.name}-log")
        runner.tail_thread.start()
        with self.cv:
            self.runner = runner
            self.cv.notify_all()
        threading.Thread(target=self._read, args=(runner,), daemon=True, name=f"inferno-{self.name}-read").start()

    def _fail_pending(self, error: InfernoError) -> None:
        with self.cv:
            jobs = list(self.pending)
            self.pending.clear()
            for job in jobs:
                self._ended_locked(job)
        for job in jobs:
            job.handle.put(Failure(error))

    def _cancel(self, job: Job) -> None:
        with self.cv:
            if job in self.pending:
                self.pending.remove(job)
                self._ended_locked(job)
                answer = True
            else:
                answer = False
                if job.id in self.sent:
                    self.cancels.append(job.id)
                    self.cv.notify_all()
        if answer:
            job.handle.put(Done(reason="cancelled"))

    # the reader thread: events up, and the runner's end -----------------------------------------------

    def _tail(self, runner: Runner) -> None:
        assert runner.proc.stdout is not None
        runlog = logging.getLogger(f"inferno.runner.{self.name}")
        for raw in iter(runner.proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line and not _BACKTRACE.match(line):
                runner.tail.append(line)
                runlog.info("%s", line)
        runner.proc.stdout.close()

    def _read(self, runner: Runner) -> None:
        spawner, refilled = self.scheduler.spawner, False
        try:
            while True:
                items, snapshot, notes = runner.conn.recv()
                if snapshot is not None and not refilled:  # loaded: the next spare's imports slow nothing now
                    spawner.refill()
                    refilled = True
                if "extra" in notes:
                    runner.extra = True
                if "proven" in notes:
                    runner.proven = True
                for note in notes:
                    if note.startswith("warning:"):
                        warnings.warn(f"{note.removeprefix('warning:')}", UserWarning, stacklevel=1)
                if snapshot is not None:  # before the events: a caller that saw Done sees the status after it
                    self.snapshot = snapshot
                    self._learn_context(runner, snapshot)
                    runner.endpoints = {d["endpoint"] for d in snapshot.devices if d.get("endpoint")}
                for jid, item in items:
                    self._receive(jid, item)
        except (EOFError, OSError):
            pass
        except Exception:  # a frame that does not unpickle: a bug; the runner is ended below
            log.exception("the engine for %s sent what the host cannot read", self.name)
            runner.proc.kill()
        returncode = runner.proc.wait()
        spawner.refill()
        runner.conn.close()
        if runner.tail_thread is not None:
            runner.tail_thread.join(5)
        self._runner_ended(runner, returncode)

    def _learn_context(self, runner: Runner, snapshot: LoadedModelInfo) -> None:
        """What the runner's model was loaded with and the context it has, from its status: jobs held while the
        context was not known may go once it is known to be large enough. A status of a model that does not
        satisfy the options sent last is not taken (the runner reloads for them: the worker asks the same
        rule)."""
        with self.cv:
            asked = runner.options
            if asked is None or (runner.n_ctx == snapshot.context_length
                                 and asked.model_dump(exclude_none=True) == snapshot.load_options):
                return
            loaded = LoadOptions(**snapshot.load_options)
            if asked.satisfied_by(loaded, snapshot.context_length):
                runner.options, runner.n_ctx = loaded, snapshot.context_length
                self.cv.notify_all()

    def _receive(self, jid: int, item: Any) -> None:
        job = self.sent.get(jid)
        if job is None:
            return
        if item == "taken":
            job.taken = True
            return
        if item == "admitted":
            with self.cv:
                if not job.admitted:
                    job.admitted = True
                    self.waiting -= 1
                    self.scheduler.dequeued_locked()
                    self.running += 1
            return
        if isinstance(item, (Failure, *FINAL)):
            if isinstance(item, Done):
                self._observe(job, item)
            with self.cv:
                del self.sent[jid]
                self._ended_locked(job)
                self.scheduler.finished_locked(self, job)
                self.cv.notify_all()
        else:
            job.emitted = True
        job.handle.put(item)

    def _ended_locked(self, job: Job) -> None:
        if job.admitted:
            self.running -= 1
        else:
            job.admitted = True
            self.waiting -= 1
            self.scheduler.dequeued_locked()
        self.last_used = time.monotonic()

    def _observe(self, job: Job, done: Done) -> None:
        observer = self.scheduler.observer
        if job.kind == "load":
            observer.observe_load(self.name, done.load_ns)
            return
        observer.observe_generation(self.name, done)
        log.info(json.dumps({"event": "generation", "model": self.name, "reason": done.reason,  # for operators
                             "prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                             "cached_tokens": done.cached_tokens, "truncated": done.truncated,
                             "shifted": done.shifted, "total_ms": round(done.total_ns / 1e6, 1)}))

    def _runner_ended(self, runner: Runner, returncode: int) -> None:
        if runner.stopping and returncode == 0:
            with self.cv:
                self.runner, self.snapshot = None, None
                self.cv.notify_all()
            return
        why = cause(returncode, list(runner.tail))
        sched = self.scheduler
        lines = "\n".join(f"    {line}" for line in list(runner.tail)[-10:])
        log.error("the engine for %s stopped: %s; its last lines:\n%s", self.name, why, lines or "    (none)")
        error: InfernoError = EngineStoppedError(f"the engine for {self.name} stopped: {why}")
        rpc_error = runner.end_error or sched.rpc_lost(self, runner, why)  # an RPC worker it was split over went
        heal = (rpc_error is None and returncode < 0 and runner.extra and not runner.proven
                and not runner.no_repack)
        if rpc_error is not None:
            error = rpc_error  # the worker's fault, not the model's: not counted as a crash
        elif heal:
            log.warning("%s: its runner died (%s) with weights repacked for this CPU (llama.cpp#20824, AMX); "
                        "loading it again without repacking (use_extra_bufts = false), remembered for this "
                        "model, llama.cpp build and CPU", self.name, why)
            try:
                sched.repack_memory.remember(sched.resolver.resolve(self.name).file, why)
            except (InfernoError, OSError):
                log.exception("remembering %s's setting", self.name)
        else:
            sched.deaths.record(self.name, why)
        failed_jobs: list[Job] = []
        with self.cv:
            self.runner, self.snapshot = None, None
            retry = []
            for job in sorted(self.sent.values(), key=lambda j: j.id):
                if (job.taken or job.admitted) and not (heal and not job.emitted):
                    failed_jobs.append(job)
                    self._ended_locked(job)
                else:  # never begun (or begun on the setting that crashed): a fresh runner serves it
                    if job.admitted:
                        job.admitted = False
                        self.running -= 1
                        self.waiting += 1
                        sched.requeued_locked()
                    job.taken = False
                    retry.append(job)
            self.sent.clear()
            self.pending.extendleft(reversed(retry))
            self.cv.notify_all()
        for job in failed_jobs:
            job.handle.put(Failure(error))

    def kill(self, error: InfernoError | None = None) -> None:
        """End the runner now; error: what its requests are told (else the death's own cause)."""
        runner = self.runner
        if runner is not None:
            if error is not None and runner.end_error is None:
                runner.end_error = error
            runner.proc.kill()
