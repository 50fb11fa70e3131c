"""Ollama model names: `[registry.host/][namespace/]model[:tag]`, checked part by part before any I/O.

Every part becomes a URL path segment (the registry) or a folder name (a local Ollama store), so each must be a
plain name: the local store's paths are then built through the store's confining function as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inferno.api import BadRequestError, name_from

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,79}$")


@dataclass(frozen=True)
class OllamaName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def shown(self) -> str:
        """The name as Ollama prints it: `llama3.2:latest`, `ns/model:tag`, `host/ns/model:tag`."""
        prefix = "" if self.host == DEFAULT_HOST else f"{self.host}/"
        ns = "" if self.namespace == DEFAULT_NAMESPACE and not prefix else f"{self.namespace}/"
        return f"{prefix}{ns}{self.model}:{self.tag}"

    @property
    def store_name(self) -> str:
        """The Inferno store name it gets by default: `smollm2:135m`, `ns-model:tag` outside the library."""
        base = self.model if self.namespace == DEFAULT_NAMESPACE else f"{self.namespace}-{self.model}"
        base = name_from(base)
        return base if self.tag == "latest" else f"{base}:{name_from(self.tag)}"


def parse_name(text: str, prefix: str) -> OllamaName:
    """text (prefix already stripped) as an Ollama name; a 400 naming the bad part otherwise."""
    def bad(why: str) -> BadRequestError:
        shown = text if len(text) <= 80 else text[:77] + "..."
        return BadRequestError(f"invalid Ollama model name {shown!r} ({why}); use {prefix}:NAME[:TAG], "
                               f"{prefix}:NAMESPACE/NAME:TAG or {prefix}:registry.host/NAMESPACE/NAME:TAG",
                               param="model")

    if not text:
        raise bad("empty")
    if ".." in text or "\\" in text or "%" in text:
        raise bad("'..', '\\' and '%' are not allowed")
    parts = text.split("/")
    if len(parts) > 3:
        raise bad("too many '/'")
    last = parts[-1]
    model, _, tag = last.partition(":")
    tag = tag or "latest"
    host = parts[0] if len(parts) == 3 else DEFAULT_HOST
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    if not _HOST.fullmatch(host):
        raise bad(f"registry host {host!r}")
    for what, value, rule in (("namespace", namespace, _PART), ("model", model, _PART), ("tag", tag, _TAG)):
        if not rule.fullmatch(value):
            raise bad(f"{what} {value!r}")
    return OllamaName(host=host, namespace=namespace, model=model, tag=tag)
