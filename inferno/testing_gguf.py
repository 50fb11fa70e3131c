"""A tiny synthetic llama GGUF (2 layers, 64 dims, byte vocabulary, random weights) for fast real tests.

llama.cpp loads it in milliseconds and generates gibberish: enough for the engine, scheduler, API shapes
and the quantizer. Shipped in the package so plugin authors' test suites can use it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# Qwen2.5-Coder's spelling of the fill-in-the-middle tokens (llama.cpp also finds them by this text)
FIM_TOKENS = {"pre": "<|fim_prefix|>", "suf": "<|fim_suffix|>", "mid": "<|fim_middle|>", "pad": "<|fim_pad|>",
              "rep": "<|repo_name|>", "sep": "<|file_sep|>"}


def write_tiny_gguf(path: Path, *, seed: int = 0, n_embd: int = 64, n_layer: int = 2, n_ff: int = 128,
                    n_head: int = 4, context_length: int = 2048, file_type_f16: bool = False,
                    chat_template: str = TINY_TEMPLATE, arch: str = "llama", pieces: list[str] | None = None,
                    fim: tuple[str, ...] = (), rerank: bool = False, rerank_template: str | None = None) -> Path:
    """pieces: a SentencePiece vocabulary of these normal pieces and no byte fallback (as some converted
    models have): text with a character none of them holds makes llama.cpp's tokenizer throw.
    fim: fill-in-the-middle tokens to add (names of FIM_TOKENS: "pre", "suf", "mid", "rep", "sep", "pad"),
    control tokens at the end of the vocabulary in the order given, named in tokenizer.ggml.fim_*_token_id.
    rerank: a reranker as Qwen3-Reranker converts (use arch="qwen3"): rank pooling and a `cls.output` head of
    two labels (yes, no) that llama.cpp softmaxes, the score being p(yes); rerank_template: its
    tokenizer.chat_template.rerank ({query} and {document} are filled in)."""
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType, PoolingType, TokenType

    rng = np.random.default_rng(seed)
    dtype = np.float16 if file_type_f16 else np.float32
    w = GGUFWriter(str(path), arch)
    w.add_name("tiny-test-llama")
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    if arch == "qwen2vl":  # M-RoPE: the rotary dimensions split into (time, height, width, -) sections
        w.add_rope_dimension_sections([2, 3, 3, 0])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(LlamaFileType.MOSTLY_F16 if file_type_f16 else LlamaFileType.ALL_F32)
    tokens = ["<unk>", "<s>", "</s>"] + (pieces or [f"<0x{i:02X}>" for i in range(256)])
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + (
        [TokenType.NORMAL] * len(pieces) if pieces else [TokenType.BYTE] * 256)
    for name in fim:
        w.add_uint32(f"tokenizer.ggml.fim_{name}_token_id", len(tokens))
        tokens.append(FIM_TOKENS[name])
        types.append(TokenType.CONTROL)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template(chat_template)
    if rerank:
        w.add_pooling_type(PoolingType.RANK)
        w.add_array(f"{arch}.classifier.output_labels", ["yes", "no"])
    if rerank_template is not None:
        w.add_string("tokenizer.chat_template.rerank", rerank_template)
    n_vocab = len(tokens)

    def t(name: str, *shape: int, ones: bool = False) -> None:
        data = np.ones(shape, dtype=np.float32) if ones else rng.normal(0, 0.5, shape).astype(np.float32)
        w.add_tensor(name, data.astype(dtype) if len(shape) > 1 else data)

    t("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        t(f"blk.{i}.attn_norm.weight", n_embd, ones=True)
        if arch == "qwen3":  # per-head RMS norms of q and k
            t(f"blk.{i}.attn_q_norm.weight", n_embd // n_head, ones=True)
            t(f"blk.{i}.attn_k_norm.weight", n_embd // n_head, ones=True)
        for x in ("q", "k", "v", "output"):
            t(f"blk.{i}.attn_{x}.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_norm.weight", n_embd, ones=True)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    t("output_norm.weight", n_embd, ones=True)
    t("output.weight", n_vocab, n_embd)
    if rerank:
        t("cls.output.weight", 2, n_embd)
    return _finish(w, path)


def write_tiny_lora(path: Path, *, seed: int = 1, n_embd: int = 64, n_layer: int = 2, rank: int = 4,
                    alpha: float = 8.0, arch: str = "llama", targets: tuple[str, ...] = ("attn_q", "attn_v", "output"),
                    std: float = 0.5) -> Path:
    """A LoRA adapter for write_tiny_gguf's model as llama.cpp's convert_lora_to_gguf.py writes one
    (general.type adapter, adapter.type lora, adapter.lora.alpha; `<weight>.lora_a` [rank x in] and
    `<weight>.lora_b` [out x rank] per adapted weight), random: its effect on greedy text is large.
    targets: the attention weights adapted in every block (attn_q, attn_k, attn_v, attn_output);
    "output" adapts the output head too."""
    import numpy as np
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), arch)
    w.add_name("tiny-test-lora")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)

    def pair(name: str, n_in: int, n_out: int) -> None:
        w.add_tensor(f"{name}.lora_a", rng.normal(0, std, (rank, n_in)).astype(np.float32))
        w.add_tensor(f"{name}.lora_b", rng.normal(0, std, (n_out, rank)).astype(np.float32))

    for i in range(n_layer):
        for x in targets:
            if x != "output":
                pair(f"blk.{i}.{x}.weight", n_embd, n_embd)
    if "output" in targets:
        pair("output.weight", n_embd, 3 + 256)
    return _finish(w, path)


def write_tiny_mmproj(path: Path, *, seed: int = 0, text_n_embd: int = 64, n_embd: int = 32, n_layer: int = 2,
                      n_ff: int = 64, n_head: int = 4, image_size: int = 32, patch_size: int = 8) -> Path:
    """A synthetic vision projector for write_tiny_gguf's model: a tiny CLIP ViT with a LLaVA MLP projector
    (llama.cpp's mtmd `mlp` type, the simplest it knows), random weights. An image becomes
    (image_size / patch_size)² = 16 embeddings of the text model's width."""
    w, t = _clip_writer(path, "tiny-test-mmproj", "mlp", seed=seed, image_size=image_size, patch_size=patch_size,
                        n_embd=n_embd, n_ff=n_ff, n_layer=n_layer, text_n_embd=text_n_embd, n_head=n_head)
    w.add_bool("clip.has_text_encoder", False)
    w.add_uint32("general.file_type", 0)

    n_pos = (image_size // patch_size) ** 2
    t("v.patch_embd.weight", n_embd, 3, patch_size, patch_size)
    t("v.patch_embd.bias", n_embd, zeros=True)
    t("v.position_embd.weight", n_pos, n_embd)
    t("v.pre_ln.weight", n_embd, ones=True)
    t("v.pre_ln.bias", n_embd, zeros=True)
    _vit_blocks(t, n_layer, n_embd, n_ff)
    t("mm.0.weight", text_n_embd, n_embd)
    t("mm.0.bias", text_n_embd, zeros=True)
    t("mm.2.weight", text_n_embd, text_n_embd)
    t("mm.2.bias", text_n_embd, zeros=True)
    return _finish(w, path)


def write_tiny_qwen2vl_mmproj(path: Path, *, seed: int = 0, text_n_embd: int = 64, n_embd: int = 32,
                              n_layer: int = 2, n_ff: int = 64, n_head: int = 4, patch_size: int = 4) -> Path:
    """A synthetic Qwen2-VL projector (mtmd's `qwen2vl` type): image tokens on M-RoPE positions, for a text model
    written with write_tiny_gguf(arch="qwen2vl")."""
    w, t = _clip_writer(path, "tiny-test-qwen2vl-mmproj", "qwen2vl_merger", seed=seed, image_size=64,
                        patch_size=patch_size, n_embd=n_embd, n_ff=n_ff, n_layer=n_layer, text_n_embd=text_n_embd,
                        n_head=n_head)

    t("v.patch_embd.weight", n_embd, 3, patch_size, patch_size)
    t("v.patch_embd.weight.1", n_embd, 3, patch_size, patch_size)
    _vit_blocks(t, n_layer, n_embd, n_ff)
    t("v.post_ln.weight", n_embd, ones=True)
    t("v.post_ln.bias", n_embd, zeros=True)
    t("mm.0.weight", n_embd * 4, n_embd * 4)
    t("mm.0.bias", n_embd * 4, zeros=True)
    t("mm.2.weight", text_n_embd, n_embd * 4)
    t("mm.2.bias", text_n_embd, zeros=True)
    return _finish(w, path)


def _vit_blocks(t: Any, n_layer: int, n_embd: int, n_ff: int) -> None:
    """The vision encoder's transformer blocks, the same for every synthetic projector (t adds a tensor)."""
    for i in range(n_layer):
        for x in ("q", "k", "v"):
            t(f"v.blk.{i}.attn_{x}.weight", n_embd, n_embd)
            t(f"v.blk.{i}.attn_{x}.bias", n_embd, zeros=True)
        t(f"v.blk.{i}.attn_out.weight", n_embd, n_embd)
        t(f"v.blk.{i}.attn_out.bias", n_embd, zeros=True)
        for x in ("ln1", "ln2"):
            t(f"v.blk.{i}.{x}.weight", n_embd, ones=True)
            t(f"v.blk.{i}.{x}.bias", n_embd, zeros=True)
        t(f"v.blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"v.blk.{i}.ffn_up.bias", n_ff, zeros=True)
        t(f"v.blk.{i}.ffn_down.weight", n_embd, n_ff)
        t(f"v.blk.{i}.ffn_down.bias", n_embd, zeros=True)


def _clip_writer(path: Path, name: str, projector: str, *, seed: int, image_size: int, patch_size: int, n_embd: int,
                 n_ff: int, n_layer: int, text_n_embd: int, n_head: int) -> tuple[Any, Any]:
    """A GGUF writer with the CLIP header every synthetic projector shares, and `t(name, *shape)` to add a tensor
    (random, or all ones / zeros)."""
    import numpy as np
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "clip")
    w.add_name(name)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", projector)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_uint32("clip.vision.projection_dim", text_n_embd)
    w.add_uint32("clip.vision.attention.head_count", n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    def t(name: str, *shape: int, ones: bool = False, zeros: bool = False) -> None:
        if ones or zeros:
            data = np.full(shape, 1.0 if ones else 0.0, dtype=np.float32)
        else:
            data = rng.normal(0, 0.5, shape).astype(np.float32)
        w.add_tensor(name, data)

    return w, t


def _finish(w: Any, path: Path) -> Path:
    """Write the header, metadata and tensors gathered in the writer, and close the file."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
