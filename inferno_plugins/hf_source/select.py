"""Choosing the GGUF file(s) of a Hugging Face repository: split files grouped, quantizations matched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SPLIT = re.compile(r"^(?P<base>.*)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$")
_QUANT = re.compile(r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|F16|BF16|F32|FP16)(?=[-_.]|$)", re.I)
# When nothing is asked for: the usual sweet spot first, then the nearest in quality and size.
PREFERENCE = ["Q4_K_M", "Q4_K_S", "Q4_K_L", "IQ4_XS", "Q4_0", "Q5_K_M", "Q4_1", "Q5_K_S", "Q5_0", "Q3_K_L",
              "Q3_K_M", "Q6_K", "IQ3_M", "Q8_0", "Q3_K_S", "Q2_K", "F16", "BF16", "F32"]


@dataclass
class Candidate:
    """One loadable model: a single GGUF, or every part of a split one (first part first)."""

    files: list[str]
    size: int = 0
    sha256: dict[str, str] = field(default_factory=dict)
    projector: str | None = None  # a vision model's mmproj file in the same folder, pulled along

    @property
    def first(self) -> str:
        return self.files[0]

    @property
    def quant(self) -> str | None:
        stem = self.first.rsplit("/", 1)[-1].removesuffix(".gguf")
        m = _SPLIT.match(self.first.rsplit("/", 1)[-1])
        if m:
            stem = m.group("base")
        found = _QUANT.findall(stem)
        return found[-1].upper() if found else None

    @property
    def label(self) -> str:
        parts = f" ({len(self.files)} parts)" if len(self.files) > 1 else ""
        return f"{self.first}{parts}"


def candidates(siblings: list[tuple[str, int, str | None]]) -> list[Candidate]:
    """Group (filename, size, sha256) triples into candidates; a projector file (mmproj) is not one, but goes
    with the candidates of its folder."""
    groups: dict[str, Candidate] = {}
    for name, size, sha in sorted(siblings):
        if not name.endswith(".gguf") or "mmproj" in name.lower():
            continue
        m = _SPLIT.match(name)
        key = m.group("base") if m else name
        c = groups.setdefault(key, Candidate(files=[]))
        c.files.append(name)
        c.size += size
        if sha:
            c.sha256[name] = sha
    projectors = [(name, sha) for name, _, sha in siblings if name.endswith(".gguf") and "mmproj" in name.lower()]
    for c in groups.values():
        folder = c.first.rpartition("/")[0]
        mine = [(n, sha) for n, sha in projectors if n.rpartition("/")[0] == folder]
        if mine:
            name, sha = min(mine, key=lambda p: (_projector_rank(p[0]), p[0]))
            c.projector = name
            if sha:
                c.sha256[name] = sha
    return sorted(groups.values(), key=lambda c: c.first)


def _projector_rank(name: str) -> int:
    """F16 first (what llama.cpp's converter writes and most repositories ship), then the closest."""
    found = _QUANT.findall(name.rsplit("/", 1)[-1].removesuffix(".gguf"))
    order = ["F16", "BF16", "Q8_0", "F32"]
    quant = found[-1].upper() if found else None
    return order.index(quant) if quant in order else len(order)


def by_quant(cands: list[Candidate], quant: str) -> list[Candidate]:
    return [c for c in cands if c.quant and c.quant == quant.upper()]


def by_file(cands: list[Candidate], filename: str) -> Candidate | None:
    for c in cands:
        if filename in c.files or any(f.rsplit("/", 1)[-1] == filename for f in c.files):
            return c
    return None


def preferred(cands: list[Candidate]) -> Candidate:
    """Q4_K_M, else the nearest by PREFERENCE, else the smallest file."""
    ranked = [c for q in PREFERENCE for c in cands if c.quant == q]
    return ranked[0] if ranked else min(cands, key=lambda c: c.size)
