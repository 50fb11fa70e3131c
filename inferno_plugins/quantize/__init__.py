"""The quantize plugin: `inferno quantize`, `compare`, `estimate`, and the quantize_model hook that other
plugins (Ollama's /api/create) call without importing this one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inferno.api import hookimpl

if TYPE_CHECKING:
    from inferno.api import Inferno, ModelInfo, Progress


@hookimpl
def quantize_model(inferno: Inferno, source: str, target: str, method: str, progress: Progress,
                   options: dict[str, Any]) -> ModelInfo | None:
    from .child import quantize_in_child

    info = inferno.store.get(source)
    if info.filename and not info.filename.endswith(".gguf"):
        from inferno.api import BadRequestError

        raise BadRequestError(f"{source} is not a GGUF file; convert it to GGUF first")
    meta = inferno.metadata(source)
    imatrix = options.get("imatrix")
    # in a child process: llama.cpp's quantizer never runs inside a server (nor fails one)
    tmp, label = quantize_in_child(info.file, inferno.store.staging_dir(), method, progress, current=meta.quantization,
                            allow_requantize=bool(options.get("allow_requantize")),
                            imatrix=str(imatrix) if imatrix else None, pure=bool(options.get("pure")),
                            threads=int(options.get("threads") or 0),
                            output_tensor_type=options.get("output_tensor_type"),
                            token_embedding_type=options.get("token_embedding_type"))
    try:  # the store checks the output's file name like any other (safe_filename + containment)
        return inferno.import_file(tmp, target, source=f"quantize:{info.name}", mode="move", progress=progress,
                                   filename=f"{target.replace(':', '-')}.gguf",
                                   extra={"quantized_from": info.name, "quantization_method": label})
    finally:
        tmp.unlink(missing_ok=True)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(quantize)
    cli.add_command(compare)
    cli.add_command(estimate)


def _host() -> Any:
    from inferno.api import Inferno

    return Inferno()


@click.command()
@click.argument("source", required=False)
@click.argument("target", required=False)
@click.option("--method", "-m", default="q4_k_m", show_default=True, help="Quantization method (see --list).")
@click.option("--list", "show_list", is_flag=True, help="List the methods this llama.cpp offers.")
@click.option("--imatrix", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Importance matrix (llama-imatrix output): required by the iq1/iq2 methods.")
@click.option("--allow-requantize", is_flag=True, help="Quantize an already quantized model (quality suffers).")
@click.option("--pure", is_flag=True, help="Every tensor to the same type (no mixed k-quant layouts).")
@click.option("--output-tensor-type", help="Type for output.weight (e.g. q8_0, f16).")
@click.option("--token-embedding-type", help="Type for the token embeddings (e.g. q8_0).")
@click.option("--threads", type=click.IntRange(0), default=0, help="Threads (0: all cores).")
@click.option("--keep-f16", is_flag=True, help="For hf:owner/repo or a folder: keep the converted F16 GGUF too.")
@click.option("-y", "--yes", is_flag=True, help="Set llama.cpp's converter up without asking, when it is needed.")
def quantize(source: str | None, target: str | None, method: str, show_list: bool, imatrix: Path | None,
             allow_requantize: bool, pure: bool, output_tensor_type: str | None, token_embedding_type: str | None,
             threads: int, keep_f16: bool, yes: bool) -> None:
    """Quantize a model with llama.cpp's quantizer; the result is a new model in the store.

    SOURCE is a local model, or a Hugging Face safetensors model (hf:owner/repo, or a folder) that is
    converted first (`inferno convert`), the intermediate F16 deleted unless --keep-f16.
    TARGET defaults to SOURCE-METHOD (mymodel-f16 → mymodel-f16-q8_0).
    """
    from .methods import available, find

    if show_list:
        click.echo(f"{'METHOD':<9} {'BITS/W':>6} {'vs F16':>7}  USE")
        for m in available():
            note = m.use + ("; needs --imatrix" if m.needs_imatrix else "")
            click.echo(f"{m.label:<9} {m.bits:6.2f} {m.bits / 16:6.0%}  {note}")
        return
    if not source:
        raise click.UsageError("give a SOURCE model (or --list)")
    from inferno.api import ProgressBar, normalize_name

    host = _host()
    if target:
        target = normalize_name(target, "target")  # a bad name is refused before anything runs
    chosen = find(method)
    if _is_safetensors_source(host, source):
        _convert_and_quantize(host, source, target, chosen.name, keep_f16, yes)
        return
    name = host.store.get(source, "source").name
    target = normalize_name(target or f"{name.replace(':', '-')}-{chosen.name}", "target")
    bar = ProgressBar()
    try:
        info = host.quantize(name, target, chosen.name, progress=bar,
                             options={"imatrix": str(imatrix) if imatrix else None,
                                      "allow_requantize": allow_requantize, "pure": pure,
                                      "threads": threads, "output_tensor_type": output_tensor_type,
                                      "token_embedding_type": token_embedding_type})
    finally:
        bar.close()
    from inferno.api import human_size

    before = host.store.get(name).size
    click.echo(f"quantized {name} → {info.name} ({chosen.label}): {human_size(before)} → {human_size(info.size)}")


def _is_safetensors_source(host: Any, source: str) -> bool:
    """hf:owner/repo (no GGUF selector: a GGUF repository is pulled, not converted) or a local folder."""
    import re

    if re.match(r"^(hf:|huggingface:|hf\.co/)[^:]+$", source):
        return True
    try:
        return Path(source).expanduser().is_dir()
    except (OSError, ValueError):
        return False


def _convert_and_quantize(host: Any, source: str, target: str | None, method: str, keep_f16: bool,
                          yes: bool) -> None:
    """`inferno quantize hf:owner/repo NAME --method q4_k_m`: llama.cpp's converter, then its quantizer."""
    import re
    import sys

    from inferno.api import ProgressBar, human_size, name_from, normalize_name

    if target is None:
        base = re.sub(r"^(hf:|huggingface:|hf\.co/)", "", source).split("@", 1)[0].rstrip("/")
        target = normalize_name(f"{name_from(base.rsplit('/', 1)[-1])}-{method}", "target")
    setup: Any = True if yes else (lambda q: click.confirm(q, default=True, err=True)) if sys.stdin.isatty() else None
    bar = ProgressBar()
    try:
        info = host.convert(source, target, method=method, keep_f16=keep_f16, progress=bar, options={"setup": setup})
    finally:
        bar.close()
    click.echo(f"converted and quantized {source} → {info.name} ({method.upper()}, {human_size(info.size)})")


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--eval", "run_eval", is_flag=True, help="Load each model: measured tok/s and perplexity.")
@click.option("--n-ctx", type=click.IntRange(16), default=4096, show_default=True, help="Context for RAM and --eval.")
def compare(models: tuple[str, ...], run_eval: bool, n_ctx: int) -> None:
    """Compare models side by side: size, bits/weight, quantization, parameters, context, RAM."""
    from inferno.api import format_parameter_size, kv_cache_bytes, table

    from .report import bits_per_weight, evaluate, human

    host = _host()
    rows = [["MODEL", "SIZE", "BITS/W", "QUANT", "PARAMS", "CONTEXT", f"RAM @{n_ctx}"]]
    if run_eval:
        rows[0] += ["TOK/S", "PPL"]
    for name in models:
        info = host.store.get(name)
        meta = host.metadata(name)
        bpw = bits_per_weight(info.size, meta.parameter_count)
        kv = kv_cache_bytes(meta, min(n_ctx, meta.context_length or n_ctx))
        row = [info.name, human(info.size), f"{bpw:.2f}" if bpw else "-", meta.quantization or "-",
               format_parameter_size(meta.parameter_count) or "-", str(meta.context_length or "-"),
               human(info.size + (kv or 0))]
        if run_eval:
            result = evaluate(host, info.name, min(n_ctx, meta.context_length or n_ctx))
            row += [f"{result['tok_s']:.1f}", f"{result['perplexity']:.2f}"]
        rows.append(row)
    click.echo(table(rows))
    if run_eval:
        from .report import eval_text

        click.echo(f"\n--eval: decode speed over 64 greedy tokens after \"Once upon a time\"; perplexity over the "
                   f"bundled text ({len(eval_text().split())} words, inferno_plugins/quantize/eval_text.txt); "
                   f"context {n_ctx}, threads: all cores.")
    host.engine.close() if "engine" in host.__dict__ else None


@click.command()
@click.argument("model")
@click.option("--n-ctx", type=click.IntRange(16), help="Context length (default: min(trained, 4096)).")
def estimate(model: str, n_ctx: int | None) -> None:
    """RAM a model needs (weights + KV cache), for its own quantization and the common alternatives."""
    from inferno.api import default_context, kv_cache_bytes, table

    from .methods import COMMON, by_name
    from .report import human

    host = _host()
    info = host.store.get(model)
    meta = host.metadata(model)
    ctx = n_ctx or default_context(meta, host.settings.default_context)
    kv = kv_cache_bytes(meta, ctx)
    rows = [["QUANT", "WEIGHTS", f"KV CACHE @{ctx}", "TOTAL"]]
    own = (meta.quantization or "?").upper()
    rows.append([f"{own} (this file)", human(info.size), human(kv), human(info.size + (kv or 0))])
    params = meta.parameter_count or 0
    for name in COMMON:
        method = by_name(name)
        if method is None or method.label == own or not params:
            continue
        weights = params * method.bits / 8
        rows.append([method.label, human(weights), human(kv), human(weights + (kv or 0))])
    click.echo(table(rows))
    if kv is None:
        click.echo("(KV cache unknown: the file lacks layer or head counts)")
