"""Inferno: a local LLM server and CLI for GGUF models, built from plugins."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inferno")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
