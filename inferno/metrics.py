"""Prometheus metrics (GET /metrics): requests, tokens, latencies, queue depth, loaded models, load time.

One registry per host object, so tests and embedded servers never share counters. prometheus_client is
imported when a host first needs its metrics, not at import time.
"""

from __future__ import annotations

from typing import Any

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self, scheduler_state: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("inferno_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.prompt_tokens = Counter("inferno_prompt_tokens", "Prompt tokens read", ["model"], registry=r)
        self.prompt_evaluated = Counter("inferno_prompt_tokens_evaluated", "Prompt tokens evaluated by the model",
                                        ["model"], registry=r)
        self.prompt_cached = Counter("inferno_prompt_tokens_cached",
                                     "Prompt tokens found in the KV cache (a slot's own or copied from another)",
                                     ["model"], registry=r)
        self.prompt_cache_hits = Counter("inferno_prompt_cache_hits", "Generations that reused a cached prefix",
                                         ["model"], registry=r)
        self.completion_tokens = Counter("inferno_completion_tokens", "Tokens generated", ["model"], registry=r)
        self.draft_tokens = Counter("inferno_draft_tokens", "Speculative draft tokens verified", ["model"], registry=r)
        self.draft_accepted = Counter("inferno_draft_tokens_accepted",
                                      "Speculative draft tokens the model agreed with (each one a generated token)",
                                      ["model"], registry=r)
        self.generations = Counter("inferno_generations", "Finished generations by reason", ["model", "reason"],
                                   registry=r)
        self.ttft = Histogram("inferno_time_to_first_token_seconds", "Prompt evaluation until the first token",
                              ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.token_latency = Histogram("inferno_time_per_output_token_seconds", "Mean time per generated token",
                                       ["model"], buckets=_TOKEN_BUCKETS, registry=r)
        self.load_time = Histogram("inferno_model_load_seconds", "Time to load a model", ["model"],
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("inferno_queue_depth", "Requests waiting for a model", registry=r)
        self.loaded_models = Gauge("inferno_loaded_models", "Models loaded now", registry=r)
        if scheduler_state is not None:
            self.queue_depth.set_function(lambda: scheduler_state.queued)
            self.loaded_models.set_function(lambda: len(scheduler_state.loaded()))
            r.register(_SlotsCollector(scheduler_state))

    def observe_generation(self, model: str, done: Any) -> None:
        self.prompt_tokens.labels(model).inc(done.prompt_tokens)
        self.prompt_evaluated.labels(model).inc(done.prompt_tokens - done.cached_tokens)
        self.prompt_cached.labels(model).inc(done.cached_tokens)
        if done.cached_tokens:
            self.prompt_cache_hits.labels(model).inc()
        self.completion_tokens.labels(model).inc(done.completion_tokens)
        self.generations.labels(model, done.reason).inc()
        if done.draft_n:
            self.draft_tokens.labels(model).inc(done.draft_n)
            self.draft_accepted.labels(model).inc(done.draft_n_accepted)
        if done.completion_tokens:
            self.ttft.labels(model).observe(done.prompt_eval_ns / 1e9)
            self.token_latency.labels(model).observe(done.eval_ns / 1e9 / done.completion_tokens)
        if done.load_ns:
            self.load_time.labels(model).observe(done.load_ns / 1e9)

    def observe_load(self, model: str, load_ns: int) -> None:
        if load_ns:
            self.load_time.labels(model).observe(load_ns / 1e9)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SlotsCollector:
    """Per loaded model, read at scrape time: slots, slots in use, queued requests, tokens per second."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        families = {
            "slots": GaugeMetricFamily("inferno_slots", "Sequences a loaded model decodes together", labels=["model"]),
            "slots_in_use": GaugeMetricFamily("inferno_slots_in_use", "Slots running a request", labels=["model"]),
            "queued": GaugeMetricFamily("inferno_model_queue", "Requests waiting for a slot", labels=["model"]),
            "tokens_per_second": GaugeMetricFamily("inferno_tokens_per_second",
                                                   "Tokens generated per second, all slots, last seconds",
                                                   labels=["model"]),
            "prompt_cache_bytes": GaugeMetricFamily("inferno_prompt_cache_ram_bytes",
                                                    "KV cells kept in RAM for prompts that continue them",
                                                    labels=["model"]),
            "prompt_cache_hits": GaugeMetricFamily("inferno_prompt_cache_ram_hits",
                                                   "Prompts restored from the RAM prompt cache since the model loaded",
                                                   labels=["model"]),
        }
        for m in self.engine.loaded():
            for key, family in families.items():
                family.add_metric([m.name], float(getattr(m, key)))
        yield from families.values()
