"""OpenAI bodies → core requests, and core events → OpenAI response objects."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from inferno.api import (
    IMAGE_MARKER,
    BadRequestError,
    Done,
    GenerateRequest,
    ImagePolicy,
    InfernoError,
    LoadOptions,
    LoraScale,
    Message,
    SamplingOptions,
    SpeculativeOptions,
    Tool,
    ToolCall,
    ToolChoice,
    error_type,
    image_source,
    keep_alive,
    stop_list,
    tool_call_id,
)

from .schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, ImagePart, NamedToolChoice, _Sampling

FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "cancelled": "stop", "load": "stop",
          "unload": "stop"}
FINGERPRINT = "fp_inferno"
_TOKEN_ID = re.compile(r"[0-9]{1,10}")


def error_body(error: InfernoError) -> dict[str, Any]:
    kind = error_type(error, {503: "server_busy"})
    code = "model_not_found" if error.status == 404 and error.param == "model" else error.code
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": code}}


def _sampling(body: _Sampling, max_tokens: int | None) -> SamplingOptions:
    stop = stop_list(body.stop)
    if len(stop) > 16:
        raise BadRequestError("at most 16 stop sequences", param="stop")
    return SamplingOptions(temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=stop,
                           presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                           top_k=body.top_k, min_p=body.min_p, typical_p=body.typical_p,
                           repeat_penalty=body.repeat_penalty, max_tokens=max_tokens, ignore_eos=body.ignore_eos,
                           logit_bias=_logit_bias(body.logit_bias))


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float] | None:
    """OpenAI's logit_bias, checked here so a bad entry is a 400 naming it: keys are token ids, values -100 to
    100 (whether the model has the token is the engine's to say)."""
    if not bias:
        return None
    if len(bias) > 4096:
        raise BadRequestError("logit_bias takes at most 4096 tokens", param="logit_bias")
    out: dict[int, float] = {}
    for key, value in bias.items():
        if not _TOKEN_ID.fullmatch(key):
            raise BadRequestError(f"logit_bias keys are token ids; {key!r} is not one", param="logit_bias")
        if not -100 <= value <= 100:
            raise BadRequestError(f"logit_bias values are -100 to 100; token {key} has {value}", param="logit_bias")
        out[int(key)] = value
    return out


def _speculative(body: _Sampling) -> SpeculativeOptions:
    return SpeculativeOptions(enabled=body.speculative, n_max=body.speculative_n_max, n_min=body.speculative_n_min)


def _content(m: ChatMessage, policy: ImagePolicy) -> tuple[str, list[str]]:
    """The text of a message (an image marker where each image part was) and its images (base64)."""
    if m.content is None:
        return "", []
    if isinstance(m.content, str):
        return m.content, []
    texts: list[str] = []
    images: list[str] = []
    for p in m.content:
        if not isinstance(p, ImagePart):
            texts.append(p.text)
            continue
        if p.type != "image_url" or p.image_url is None:
            raise BadRequestError(f"{p.type} content parts are not supported; images come as image_url parts",
                                  param="messages")
        url = p.image_url if isinstance(p.image_url, str) else p.image_url.url
        images.append(image_source(url, policy))
        texts.append(IMAGE_MARKER)
    return "\n".join(texts), images


def _messages(body: ChatCompletionRequest, policy: ImagePolicy) -> list[Message]:
    out: list[Message] = []
    names: dict[str, str] = {}
    for i, m in enumerate(body.messages):
        calls = None
        if m.tool_calls:
            calls = []
            for c in m.tool_calls:
                try:
                    args = json.loads(c.function.arguments or "{}")
                except json.JSONDecodeError:
                    raise BadRequestError(f"messages[{i}]: tool call arguments are not JSON",
                                          param="messages") from None
                if not isinstance(args, dict):
                    raise BadRequestError(f"messages[{i}]: tool call arguments must be a JSON object",
                                          param="messages")
                calls.append(ToolCall(id=c.id or tool_call_id(), name=c.function.name,
                                      arguments=args))
                names[c.id] = c.function.name
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        name = m.name if role == "tool" and m.name else names.get(m.tool_call_id or "")
        text, images = _content(m, policy)
        out.append(Message(role=role, content=text, tool_calls=calls, images=images or None,  # type: ignore
                           tool_call_id=m.tool_call_id, name=name, thinking=m.reasoning_content or m.reasoning))
    return out


def _format(body: _Sampling) -> Any:
    """The core's format from response_format (json_object, with llama-server's `schema` extension, or
    json_schema) or llama-server's top-level json_schema; None: unconstrained."""
    rf = body.response_format
    if rf is None:
        return body.json_schema
    if rf.schema_ is not None and rf.type != "json_object":
        raise BadRequestError(f"response_format of type {rf.type} takes no schema: a schema goes in "
                              "json_schema.schema, or with type json_object", param="response_format")
    if rf.type == "text":
        return None
    if rf.type == "json_object":
        return rf.schema_ if rf.schema_ is not None else "json"
    spec = rf.json_schema
    return spec.schema_ if spec and spec.schema_ is not None else {}


def chat_request(body: ChatCompletionRequest, policy: ImagePolicy | None = None) -> GenerateRequest:
    fmt = _format(body)
    tools = [Tool(name=t.function.name, description=t.function.description, parameters=t.function.parameters)
             for t in body.tools or []]
    choice = ToolChoice()
    if isinstance(body.tool_choice, NamedToolChoice):
        choice = ToolChoice(mode="function", name=body.tool_choice.function.name)
    elif body.tool_choice is not None:
        choice = ToolChoice(mode=body.tool_choice)
    if choice.mode in ("required", "function") and not tools:
        raise BadRequestError("tool_choice needs tools", param="tool_choice")
    return GenerateRequest(
        model=body.model, messages=_messages(body, policy or ImagePolicy()),
        sampling=_sampling(body, body.max_completion_tokens or body.max_tokens),
        format=fmt, tools=tools or None, tool_choice=choice,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        load=LoadOptions(**body.load_options()), keep_alive=keep_alive(body.keep_alive),
        think=_think(body.reasoning_effort), grammar=body.grammar, speculative=_speculative(body),
        lora=_lora(body))


def _think(effort: str | None) -> Any:
    """reasoning_effort → the core's think: "none" off, "minimal" the lowest effort a template knows."""
    if effort is None:
        return None
    return False if effort == "none" else {"minimal": "low"}.get(effort, effort)


def completion_request(body: CompletionRequest, prompt: str) -> GenerateRequest:
    return GenerateRequest(
        model=body.model, prompt=prompt, suffix=body.suffix or None,
        sampling=_sampling(body, body.max_tokens), logprobs=body.logprobs, format=_format(body),
        load=LoadOptions(**body.load_options()), keep_alive=keep_alive(body.keep_alive), grammar=body.grammar,
        speculative=_speculative(body), lora=_lora(body))


def _lora(body: _Sampling) -> list[LoraScale] | None:
    return None if body.lora is None else [LoraScale(id=x.id, scale=x.scale) for x in body.lora]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(done: Done | None) -> dict[str, Any]:
    p, c = (done.prompt_tokens, done.completion_tokens) if done else (0, 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": done.cached_tokens if done else 0}}


def timings(dones: list[Done]) -> dict[str, Any]:
    """llama-server's `timings` of an answer (its choices together): prompt and generation counts and times, and
    the speculative drafts' counts (draft_n verified, draft_n_accepted agreed with)."""
    prompt_n = dones[0].prompt_tokens - dones[0].cached_tokens if dones else 0
    prompt_ms = max((d.prompt_eval_ns for d in dones), default=0) / 1e6
    predicted_n = sum(d.completion_tokens for d in dones)
    predicted_ms = max((d.eval_ns for d in dones), default=0) / 1e6
    return {"cache_n": dones[0].cached_tokens if dones else 0, "prompt_n": prompt_n, "prompt_ms": prompt_ms,
            "prompt_per_second": prompt_n / prompt_ms * 1e3 if prompt_ms else 0.0,
            "predicted_n": predicted_n, "predicted_ms": predicted_ms,
            "predicted_per_second": predicted_n / predicted_ms * 1e3 if predicted_ms else 0.0,
            "draft_n": sum(d.draft_n for d in dones), "draft_n_accepted": sum(d.draft_n_accepted for d in dones)}


def tool_calls_out(calls: list[ToolCall], stream: bool = False) -> list[dict[str, Any]]:
    out = []
    for i, c in enumerate(calls):
        d: dict[str, Any] = {"id": c.id, "type": "function",
                             "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
        if stream:
            d["index"] = i
        out.append(d)
    return out


def chat_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    def one(e: dict[str, Any]) -> dict[str, Any]:
        return {"token": e["token"], "logprob": e["logprob"], "bytes": list(e["token"].encode()),
                "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": list(t["token"].encode())}
                                 for t in e.get("top_logprobs", [])]}

    return {"content": [one(e) for e in entries]}


def envelope(kind: str, rid: str, model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model,
            "system_fingerprint": FINGERPRINT, "choices": choices, **extra}
