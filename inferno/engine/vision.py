"""Images in prompts, through llama.cpp's multimodal library (mtmd) and a model's projector (mmproj) file.

mtmd splits a prompt whose text holds media markers into chunks: text tokens, and per image a chunk of image
embeddings. The batcher keeps a prompt as one token list: an image's positions hold placeholder ids (negative,
derived from the image's digest), so the longest-common-prefix reuse of the KV cache works across images as
it does for text (the same image at the same place is the same prefix). An image chunk is evaluated for its
one sequence with mtmd's helper between two batch steps; text around it goes through the shared batch.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferno.errors import BadRequestError, ModelLoadError

MARKER = "<__media__>"  # mtmd's default media marker
# stb_image (what mtmd decodes with) reads these; anything else is refused before it reaches llama.cpp, which
# would otherwise try audio decoders and ffprobe on it.
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP"}


def image_bytes(data: str | bytes, index: int, limit: int) -> bytes:
    """An image given as base64 (or a data: URL) → its bytes; 400 when undecodable, unsupported or too big."""
    if isinstance(data, str):
        text = data.strip()
        if text.startswith("data:"):
            head, _, text = text.partition(",")
            if ";base64" not in head:
                raise BadRequestError(f"image {index}: only base64 data URLs are supported", param="images")
        if len(text) * 3 // 4 > limit + 3:
            raise BadRequestError(f"image {index} is larger than {limit} bytes (INFERNO_MAX_IMAGE_BYTES)",
                                  param="images")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestError(f"image {index} is not valid base64", param="images") from None
    else:
        raw = data
    if len(raw) > limit:
        raise BadRequestError(f"image {index} is larger than {limit} bytes (INFERNO_MAX_IMAGE_BYTES)",
                              param="images")
    if not any(raw.startswith(m) for m in _MAGIC):
        raise BadRequestError(f"image {index} is not a PNG, JPEG, GIF or BMP image", param="images")
    return raw


def check_pixels(images: list[bytes], per_image: int, per_request: int) -> None:
    """Width x height from each header, capped per image and for the request, before any image is decoded."""
    from inferno.engine.imagesize import image_size

    total = 0
    for i, raw in enumerate(images):
        size = image_size(raw)
        if size is None or not size[0] or not size[1]:
            raise BadRequestError(f"image {i} cannot be decoded: no width and height in its header", param="images")
        w, h = size
        if w * h > per_image:
            raise BadRequestError(f"image {i} is {w}x{h} ({w * h} pixels); at most {per_image} pixels are accepted "
                                  "per image (INFERNO_MAX_IMAGE_PIXELS)", param="images")
        total += w * h
        if total > per_request:
            raise BadRequestError(f"the images of this request hold more than {per_request} pixels together "
                                  "(INFERNO_MAX_REQUEST_PIXELS)", param="images")


@dataclass
class PromptImages:
    """The image chunks of one prompt by start index: the chunk, its tokens and the positions they take (fewer
    than the tokens with M-RoPE, as Qwen2-VL lays an image out on a grid). Freed with the request."""

    spans: dict[int, tuple[Any, int, int]] = field(default_factory=dict)  # start → (chunk, tokens, positions)
    chunks: Any = None  # the mtmd chunk lists holding them (one per image), freed with this object

    def align(self, n: int) -> int:
        """n moved back to the start of the image it falls inside (a cache prefix never splits an image)."""
        for start, (_, length, _) in self.spans.items():
            if start < n < start + length:
                return start
        return n


class Projector:
    """A model's mtmd context: its projector file loaded against the text model's weights."""

    def __init__(self, text_model: Any, path: Path, *, threads: int, use_gpu: bool) -> None:
        from llama_cpp import mtmd_cpp

        self.m = mtmd_cpp
        self.path = path
        if not path.is_file():
            raise ModelLoadError(f"the projector file is missing: {path}")
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = threads
        params.print_timings = False
        params.warmup = True
        self.ctx: Any = mtmd_cpp.mtmd_init_from_file(str(path).encode(), text_model, params)
        if not self.ctx:
            raise ModelLoadError(f"cannot load the projector {path.name}: llama.cpp's mtmd refused it "
                                 "(does it belong to this model?)")
        if not mtmd_cpp.mtmd_support_vision(self.ctx):
            self.close()
            raise ModelLoadError(f"the projector {path.name} has no vision encoder")

    def close(self) -> None:
        if self.ctx:
            self.m.mtmd_free(self.ctx)
            self.ctx = None

    def tokenize(self, text: str, images: list[bytes], *, add_special: bool) -> tuple[list[int], PromptImages]:
        """Tokens of text with one image per marker; an image's positions hold placeholder ids.

        Images are decoded one at a time: the text is tokenized up to and including each image's marker with
        that image alone, and its decoded bitmap freed before the next is decoded (mtmd's chunk keeps only the
        image's preprocessed tiles), so a request's peak is one decoded image, not all of them."""
        m = self.m
        parts = text.split(MARKER)
        if len(parts) - 1 != len(images):
            raise BadRequestError(f"the prompt has {len(parts) - 1} image markers for {len(images)} images",
                                  param="images")
        out = PromptImages(chunks=[])
        tokens: list[int] = []
        first = True
        for k, part in enumerate(parts):
            segment = part + (MARKER if k < len(images) else "")
            if not segment:
                continue
            bmp = None
            try:
                if k < len(images):
                    raw = images[k]
                    buf = (ctypes.c_uint8 * len(raw)).from_buffer_copy(raw)
                    bmp = m.mtmd_helper_bitmap_init_from_buf(self.ctx, buf, len(raw), False)
                    if not bmp:
                        raise BadRequestError(f"image {k} cannot be decoded", param="images")
                chunks = m.mtmd_input_chunks_init()
                weakref.finalize(out, m.mtmd_input_chunks_free, chunks)
                out.chunks.append(chunks)
                encoded = segment.encode("utf-8")
                inp = m.mtmd_input_text(encoded, len(encoded), add_special and first, True)
                arr = (m.mtmd_bitmap_p_ctypes * 1)(*([bmp] if bmp else [None]))
                rc = m.mtmd_tokenize(self.ctx, chunks, ctypes.byref(inp), arr, 1 if bmp else 0)
                if rc != 0:
                    raise BadRequestError("an image could not be prepared for the model", param="images")
            finally:
                if bmp:
                    m.mtmd_bitmap_free(bmp)
            first = False
            for c in range(m.mtmd_input_chunks_size(chunks)):
                chunk = m.mtmd_input_chunks_get(chunks, c)
                if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t(0)
                    ptr = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    tokens.extend(ptr[i] for i in range(n.value))
                    continue
                n_tok = m.mtmd_input_chunk_get_n_tokens(chunk)
                h = int(hashlib.sha256(images[k]).hexdigest()[:12], 16)
                out.spans[len(tokens)] = (chunk, n_tok, m.mtmd_input_chunk_get_n_pos(chunk))
                tokens.extend(-(1 + h * 1_000_000 + i) for i in range(n_tok))
        return tokens, out

    def eval(self, lctx: Any, chunk: Any, n_past: int, seq_id: int, n_batch: int) -> bool:
        """Decode one image chunk into sequence seq_id at positions n_past…; False on failure."""
        new_past = ctypes.c_int32(0)
        rc = self.m.mtmd_helper_eval_chunk_single(self.ctx, lctx, chunk, n_past, seq_id, n_batch, False,
                                                  ctypes.byref(new_past))
        return rc == 0
