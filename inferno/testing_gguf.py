"""A tiny synthetic llama GGUF (2 layers, 64 dims, byte vocabulary, random weights) for fast real tests.

llama.cpp loads it in milliseconds and generates gibberish: enough for the engine, scheduler, API shapes
and the quantizer. Shipped in the package so plugin authors' test suites can use it too.
"""

from __future__ import annotations

from pathlib import Path

TINY_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def write_tiny_gguf(path: Path, *, seed: int = 0, n_embd: int = 64, n_layer: int = 2, n_ff: int = 128,
                    n_head: int = 4, context_length: int = 2048, file_type_f16: bool = False,
                    chat_template: str = TINY_TEMPLATE) -> Path:
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType, TokenType

    rng = np.random.default_rng(seed)
    dtype = np.float16 if file_type_f16 else np.float32
    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_context_length(context_length)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(LlamaFileType.MOSTLY_F16 if file_type_f16 else LlamaFileType.ALL_F32)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template(chat_template)
    n_vocab = len(tokens)

    def t(name: str, *shape: int, ones: bool = False) -> None:
        data = np.ones(shape, dtype=np.float32) if ones else rng.normal(0, 0.5, shape).astype(np.float32)
        w.add_tensor(name, data.astype(dtype) if len(shape) > 1 else data)

    t("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        t(f"blk.{i}.attn_norm.weight", n_embd, ones=True)
        for x in ("q", "k", "v", "output"):
            t(f"blk.{i}.attn_{x}.weight", n_embd, n_embd)
        t(f"blk.{i}.ffn_norm.weight", n_embd, ones=True)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    t("output_norm.weight", n_embd, ones=True)
    t("output.weight", n_vocab, n_embd)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
