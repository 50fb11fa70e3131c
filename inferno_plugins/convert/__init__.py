"""The convert plugin: `inferno convert` and the convert_model hook (also behind `inferno quantize hf:…` and
Ollama's /api/create with safetensors files): Hugging Face safetensors → GGUF with llama.cpp's own converter,
which runs in an environment of its own (toolenv.py).

No code from a model runs: the converter reads a fresh folder holding only the files it needs (AUX and the
*.safetensors, never a .py), an `auto_map` (which names code to import) is refused, and so is an architecture
whose conversion always imports the folder's code (remote_code.py) — unless the CLI user passes
`--trust-remote-code`, which no HTTP route can."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inferno.api import BadRequestError, InfernoError, UnavailableError, hookimpl, safe_filename

from . import remote_code, toolenv
from .command import OUTTYPES

if TYPE_CHECKING:
    from inferno.api import Inferno, ModelInfo, Progress

# What the converter reads besides the weights; weights are *.safetensors (pickled .bin files are never taken).
AUX = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
       "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
       "chat_template.json", "model.safetensors.index.json"}
TOKENIZERS = ("tokenizer.model", "tokenizer.json")
BITS = {"f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q6_k": 6.56, "q5_k_m": 5.7, "q5_k_s": 5.54, "q4_k_m": 4.89,
        "q4_k_s": 4.58, "q4_0": 4.5, "q3_k_m": 3.91, "q2_k": 2.96}


class DiskFullError(InfernoError):
    status = 507


PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack", ".onnx")


def wanted(listing: dict[str, int], what: str, trust: bool = False) -> list[str]:
    """The files conversion needs from a listing, or one line saying why this is not a convertible model.
    Trusting remote code, the folder's other files come too (the code and what it reads), pickles never."""
    if "config.json" not in listing:
        raise BadRequestError(f"{what} is not a Hugging Face model: it has no config.json")
    weights = [n for n in listing if n.endswith(".safetensors")]
    if not weights:
        pickles = [n for n in listing if n.endswith((".bin", ".pt", ".pth"))]
        hint = " (only PyTorch pickles, which Inferno does not load)" if pickles else ""
        raise BadRequestError(f"{what} has no safetensors weights{hint}")
    if not any(t in listing for t in TOKENIZERS):
        raise BadRequestError(f"missing tokenizer: {what} has neither tokenizer.model nor tokenizer.json")
    extra = sorted(n for n in listing if n not in AUX and not n.endswith((".safetensors", *PICKLES))) if trust else []
    return sorted(n for n in listing if n in AUX) + extra + sorted(weights)


def confined_folder(source: Path, names: list[str], staging: Path) -> Path:
    """A fresh folder holding only names from source (hard links where the file system allows): all the
    converter gets to read, so nothing else an uploader or a repository put beside the weights is seen."""
    import os

    folder = staging / f"convert-src-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    for name in names:
        src, dest = source / safe_filename(name, "files"), folder / name
        if src.is_symlink() or not src.is_file():
            continue  # a link could point anywhere; the checks above name what is missing
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    return folder


def check_remote_code(env: Path, folder: Path, arch: str, trust: bool) -> None:
    """Refuse a folder whose conversion would import its own code (400), unless the CLI user trusts it."""
    if trust:
        return
    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            raise BadRequestError(f"{name} has an auto_map: this model ships its own Python code, which Inferno "
                                  "never runs (on the command line: inferno convert … --trust-remote-code)")
    needing = remote_code.remote_code_architectures(env) or set()
    if arch in needing:
        raise BadRequestError(f"architecture {arch} needs remote code: llama.cpp's converter runs the model's own "
                              "Python code for it, which Inferno never does (on the command line: inferno "
                              "convert … --trust-remote-code)")


def check_architecture(env: Path, config: Path, what: str) -> str:
    try:
        arch = (json.loads(config.read_text()).get("architectures") or ["?"])[0]
    except (OSError, ValueError):
        raise BadRequestError(f"{what}: config.json is not valid JSON") from None
    known = toolenv.supported_architectures(env)
    if known and arch not in known:
        raise BadRequestError(f"unsupported architecture {arch}: llama.cpp's converter does not know it")
    return arch


