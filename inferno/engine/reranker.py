"""Reranking: a reranker (a model with rank pooling: a classifier head over its last or first token) scores
each (query, document) pair; the score is the head's first output, as llama-server reads it.

The pairs run on the embedding thread, in the embedder's context, as many per decode as fit in its batch:
every document is its own sequence, so its score does not depend on which others share the batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from inferno.engine.types import Ranked, RerankRequest
from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.embedder import Embedder
    from inferno.engine.model import Model


def is_reranker(model: Model) -> bool:
    return model.meta.pooling_type == "rank"


def kind_of(model: Model) -> str:
    """The model's kind, in words, for a 400 that tells a caller why it cannot do what was asked."""
    if is_reranker(model):
        return "a reranker"
    if model.meta.pooling_type not in (None, "none"):
        return "an embedding model"
    return "a text-generation model"


def pair_tokens(model: Model, query: str, doc: str) -> list[int]:
    """llama-server's format_prompt_rerank: the model's own rerank template (tokenizer.chat_template.rerank,
    Qwen3-Reranker's) with {query} and {document} filled in, else [BOS] query [EOS] [SEP] doc [EOS], each
    special token where the vocabulary asks for it."""
    lib, vocab = model.lib, model.vocab
    template = lib.llama_model_chat_template(model.model, b"rerank")
    if template:
        prompt = template.decode("utf-8", "replace").replace("{query}", query).replace("{document}", doc)
        return model.tokenize(prompt, add_bos=False, special=True)
    eos = lib.llama_vocab_eos(vocab)
    if eos < 0:
        eos = lib.llama_vocab_sep(vocab)
    add_eos, add_sep = lib.llama_vocab_get_add_eos(vocab), lib.llama_vocab_get_add_sep(vocab)
    out = [lib.llama_vocab_bos(vocab)] if lib.llama_vocab_get_add_bos(vocab) else []
    out += model.tokenize(query, add_bos=False, special=False)
    out += ([eos] if add_eos else []) + ([lib.llama_vocab_sep(vocab)] if add_sep else [])
    out += model.tokenize(doc, add_bos=False, special=False)
    return out + ([eos] if add_eos else [])


def rerank(embedder: Embedder, req: RerankRequest, load_ns: int) -> Ranked:
    t0 = time.perf_counter_ns()
    model = embedder.model
    if not is_reranker(model):
        raise BadRequestError(f"{model.name} is {kind_of(model)}, not a reranker: reranking needs a model with "
                              "rank pooling (bge-reranker, jina-reranker, Qwen3-Reranker …)", param="model")
    pairs = [pair_tokens(model, req.query, doc) for doc in req.documents]
    for i, toks in enumerate(pairs):
        if len(toks) > embedder.n_ctx:
            raise BadRequestError(f"documents[{i}] with the query is {len(toks)} tokens, more than the "
                                  f"{embedder.n_ctx} this model scores at once (n_batch); shorten it",
                                  param="documents")
    scores = [float(v[0]) for v in embedder.pooled(pairs)]
    return Ranked(scores=scores, prompt_tokens=sum(map(len, pairs)), load_ns=load_ns,
                  total_ns=time.perf_counter_ns() - t0 + load_ns)
