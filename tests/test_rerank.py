"""Reranking through a real server: a synthetic Qwen3-style reranker (rank pooling, a yes/no `cls.output` head,
random weights), POST /v1/rerank and its aliases in Jina's / Cohere's shape, and the 400s that name a model's
kind when it is asked for what it cannot do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from openai import OpenAI

from inferno.config import load_settings
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_gguf

from .conftest import Server, start_server, stop_server

QUERY = "what do cats eat"
TEMPLATE = "Judge.\nQuery: {query}\nDocument: {document}\nRelevant:"
DOCS = ["Cats eat fish and meat.", "The stock market fell.", "Kittens drink milk.", "Paris is in France.",
        "Dogs bark at night."]


@pytest.fixture(scope="module")
def rerank_server(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("rerank")
    home = d / "home"
    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(write_tiny_gguf(d / "ranker.gguf", arch="qwen3", rerank=True), "ranker", source="test")
    # the same weights with a rerank template, as Qwen3-Reranker's GGUFs carry one
    h.import_file(write_tiny_gguf(d / "templated.gguf", arch="qwen3", rerank=True, rerank_template=TEMPLATE),
                  "templated", source="test")
    h.import_file(tiny_gguf, "tiny", source="test")
    s = start_server(home)
    yield s
    stop_server(s)


def rerank(server: Server, path: str = "/v1/rerank", **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"model": "ranker", "query": QUERY, "documents": DOCS, **body},
                      timeout=60)


def test_results_are_sorted_scores_with_usage(rerank_server: Server) -> None:
    r = rerank(rerank_server)
    assert r.status_code == 200, r.text
    out = r.json()
    results = out["results"]
    assert sorted(x["index"] for x in results) == list(range(len(DOCS)))
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores) and len(set(scores)) == len(DOCS)  # p(yes) of a softmax, distinct
    assert out["usage"]["prompt_tokens"] > 0 and "document" not in results[0]


def test_scores_do_not_depend_on_the_batch(rerank_server: Server) -> None:
    together = {x["index"]: x["relevance_score"] for x in rerank(rerank_server).json()["results"]}
    for i, doc in enumerate(DOCS):
        alone = rerank(rerank_server, documents=[doc]).json()["results"][0]["relevance_score"]
        assert alone == pytest.approx(together[i], abs=1e-6)
    # the same document twice in one request: the same score twice
    twice = rerank(rerank_server, documents=[DOCS[0], DOCS[1], DOCS[0]]).json()["results"]
    by_index = {x["index"]: x["relevance_score"] for x in twice}
    assert by_index[0] == pytest.approx(by_index[2], abs=1e-6)


def test_top_n_return_documents_and_aliases(rerank_server: Server) -> None:
    full = rerank(rerank_server).json()["results"]
    top = rerank(rerank_server, top_n=2, return_documents=True).json()["results"]
    assert [x["index"] for x in top] == [x["index"] for x in full[:2]]
    assert [x["document"]["text"] for x in top] == [DOCS[x["index"]] for x in top]
    objects = [{"text": d} for d in DOCS]  # Jina's documents as objects
    for path in ("/rerank", "/v1/reranking", "/reranking"):
        r = rerank(rerank_server, path, documents=objects)
        assert r.status_code == 200, (path, r.text)
        assert [x["index"] for x in r.json()["results"]] == [x["index"] for x in full]


def test_capability_in_show(rerank_server: Server) -> None:
    client = ollama.Client(host=rerank_server.url)
    assert client.show("ranker").capabilities == ["rerank"]
    assert "rerank" not in (client.show("tiny").capabilities or [])


def test_a_chat_model_asked_to_rerank_is_a_400_naming_its_kind(rerank_server: Server) -> None:
    r = rerank(rerank_server, model="tiny")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and err["type"] == "invalid_request_error"
    assert "tiny" in err["message"] and "text-generation model" in err["message"]


def test_a_reranker_asked_to_chat_or_embed_is_a_400_naming_its_kind(rerank_server: Server) -> None:
    client = OpenAI(base_url=f"{rerank_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="ranker is a reranker"):
        client.chat.completions.create(model="ranker", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="ranker is a reranker"):
        client.completions.create(model="ranker", prompt="hi", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="ranker is a reranker"):
        client.embeddings.create(model="ranker", input="hi")


@pytest.mark.parametrize("change", [{"documents": []}, {"documents": "x"}, {"query": 5}, {"top_n": 0},
                                    {"documents": [{"txt": "x"}]}])
def test_bad_bodies_are_400s(rerank_server: Server, change: dict[str, Any]) -> None:
    r = rerank(rerank_server, **change)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == 400


def test_a_pair_longer_than_a_batch_is_a_400_naming_the_document(rerank_server: Server) -> None:
    r = rerank(rerank_server, documents=["short", "x" * 600])  # byte tokens: 600 of them, past the 512 batch
    assert r.status_code == 400 and "documents[1]" in r.json()["error"]["message"], r.text


def test_unknown_model_is_404(rerank_server: Server) -> None:
    r = rerank(rerank_server, model="nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == 404


def tokens(server: Server, text: str) -> list[int]:
    r = httpx.post(f"{server.url}/inferno/tokenize", json={"model": "ranker", "text": text}, timeout=60)
    r.raise_for_status()
    return r.json()["tokens"]


def test_pair_layouts(rerank_server: Server) -> None:
    """Without a template: [BOS] query document (this vocabulary adds neither EOS nor SEP); with one: the
    template filled in. Counted in usage; the template changes the scores of the same weights."""
    doc = DOCS[0]
    plain = rerank(rerank_server, documents=[doc]).json()
    assert plain["usage"]["prompt_tokens"] == 1 + len(tokens(rerank_server, QUERY)) + len(tokens(rerank_server, doc))
    templated = rerank(rerank_server, model="templated", documents=[doc]).json()
    filled = TEMPLATE.replace("{query}", QUERY).replace("{document}", doc)
    assert templated["usage"]["prompt_tokens"] == len(tokens(rerank_server, filled))
    assert templated["results"][0]["relevance_score"] != plain["results"][0]["relevance_score"]


def test_native_client_rerank(rerank_server: Server) -> None:
    import asyncio

    from inferno.client import AsyncInfernoClient, BadRequestError, InfernoClient

    expected = rerank(rerank_server, top_n=3).json()["results"]
    with InfernoClient(rerank_server.url) as c:
        r = c.rerank("ranker", QUERY, DOCS, top_n=3, return_documents=True)
        assert [(x.index, x.relevance_score) for x in r.results] == [(x["index"], x["relevance_score"])
                                                                     for x in expected]
        assert r.results[0].document is not None and r.results[0].document.text == DOCS[r.results[0].index]
        with pytest.raises(BadRequestError, match="not a reranker"):
            c.rerank("tiny", QUERY, DOCS)

    async def go() -> list[int]:
        async with AsyncInfernoClient(rerank_server.url) as a:
            return [x.index for x in (await a.rerank("ranker", QUERY, DOCS, top_n=3)).results]

    assert asyncio.run(go()) == [x["index"] for x in expected]
