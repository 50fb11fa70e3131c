"""Embeddings in a context of their own, on a thread of their own: they never switch or stall generation.

The context pools per sequence (the model's own pooling, or the mean of its token vectors when it has
none), so a request's inputs are decoded together, several sequences in one batch.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from inferno.engine.types import Embeddings, EmbedRequest, RerankRequest
from inferno.errors import BadRequestError, InfernoError

if TYPE_CHECKING:
    from inferno.engine.model import Model

MAX_SEQS = 16  # inputs decoded together in one batch


class Embedder:
    def __init__(self, model: Model) -> None:
        self.model, self.lib = model, model.lib
        self.n_ctx = model.n_batch  # one input per batch at most, as pooling over a non-causal model needs
        self.ctx: Any = None
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"inferno-embed-{model.name}", daemon=True)
        self.thread.start()

    def submit(self, req: EmbedRequest, load_ns: int, reply: Callable[[Any], None]) -> None:
        """Embed on the embedding thread; reply(Embeddings) or reply(an InfernoError)."""
        self.jobs.put((req, load_ns, reply))

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.ctx is not None:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None

    def _loop(self) -> None:
        while (job := self.jobs.get()) is not None:
            req, load_ns, reply = job
            try:
                if isinstance(req, RerankRequest):
                    from inferno.engine.reranker import rerank

                    reply(rerank(self, req, load_ns))
                else:
                    reply(self._embed(req, load_ns))
            except InfernoError as e:
                reply(e)
            except Exception as e:  # a llama.cpp failure: this caller's error, not the server's end
                reply(InfernoError(f"embedding failed: {type(e).__name__}: {e}"))

    def _context(self) -> Any:
        if self.ctx is None:
            lib, m = self.lib, self.model
            ctx = m.new_context(n_ctx=self.n_ctx, n_seq=MAX_SEQS, n_batch=self.n_ctx, embeddings=True)
            if lib.llama_pooling_type(ctx) == lib.LLAMA_POOLING_TYPE_NONE:  # no pooling of its own: the mean
                lib.llama_free(ctx)
                ctx = m.new_context(n_ctx=self.n_ctx, n_seq=MAX_SEQS, n_batch=self.n_ctx, embeddings=True,
                                    pooling=lib.LLAMA_POOLING_TYPE_MEAN)
            self.ctx, self.mem = ctx, lib.llama_get_memory(ctx)
            self.batch = lib.llama_batch_init(self.n_ctx, 0, 1)
            self.n_embd = lib.llama_model_n_embd(m.model)
        return self.ctx

    def _embed(self, req: EmbedRequest, load_ns: int) -> Embeddings:
        import numpy as np

        t0 = time.perf_counter_ns()
        m = self.model
        if m.meta.pooling_type == "rank":  # its pooled output is a classifier's scores, not an embedding
            raise BadRequestError(f"{m.name} is a reranker: it scores documents against a query (/v1/rerank) "
                                  "and makes no embeddings", param="model")
        token_lists = []
        for text in req.inputs:
            toks = m.tokenize(text, special=False) or [m.lib.llama_vocab_bos(m.vocab)]
            if len(toks) > self.n_ctx:
                if not req.truncate:
                    raise BadRequestError(f"input is {len(toks)} tokens, more than the {self.n_ctx} this model "
                                          "embeds at once; shorten it or allow truncation", param="input")
                toks = toks[: self.n_ctx]
            token_lists.append(toks)
        vectors: list[list[float]] = []
        for vec in self.pooled(token_lists):
            if req.dimensions:
                vec = vec[: req.dimensions]
            if req.normalize:
                norm = float(np.linalg.norm(vec))
                vec = vec / norm if norm > 0 else vec
            vectors.append(vec.tolist())
        return Embeddings(vectors=vectors, prompt_tokens=sum(map(len, token_lists)), load_ns=load_ns,
                          total_ns=time.perf_counter_ns() - t0 + load_ns)

    def pooled(self, token_lists: list[list[int]]) -> list[Any]:
        """Each token list's pooled output (a numpy vector: an embedding, or a reranker's scores), as many
        lists per decode as fit in one batch, each its own sequence."""
        ctx = self._context()
        out: list[Any] = []
        group: list[list[int]] = []
        for toks in token_lists:
            if group and (len(group) == MAX_SEQS or sum(map(len, group)) + len(toks) > self.n_ctx):
                out += self._decode(ctx, group)
                group = []
            group.append(toks)
        if group:
            out += self._decode(ctx, group)
        return out

    def _decode(self, ctx: Any, group: list[list[int]]) -> list[Any]:
        import numpy as np

        lib, b = self.lib, self.batch
        lib.llama_memory_clear(self.mem, True)
        n = 0
        for sid, toks in enumerate(group):
            for pos, tok in enumerate(toks):
                b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, 1, 1
                b.seq_id[n][0] = sid
                n += 1
        b.n_tokens = n
        rc = lib.llama_decode(ctx, b)
        if rc != 0:
            raise InfernoError(f"llama_decode failed ({rc}) while embedding")
        # a reranker's pooled output is its classifier's n_cls_out scores, an embedding model's n_embd floats
        width = lib.llama_model_n_cls_out(self.model.model) if self.model.meta.pooling_type == "rank" else self.n_embd
        out = []
        for sid in range(len(group)):
            ptr = lib.llama_get_embeddings_seq(ctx, sid)
            out.append(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                             shape=(width,)).astype(np.float64))
        return out
