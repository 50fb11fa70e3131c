"""An image's width and height from its header, read by hand (no image library is a dependency), so that an
image whose decoded pixels would be gigabytes is refused before anything decodes it: a 1 MB PNG can declare
16000 x 16000 (1 GB of RGBA once stb_image decodes it).

The formats are those stb_image (what llama.cpp's mtmd decodes with) reads and vision.py lets through: PNG,
JPEG, GIF, BMP. A header that cannot be read is refused: an image of unknown size never reaches the decoder.
"""

from __future__ import annotations

import struct

# JPEG markers that start a frame (SOFn) and so carry its size; C4 (DHT), C8 (JPG) and CC (DAC) do not
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(raw: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill bytes
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length follows
            i += 2
            continue
        (length,) = struct.unpack(">H", raw[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > len(raw):
                return None
            h, w = struct.unpack(">HH", raw[i + 5:i + 9])
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the header, or None when it cannot be read."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24 and raw[12:16] == b"IHDR":
        w, h = struct.unpack(">II", raw[16:24])
        return w, h
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        w, h = struct.unpack("<HH", raw[6:10])
        return w, h
    if raw.startswith(b"BM") and len(raw) >= 26:
        (dib,) = struct.unpack("<I", raw[14:18])
        if dib == 12:
            w, h = struct.unpack("<HH", raw[18:22])
        else:
            w, h = struct.unpack("<ii", raw[18:26])
        return abs(w), abs(h)
    if raw.startswith(b"\xff\xd8\xff"):
        return _jpeg(raw)
    return None
