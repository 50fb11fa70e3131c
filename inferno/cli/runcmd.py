"""`inferno run`: a chat REPL (or one answer) against a model loaded in this process."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from inferno.cli.loadflags import load_flags

HELP = """Available commands:
  /set system <text>          set the system prompt
  /set context <n>            set the context window (reloads the model)
  /set think, /set nothink    turn a thinking model's reasoning on or off (shown dimmed)
  /image <path>               attach an image (PNG, JPEG, GIF, BMP) to the next message (vision models)
  /set parameter <name> <v>   set a sampling parameter (temperature, top_k, top_p, min_p, seed,
                              repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty,
                              num_predict, stop, num_thread)
  /show context               current context window and the model's maximum
  /show info                  the model's details
  /clear                      forget the conversation (keeps the system prompt)
  /reset                      forget the conversation and the system prompt
  /bye                        leave (Ctrl-D works too)
  /help, /?                   this help
Ctrl-C stops an answer without leaving."""

_INT_PARAMS = {"top_k", "repeat_last_n", "seed", "num_predict", "num_thread"}
_FLOAT_PARAMS = {"temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty"}


class Session:
    def __init__(self, host: Any, name: str, sampling: dict[str, Any], load: dict[str, Any],
                 fmt: str | None, system: str | None, verbose: bool) -> None:
        from inferno.engine.types import Message

        self.host, self.name, self.sampling, self.load, self.fmt = host, name, sampling, load, fmt
        self.system = system
        self.history: list[Message] = []
        self.verbose = verbose
        self.think: bool | None = None  # None: the model's template decides
        self.hide_thinking = False  # a thinking model's reasoning is kept in the history but not shown
        self.images: list[str] = []  # base64 images for the next message (/image, --image)

    def messages(self) -> list[Any]:
        from inferno.engine.types import Message

        head = [Message(role="system", content=self.system)] if self.system else []
        return head + self.history

    def ask(self, text: str, out: Any = None) -> str:
        """Stream one answer to out; Ctrl-C stops it and keeps what was said."""
        from inferno.engine.types import (
            Done,
            GenerateRequest,
            LoadOptions,
            Message,
            SamplingOptions,
            TextDelta,
            ThinkingDelta,
        )

        out = out or sys.stdout
        images, self.images = self.images or None, []
        self.history.append(Message(role="user", content=text, images=images))
        req = GenerateRequest(model=self.name, messages=self.messages(), format=self.fmt,  # type: ignore
                              sampling=SamplingOptions(**self.sampling), load=LoadOptions(**self.load),
                              keep_alive=-1, think=self.think)
        handle = self.host.engine.submit(req)
        parts: list[str] = []
        thought: list[str] = []
        tty = getattr(out, "isatty", lambda: False)()

        def dim(text: str) -> str:
            return click.style(text, dim=True) if tty else text

        def end_thinking() -> None:  # as Ollama's CLI frames the reasoning
            if thought and not parts and not self.hide_thinking:
                out.write(dim("\n...done thinking.\n\n"))

        done: Any = None
        try:
            for event in handle:
                if isinstance(event, TextDelta):
                    if event.text and not parts:
                        end_thinking()
                    if event.text:
                        parts.append(event.text)
                    out.write(event.text)
                    out.flush()
                elif isinstance(event, ThinkingDelta):
                    if not thought and not self.hide_thinking:
                        out.write(dim("Thinking...\n"))
                    thought.append(event.text)
                    if not self.hide_thinking:
                        out.write(dim(event.text))
                        out.flush()
                elif isinstance(event, Done):
                    if not parts:
                        end_thinking()
                    done = event
        except KeyboardInterrupt:
            handle.cancel()
            for event in handle:  # drain to the Done so the model is free for the next turn
                if isinstance(event, Done):
                    done = event
        except BaseException:
            self.history.pop()
            raise
        out.write("\n")
        answer = "".join(parts)
        self.history.append(Message(role="assistant", content=answer, thinking="".join(thought) or None))
        if self.verbose and done is not None:
            rate = done.completion_tokens / (done.eval_ns / 1e9) if done.eval_ns else 0.0
            drafts = (f", draft tokens accepted: {done.draft_n_accepted} of {done.draft_n}" if done.draft_n else "")
            click.echo(f"prompt tokens: {done.prompt_tokens}, answer tokens: {done.completion_tokens}, "
                       f"{rate:.1f} tokens/s{drafts}", err=True)
        return answer

    def command(self, line: str) -> bool:
        """Handle a /command; False means leave."""
        words = line.split(maxsplit=2)
        cmd = words[0].lower()
        if cmd in ("/bye", "/exit", "/quit"):
            return False
        if cmd in ("/help", "/?"):
            click.echo(HELP)
        elif cmd == "/clear":
            self.history.clear()
            click.echo("Cleared session context")
        elif cmd == "/reset":
            self.history.clear()
            self.system = None
            click.echo("Cleared session context and system prompt")
        elif cmd == "/image" and len(words) >= 2:
            path = line.split(maxsplit=1)[1].strip().strip("'\"")
            try:
                self.add_image(path)
            except click.ClickException as e:
                click.echo(e.message)
                return True
            click.echo(f"Added image {path}; it goes with your next message.")
        elif cmd == "/set" and len(words) >= 2:
            self._set(words[1].lower(), words[2] if len(words) > 2 else "")
        elif cmd == "/show" and len(words) >= 2:
            self._show(words[1].lower())
        else:
            click.echo(f"Unknown command {line!r}. Type /? for help")
        return True

    def add_image(self, path: str) -> None:
        """Read an image file for the next message (the engine checks its format and size)."""
        import base64
        from pathlib import Path

        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as e:
            raise click.ClickException(f"cannot read image {path}: {e.strerror or e}") from None
        self.images.append(base64.b64encode(data).decode())

    def _set(self, what: str, value: str) -> None:
        if what == "system":
            self.system = value or None
            click.echo("Set system message.")
        elif what == "context":
            try:
                n = int(value)
                if n < 16:
                    raise ValueError
            except ValueError:
                click.echo("Usage: /set context <n>, n at least 16")
                return
            self.load["n_ctx"] = n
            click.echo(f"Set context to {n} (the model reloads on the next message).")
        elif what in ("think", "nothink"):
            self.think = what == "think"
            click.echo(f"Set thinking {'on' if self.think else 'off'}.")
        elif what == "parameter":
            name, _, raw = value.partition(" ")
            self._parameter(name.strip().lower(), raw.strip())
        else:
            click.echo("Usage: /set system <text> | /set context <n> | /set think | /set nothink | "
                       "/set parameter <name> <value>")

    def _parameter(self, name: str, raw: str) -> None:
        try:
            if name in _INT_PARAMS:
                value: Any = int(raw)
            elif name in _FLOAT_PARAMS:
                value = float(raw)
            elif name == "stop":
                value = [*self.sampling.get("stop", []), raw]
            else:
                click.echo(f"Unknown parameter {name!r}")
                return
        except ValueError:
            click.echo(f"Bad value for {name}: {raw!r}")
            return
        if name == "num_predict":
            self.sampling["max_tokens"] = value
        elif name == "num_thread":
            self.load["n_threads"] = value
        else:
            self.sampling[name] = value
        from inferno.engine.types import SamplingOptions

        try:
            SamplingOptions(**self.sampling)
        except ValueError as e:
            self.sampling.pop(name, None)
            click.echo(f"Bad value for {name}: {e.errors()[0]['msg']}")  # type: ignore
            return
        click.echo(f"Set parameter '{name}' to '{raw}'")

    def _show(self, what: str) -> None:
        meta = self.host.metadata(self.name)
        if what == "context":
            from inferno.ram import default_context

            loaded = {m.name: m for m in self.host.engine.loaded()}
            current = loaded[self.name].context_length if self.name in loaded else \
                self.load.get("n_ctx") or default_context(meta, self.host.settings.default_context)
            click.echo(f"context window: {current} tokens (model maximum: {meta.context_length or 'unknown'})")
        elif what == "info":
            from inferno.metadata import format_parameter_size

            click.echo(f"  architecture   {meta.architecture}\n  parameters     "
                       f"{format_parameter_size(meta.parameter_count)}\n  context length "
                       f"{meta.context_length}\n  quantization   {meta.quantization}")
        else:
            click.echo("Usage: /show context | /show info")


def _repl(session: Session) -> None:
    tty = sys.stdin.isatty()
    if tty:
        import contextlib

        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - line editing and history for input()
    while True:
        try:
            line = input(">>> " if tty else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            click.echo("\nUse Ctrl-D or /bye to exit.")
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line):
                break
            continue
        from inferno.errors import InfernoError

        try:
            session.ask(line)
        except InfernoError as e:  # a bad image, a model without vision …: say so and stay
            click.secho(f"Error: {e.message}", fg="red", err=True)


@click.command()
@click.argument("model")
@click.argument("prompt", nargs=-1)
@load_flags
@click.option("--temperature", type=click.FloatRange(0), help="Sampling temperature.")
@click.option("--top-k", type=click.IntRange(0))
@click.option("--top-p", type=click.FloatRange(0, 1))
@click.option("--seed", type=int, help="Seed for reproducible answers.")
@click.option("--max-tokens", type=int, help="Longest answer in tokens.")
@click.option("--ignore-eos", is_flag=True, help="Keep generating past end-of-text (for tests and benchmarks).")
@click.option("--format", "fmt", type=click.Choice(["json"]), help="Constrain the answer to JSON.")
@click.option("--system", help="System prompt.")
@click.option("--verbose", is_flag=True, help="Print token counts and speed after each answer.")
@click.option("--image", "images", multiple=True, help="An image file to ask about (vision models; repeatable).")
@click.option("--think/--no-think", default=None, help="Turn a thinking model's reasoning on or off.")
@click.option("--hidethinking", is_flag=True, help="Do not show a thinking model's reasoning, only its answer.")
@click.option("--rpc", help="llama.cpp RPC workers (`inferno rpc-worker`) to split the model across: "
                            "HOST:PORT[,HOST:PORT…] (INFERNO_RPC_SERVERS).")
@click.option("--tensor-split", help="Proportions of the layers per device, the RPC workers' first, then local GPUs.")
@click.option("--no-repack", is_flag=True, help="Never repack weights into llama.cpp's extra buffer types (AMX…).")
def run(model: str, prompt: tuple[str, ...], load: dict[str, Any], temperature: float | None,
        top_k: int | None, top_p: float | None, seed: int | None, max_tokens: int | None, ignore_eos: bool,
        fmt: str | None, system: str | None, verbose: bool, images: tuple[str, ...], think: bool | None,
        hidethinking: bool, rpc: str | None, tensor_split: str | None, no_repack: bool) -> None:
    """Chat with a model (pulled first if it is not local). With PROMPT or piped stdin: one answer."""
    import logging

    from inferno.cli.models import interactive_choose
    from inferno.cli.servecmd import with_rpc
    from inferno.config import load_settings
    from inferno.host import Inferno
    from inferno.progress import ProgressBar

    # the engine's log (a runner's death with its last lines) is the server's; here the error itself is one line
    logging.getLogger("inferno").addHandler(logging.NullHandler())
    settings = with_rpc(load_settings(), rpc, tensor_split)
    host = Inferno(settings.model_copy(update={"repack": False}) if no_repack else settings)
    bar = ProgressBar()
    try:
        info = host.ensure(model, progress=bar, choose=interactive_choose)
    finally:
        bar.close()
    sampling = {k: v for k, v in {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                                  "max_tokens": max_tokens, "ignore_eos": ignore_eos or None}.items()
                if v is not None}
    session = Session(host, info.name, sampling, load, fmt, system, verbose)
    session.think, session.hide_thinking = think, hidethinking
    for path in images:
        session.add_image(path)
    try:
        text = " ".join(prompt)
        if not text and not sys.stdin.isatty():
            text = sys.stdin.read().strip()
            if not text:
                raise click.UsageError("nothing on stdin to answer")
        if text:
            session.ask(text)
        else:
            _repl(session)
    finally:
        host.engine.close()


def add_commands(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(ps)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ps(as_json: bool) -> None:
    """List the models loaded by the running server (INFERNO_HOST)."""
    from inferno.cli.servecmd import server_ps

    models = server_ps()
    if as_json:
        click.echo(json.dumps(models, indent=2))
        return
    from inferno.tables import human_size, table

    rows = [["NAME", "SIZE", "CONTEXT", "SLOTS", "KV", "QUEUED", "TOK/S", "UNTIL", "DEVICES", "STATE"]]
    failed, contexts = [], []
    for m in models:
        if m.get("context_reason"):
            contexts.append(f"{m['name']}: context {m.get('context_length')}, {m['context_reason']}")
        if m.get("state") == "failed":
            failed.append(f"{m['name']}: {m.get('error')}")
            rows.append([m["name"], "-", "-", "-", "-", "-", "-", "-", "-", "failed"])
            continue
        devices = ", ".join(f"{d['name']} {human_size(int(d['memory']))}" for d in m.get("devices") or [])
        state = "loaded" if m.get("repack", True) else "loaded, no repack"
        rows.append([m["name"], human_size(int(m.get("size", 0))), str(m.get("context_length", "-")),
                     f"{m.get('slots_in_use', 0)}/{m.get('slots', 1)}",
                     human_size(int(m.get("kv_cache", 0))) + (" shared" if m.get("kv_unified") else ""),
                     str(m.get("queued", 0)),
                     f"{m.get('tokens_per_second', 0.0):.1f}", m.get("expires_at") or "forever", devices or "-",
                     state])
    click.echo(table(rows))
    for line in contexts + failed:
        click.echo(line)