def check_disk(where: Path, listing: dict[str, int], have: set[str], config: Path, outtype: str,
               method: str | None) -> None:
    """Refuse before starting when the download, the GGUF and the quantized GGUF cannot all fit."""
    weights = sum(size for name, size in listing.items() if name.endswith(".safetensors"))
    download = sum(size for name, size in listing.items() if name not in have)
    try:
        dtype = str(json.loads(config.read_text()).get("torch_dtype") or json.loads(config.read_text())
                    .get("dtype") or "bfloat16")
    except (OSError, ValueError):
        dtype = "bfloat16"
    params = weights / (4 if "32" in dtype else 2)
    gguf = int(params * BITS.get(outtype, 16.0) / 8)
    quantized = int(params * BITS.get((method or "").lower(), 8.5) / 8) if method else 0
    need = download + gguf + quantized
    free = shutil.disk_usage(where).free
    if need > free:
        gib = 1 << 30
        parts = ", ".join(f"{label} {n / gib:.2f} GiB" for label, n in
                          (("download", download), (outtype.upper(), gguf), ((method or "").upper(), quantized)) if n)
        raise DiskFullError(f"not enough disk space: converting needs about {need / gib:.2f} GiB ({parts}) "
                            f"but {free / gib:.2f} GiB is free in {where}")


@hookimpl
def convert_model(inferno: Inferno, source: str, target: str, outtype: str, progress: Progress,
                  options: dict[str, Any]) -> ModelInfo | None:
    if outtype not in OUTTYPES:
        raise BadRequestError(f"outtype must be one of {', '.join(OUTTYPES)}", param="outtype")
    local = Path(source).expanduser() if not source.startswith(("hf:", "huggingface:", "hf.co/")) else None
    trust = options.get("trust_remote_code") is True  # only the CLI sets it; /api/create never does
    if local is not None and local.is_dir():  # a folder that cannot be converted is a 400 before anything else
        listing = {p.name: p.stat().st_size for p in local.iterdir() if p.is_file() and not p.is_symlink()}
        names = wanted(listing, "the upload" if options.get("uploaded") else str(local), trust)
    env = toolenv.env_dir(inferno.settings.home)
    if not toolenv.is_ready(env):
        # options["setup"]: True (--yes) sets it up now; a callable is asked first; anything else refuses
        setup = options.get("setup")
        question = f"Converting needs llama.cpp's converter in {env} ({toolenv.SIZE_NOTE}). Set it up now?"
        if setup is True or (callable(setup) and setup(question)):
            toolenv.setup(env, progress)
        else:
            raise UnavailableError("converting needs llama.cpp's converter, which is not set up here: run "
                                   f"`inferno convert --setup` ({toolenv.SIZE_NOTE})")
    staging = inferno.store.staging_dir()
    method = options.get("quantize")
    if local is not None and local.is_dir():
        arch = check_architecture(env, local / "config.json", str(local))
        check_remote_code(env, local, arch, trust)
        check_disk(staging, {n: listing[n] for n in names}, set(names), local / "config.json", outtype, method)
        folder, downloaded = local, False
    else:
        seen: dict[str, Any] = {}

        def first(listing: dict[str, int]) -> list[str]:
            seen["names"] = wanted(listing, source, trust)
            seen["listing"] = {n: listing[n] for n in seen["names"]}
            return [n for n in ("config.json", "tokenizer_config.json") if n in listing]

        folder = inferno.snapshot(source, first, progress=progress)
        arch = check_architecture(env, folder / "config.json", source)
        check_remote_code(env, folder, arch, trust)
        have = {p.name for p in folder.iterdir() if p.is_file()}
        check_disk(staging, seen["listing"], have, folder / "config.json", outtype, method)
        folder = inferno.snapshot(source, lambda listing: wanted(listing, source, trust), progress=progress)
        names, downloaded = seen["names"], True
    tmp = staging / f".tmp-convert-{uuid.uuid4().hex[:12]}.gguf"
    confined = confined_folder(folder, names, staging)
    try:
        progress(0, None, f"converting to {outtype.upper()} with llama.cpp's converter")
        toolenv.convert(env, confined, tmp, outtype, progress)
        info = inferno.import_file(tmp, target, source=source if local is None else f"convert:{folder.name}",
                                   mode="move", progress=progress,
                                   filename=safe_filename(f"{target.replace(':', '-')}.gguf", "target"),
                                   extra={"converted_from": source, "conversion_outtype": outtype})
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(confined, ignore_errors=True)
    if downloaded:  # the safetensors served their purpose; a failed conversion keeps them to resume
        shutil.rmtree(folder, ignore_errors=True)
    return info


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .command import convert

    cli.add_command(convert)
