"""Vision through llama.cpp's mtmd: a synthetic projector (random weights, mtmd's `mlp` type) sized to the
synthetic text model, so images really are encoded and decoded into the KV cache."""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferno.config import load_settings
from inferno.engine.types import Done, GenerateRequest, Message, SamplingOptions, TextDelta
from inferno.errors import BadRequestError
from inferno.host import Inferno
from inferno.testing_gguf import write_tiny_mmproj

IMAGE_TOKENS = 16  # (32 / 8)² patches of the synthetic projector


def png(rgb: tuple[int, int, int], w: int = 24, h: int = 20) -> bytes:
    """A solid-colour PNG, written by hand (no imaging library needed)."""
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


RED = base64.b64encode(png((220, 20, 20))).decode()
BLUE = base64.b64encode(png((20, 20, 220), 40, 40)).decode()


@pytest.fixture(scope="module")
def mmproj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "mmproj-tiny.gguf")


@pytest.fixture
def vhost(home: Path, tiny_gguf: Path, mmproj: Path) -> Iterator[Inferno]:
    h = Inferno(load_settings({"INFERNO_HOME": str(home), "INFERNO_MAX_IMAGE_BYTES": "4000"}))
    h.import_file(tiny_gguf, "eyes", source="test", projector=mmproj)
    h.import_file(tiny_gguf, "tiny", source="test")
    yield h
    h.engine.close()


def ask(images: list[str] | None, text: str = "what is this?", model: str = "eyes",
        history: list[Message] | None = None) -> GenerateRequest:
    return GenerateRequest(model=model, messages=[*(history or []), Message(role="user", content=text, images=images)],
                           sampling=SamplingOptions(temperature=0, max_tokens=12, ignore_eos=True))


def run(h: Inferno, req: GenerateRequest) -> tuple[str, Done]:
    events = list(h.engine.submit(req))
    done = events[-1]
    assert isinstance(done, Done)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), done


def test_image_tokens_count_in_the_prompt(vhost: Inferno) -> None:
    _, plain = run(vhost, ask(None))
    _, one = run(vhost, ask([RED]))
    _, two = run(vhost, ask([RED, BLUE]))
    assert two.prompt_tokens == one.prompt_tokens + IMAGE_TOKENS
    # the text after an image is tokenized on its own: an SPM vocabulary gives it a leading "▁" (3 bytes here)
    assert IMAGE_TOKENS <= one.prompt_tokens - plain.prompt_tokens <= IMAGE_TOKENS + 3
    assert "vision" in vhost.capabilities(vhost.store.get("eyes"), vhost.metadata("eyes"))
    assert "vision" not in vhost.capabilities(vhost.store.get("tiny"), vhost.metadata("tiny"))


def test_same_image_same_answer_different_image_different_answer(vhost: Inferno) -> None:
    red1, _ = run(vhost, ask([RED]))
    vhost.engine.unload("eyes")  # nothing cached: the image is encoded afresh
    red2, _ = run(vhost, ask([RED]))
    blue, _ = run(vhost, ask([BLUE]))
    assert red1 == red2
    assert red1 != blue


