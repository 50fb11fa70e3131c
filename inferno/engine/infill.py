r"""Fill-in-the-middle prompts from a model's own FIM tokens, laid out as llama-server's format_infill does.

    [BOS] [FIM_REP]myproject\n ([FIM_SEP]filename\n text)… [FIM_SEP]filename\n
    [FIM_PRE]prefix prompt [FIM_SUF]suffix [FIM_MID]

The repo-level part (arXiv 2409.12186) only when the model has FIM_REP / FIM_SEP; without FIM_SEP each extra
chunk follows llama-server's "--- snippet ---" separator. The tokens come from llama.cpp (llama_vocab_fim_*,
read from tokenizer.ggml.fim_*_token_id or found by their text); the user's text is tokenized without parsing
special tokens, as llama-server does, so code that spells "<|fim_middle|>" cannot forge the layout.
One difference: llama-server puts the extra chunks before BOS; here BOS opens the sequence, as it does
everywhere else. llama-server always cuts the parts to a batch; here they are cut only when the whole does not
fit the context and the request allows truncation (fit.py), so a prompt that fits is what was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inferno.errors import BadRequestError

if TYPE_CHECKING:
    from inferno.engine.model import Model
    from inferno.engine.types import GenerateRequest

SNIPPET = "\n\n--- snippet ---\n\n"  # llama-server's chunk separator for models without FIM_SEP


def is_infill(req: GenerateRequest) -> bool:
    return req.messages is None and (req.suffix is not None or req.infill_extra is not None
                                     or req.infill_prompt is not None)


def fim_tokens(model: Model) -> dict[str, int]:
    """The model's FIM tokens by name (pre, suf, mid, rep, sep, pad); absent ones are left out."""
    lib, vocab = model.lib, model.vocab
    found = {name: getattr(lib, f"llama_vocab_fim_{name}")(vocab) for name in ("pre", "suf", "mid", "rep", "sep",
                                                                              "pad")}
    return {k: v for k, v in found.items() if v >= 0}


def infill_tokens(model: Model, req: GenerateRequest, *, cut: bool = False) -> list[int]:
    """The FIM prompt. cut: a prompt too long for the context is cut as llama-server's format_infill always cuts
    it: the prefix's last 3/4 of a batch, the suffix's first 1/4 (less the prompt), the extra chunks' last tokens
    in what the context has left after a batch and twice max_tokens."""
    if req.images:
        raise BadRequestError("fill-in-the-middle takes text only: send the images without a suffix",
                              param="images")
    fim = fim_tokens(model)
    missing = [k.upper() for k in ("pre", "suf", "mid") if k not in fim]
    if missing:
        raise BadRequestError(f"{model.name} cannot fill in the middle: it has no FIM tokens (FIM_"
                              f"{', FIM_'.join(missing)} missing), so suffix and /infill need another model",
                              param="suffix")

    def text(s: str) -> list[int]:
        return model.tokenize(s, add_bos=False, special=False)

    extra: list[int] = []
    if "rep" in fim:
        extra += [fim["rep"], *text("myproject\n")]
    for chunk in req.infill_extra or []:
        extra += [fim["sep"], *text(chunk.filename + "\n")] if "sep" in fim else text(SNIPPET)
        extra += text(chunk.text)
    if "sep" in fim:
        extra += [fim["sep"], *text("filename\n")]
    prefix, typed, suffix = text(req.prompt or ""), text(req.infill_prompt or ""), text(req.suffix or "")
    if cut:
        quarter = model.n_batch // 4
        prefix = prefix[len(prefix) - min(len(prefix), 3 * quarter):]
        suffix = suffix[:max(0, quarter - (2 + len(typed)))]
        predict = max(0, req.sampling.max_tokens or 0)
        extra = extra[len(extra) - min(len(extra), max(0, model.n_ctx - model.n_batch - 2 * predict)):]
    bos = [model.lib.llama_vocab_bos(model.vocab)] if model.add_bos else []
    return [*bos, *extra, fim["pre"], *prefix, *typed, fim["suf"], *suffix, fim["mid"]]
