"""The quantization methods the installed llama.cpp offers, under the names users know (q4_k_m, Q4_K_M)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    name: str  # lower case, as typed: q4_k_m
    ftype: str  # llama_cpp constant
    bits: float  # approximate bits per weight on a 7-8B llama (llama.cpp's quantize table)
    use: str
    needs_imatrix: bool = False

    @property
    def label(self) -> str:
        return self.name.upper()


_TABLE = [
    Method("f32", "LLAMA_FTYPE_ALL_F32", 32.0, "full precision, reference only"),
    Method("f16", "LLAMA_FTYPE_MOSTLY_F16", 16.0, "half precision: the usual starting point"),
    Method("bf16", "LLAMA_FTYPE_MOSTLY_BF16", 16.0, "bfloat16: as trained, no loss"),
    Method("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5, "almost lossless, large"),
    Method("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 6.56, "near lossless"),
    Method("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.7, "very low loss"),
    Method("q5_k_s", "LLAMA_FTYPE_MOSTLY_Q5_K_S", 5.54, "low loss"),
    Method("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", 6.0, "legacy; prefer q5_k_m"),
    Method("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", 5.5, "legacy; prefer q5_k_s"),
    Method("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.89, "the usual balance of size and quality"),
    Method("q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S", 4.58, "a little smaller than q4_k_m"),
    Method("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", 5.0, "legacy; prefer q4_k_m"),
    Method("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 4.5, "legacy; fast on ARM with repacking"),
    Method("iq4_nl", "LLAMA_FTYPE_MOSTLY_IQ4_NL", 4.5, "non-linear 4-bit"),
    Method("iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS", 4.25, "small 4-bit, good with an imatrix"),
    Method("q3_k_l", "LLAMA_FTYPE_MOSTLY_Q3_K_L", 4.27, "noticeable loss"),
    Method("q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M", 3.91, "noticeable loss"),
    Method("q3_k_s", "LLAMA_FTYPE_MOSTLY_Q3_K_S", 3.5, "large loss"),
    Method("iq3_m", "LLAMA_FTYPE_MOSTLY_IQ3_M", 3.66, "3-bit, better than q3_k with an imatrix"),
    Method("iq3_s", "LLAMA_FTYPE_MOSTLY_IQ3_S", 3.44, "3-bit"),
    Method("iq3_xs", "LLAMA_FTYPE_MOSTLY_IQ3_XS", 3.3, "3-bit"),
    Method("iq3_xxs", "LLAMA_FTYPE_MOSTLY_IQ3_XXS", 3.06, "3-bit, smallest"),
    Method("q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K", 2.96, "very large loss"),
    Method("q2_k_s", "LLAMA_FTYPE_MOSTLY_Q2_K_S", 2.96, "very large loss", needs_imatrix=True),
    Method("iq2_m", "LLAMA_FTYPE_MOSTLY_IQ2_M", 2.7, "2-bit", needs_imatrix=True),
    Method("iq2_s", "LLAMA_FTYPE_MOSTLY_IQ2_S", 2.5, "2-bit", needs_imatrix=True),
    Method("iq2_xs", "LLAMA_FTYPE_MOSTLY_IQ2_XS", 2.31, "2-bit", needs_imatrix=True),
    Method("iq2_xxs", "LLAMA_FTYPE_MOSTLY_IQ2_XXS", 2.06, "2-bit, smallest", needs_imatrix=True),
    Method("iq1_m", "LLAMA_FTYPE_MOSTLY_IQ1_M", 1.75, "1-bit: experiments only", needs_imatrix=True),
    Method("iq1_s", "LLAMA_FTYPE_MOSTLY_IQ1_S", 1.56, "1-bit: experiments only", needs_imatrix=True),
    Method("tq2_0", "LLAMA_FTYPE_MOSTLY_TQ2_0", 2.06, "ternary models (BitNet) only"),
    Method("tq1_0", "LLAMA_FTYPE_MOSTLY_TQ1_0", 1.69, "ternary models (BitNet) only"),
]

UNQUANTIZED = {"F32", "F16", "BF16"}
COMMON = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k"]


def import_llama() -> Any:
    """llama_cpp, or one clear line saying how to get it (this plugin's only way in to llama.cpp)."""
    try:
        import llama_cpp
    except Exception as e:  # ImportError when missing; OSError/RuntimeError when its library does not load
        from inferno.api import UnavailableError

        raise UnavailableError(
            f"quantizing needs llama-cpp-python, which is not installed or does not load ({type(e).__name__}: "
            f"{e}); install it with: pip install llama-cpp-python") from e
    return llama_cpp


def available() -> list[Method]:
    """The methods whose file type this llama.cpp build knows."""
    llama_cpp = import_llama()
    return [m for m in _TABLE if hasattr(llama_cpp, m.ftype)]


def find(name: str) -> Method:
    from inferno.api import BadRequestError

    wanted = name.strip().lower()
    for m in _TABLE:
        if m.name == wanted:
            if m not in available():
                raise BadRequestError(f"this llama.cpp build cannot quantize to {m.label}")
            return m
    raise BadRequestError(f"unknown quantization method {name!r}; `inferno quantize --list` shows them",
                          param="quantize")


def by_name(name: str) -> Method | None:
    return next((m for m in _TABLE if m.name == name.lower()), None)