def test_images_decode_together_with_continuous_batching(vhost: Inferno) -> None:
    alone = {c: run(vhost, ask([c]))[0] for c in (RED, BLUE)}
    vhost.engine.unload("eyes")
    out: dict[str, str] = {}

    def one(c: str) -> None:
        out[c] = run(vhost, ask([c]))[0]

    threads = [threading.Thread(target=one, args=(c,)) for c in (RED, BLUE, RED)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == alone


def test_text_after_an_image_reuses_the_cached_prefix(vhost: Inferno) -> None:
    first = ask([RED], "describe it")
    answer, done = run(vhost, first)
    history = [*(first.messages or []), Message(role="assistant", content=answer)]
    _, again = run(vhost, ask(None, "and now?", history=history))
    # the image and what came before it were kept: the few template tokens before the image are less than a prompt
    # chunk, so a reused prefix that ends before the image is cut to 0 (inferno.engine.slots.plan)
    assert again.cached_tokens > 0
    assert again.prompt_tokens > done.prompt_tokens


def test_bad_images_are_400s(vhost: Inferno) -> None:
    with pytest.raises(BadRequestError, match="tiny has no vision"):
        run(vhost, ask([RED], model="tiny"))
    with pytest.raises(BadRequestError, match="not valid base64"):
        run(vhost, ask(["%%%"]))
    with pytest.raises(BadRequestError, match="not a PNG, JPEG, GIF or BMP"):
        run(vhost, ask([base64.b64encode(b"hello, not an image").decode()]))
    with pytest.raises(BadRequestError, match="cannot be decoded"):
        run(vhost, ask([base64.b64encode(b"\x89PNG\r\n\x1a\n broken").decode()]))
    with pytest.raises(BadRequestError, match="larger than 4000 bytes"):
        run(vhost, ask([base64.b64encode(png((1, 2, 3), 300, 300) + b"\x00" * 5000).decode()]))
    text, _ = run(vhost, ask([f"data:image/png;base64,{RED}"]))  # a data URL is fine too
    assert text


def test_copy_and_remove_keep_the_projector_with_the_model(vhost: Inferno) -> None:
    copied = vhost.store.copy("eyes", "eyes2")
    assert copied.mmproj and Path(copied.mmproj).parent == copied.file.parent and Path(copied.mmproj).is_file()
    assert "vision" in vhost.capabilities(copied, vhost.metadata("eyes2"))
    text, _ = run(vhost, ask([RED], model="eyes2"))
    assert text == run(vhost, ask([RED]))[0]
    vhost.engine.unload("eyes2")
    vhost.store.remove("eyes2")
    assert not Path(copied.mmproj).exists()
    original = vhost.store.get("eyes")
    assert original.mmproj and Path(original.mmproj).is_file()


@pytest.fixture
def qhost(home: Path, tmp_path: Path) -> Iterator[Inferno]:
    """A Qwen2-VL-shaped pair: image tokens on M-RoPE positions (fewer positions than tokens)."""
    from inferno.testing_gguf import write_tiny_gguf, write_tiny_qwen2vl_mmproj

    h = Inferno(load_settings({"INFERNO_HOME": str(home)}))
    h.import_file(write_tiny_gguf(tmp_path / "q.gguf", arch="qwen2vl"), "qeyes", source="test",
                  projector=write_tiny_qwen2vl_mmproj(tmp_path / "mmproj-q.gguf"))
    yield h
    h.engine.close()


def test_m_rope_images(qhost: Inferno) -> None:
    red, done = run(qhost, ask([RED], model="qeyes"))
    _, plain = run(qhost, ask(None, model="qeyes"))
    assert done.prompt_tokens > plain.prompt_tokens  # the image's tokens count
    blue, _ = run(qhost, ask([BLUE], model="qeyes"))
    qhost.engine.unload("qeyes")
    assert run(qhost, ask([RED], model="qeyes"))[0] == red != blue
    out: dict[str, str] = {}
    threads = [threading.Thread(target=lambda c=c: out.__setitem__(c, run(qhost, ask([c], model="qeyes"))[0]))
               for c in (RED, BLUE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {RED: red, BLUE: blue}
    # text after the image continues at the image's last position + 1: the cached prefix is reused, and the
    # answer is the one the whole conversation gives when evaluated afresh
    first = ask([RED], "describe it", model="qeyes")
    answer, _ = run(qhost, first)
    follow = ask(None, "and now?", model="qeyes", history=[*(first.messages or []),
                                                           Message(role="assistant", content=answer)])
    cached_text, again = run(qhost, follow)
    assert again.cached_tokens > 0
    qhost.engine.unload("qeyes")
    fresh_text, fresh = run(qhost, follow)
    assert fresh.cached_tokens == 0 and fresh_text == cached_text


def test_m_rope_positions_match_llama_cpp_s_own_helper(qhost: Inferno) -> None:
    """The engine's greedy text equals a reference run that lets mtmd's helper place every chunk."""
    import ctypes

    import numpy as np

    from inferno.engine.model import Model
    from inferno.engine.protocol import EngineSettings, ResolvedModel
    from inferno.engine.types import LoadOptions
    from inferno.engine.vision import MARKER

    prompt = f"look: {MARKER} and tell"
    sampling = SamplingOptions(temperature=0, max_tokens=10, ignore_eos=True, repeat_penalty=1.0)
    events = list(qhost.engine.submit(GenerateRequest(model="qeyes", prompt=prompt, images=[RED],
                                                      sampling=sampling)))
    ours = "".join(e.text for e in events if isinstance(e, TextDelta))
    qhost.engine.unload("qeyes")

    info = qhost.store.get("qeyes")
    model = Model(ResolvedModel(name="ref", file=info.file, metadata=qhost.metadata("qeyes"),
                                projector=Path(info.mmproj or "")), LoadOptions(), EngineSettings())
    lib, proj = model.lib, model.projector
    assert proj is not None
    ctx = model.new_context(n_ctx=512, n_seq=1, n_batch=512)
    try:
        _, found = proj.tokenize(prompt, [base64.b64decode(RED)], add_special=True)
        n_past = ctypes.c_int32(0)
        for chunks in found.chunks:  # one chunk list per image (images are decoded one at a time), in order
            assert proj.m.mtmd_helper_eval_chunks(proj.ctx, ctx, chunks, n_past.value, 0, 512, True,
                                                  ctypes.byref(n_past)) == 0
        out = b""
        batch = lib.llama_batch_init(1, 0, 1)
        for _ in range(10):
            ptr = lib.llama_get_logits_ith(ctx, -1)
            tok = int(np.argmax(np.ctypeslib.as_array(ptr, shape=(model.n_vocab,))))
            out += model.piece_bytes(tok)
            batch.n_tokens = 1
            batch.token[0], batch.pos[0], batch.n_seq_id[0], batch.logits[0] = tok, n_past.value, 1, 1
            batch.seq_id[0][0] = 0
            assert lib.llama_decode(ctx, batch) == 0
            n_past.value += 1
        lib.llama_batch_free(batch)
    finally:
        lib.llama_free(ctx)
        model.close()
    assert ours == out.decode("utf-8", errors="replace")
