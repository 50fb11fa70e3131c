"""Plugin loading: entry points in the "inferno" group, in name order, each failure isolated.

First-party plugins load through the same group as third-party ones, so they can be disabled the same way.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from inferno import hookspecs

GROUP = "inferno"


@dataclass
class PluginStatus:
    name: str
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "version": self.version, "module": self.module,
                             "hooks": self.hooks}
        if self.error:
            d["error"] = self.error
        if not self.enabled:
            d["enabled"] = False
        return d


pm = pluggy.PluginManager("inferno")
pm.add_hookspecs(hookspecs)

_statuses: dict[str, PluginStatus] = {}
_loaded = False


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [p.strip() for p in value.split(",") if p.strip()]


def _hooks_of(plugin: object) -> list[str]:
    return sorted(c.name for c in pm.get_hookcallers(plugin) or [])


_load_lock = threading.RLock()


def load_plugins() -> None:
    """Load every entry-point plugin once; INFERNO_LOAD_PLUGINS / INFERNO_DISABLE_PLUGINS select them.

    Under a lock: a second thread asking while the first is still loading waits for it, instead of finding
    `_loaded` already set and no sources registered yet (re-entrant: a plugin loading may ask again)."""
    with _load_lock:
        _load_once()


def _load_once() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    only = _env_list("INFERNO_LOAD_PLUGINS")
    disabled = set(_env_list("INFERNO_DISABLE_PLUGINS") or [])
    strict = os.environ.get("INFERNO_STRICT_PLUGINS", "") not in ("", "0")
    eps = sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: ep.name)
    seen: set[str] = set()
    for ep in eps:
        if ep.name in seen:  # the same distribution installed twice (editable + site) lists twice
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        status = PluginStatus(name=ep.name, version=dist.version if dist else None, module=ep.value)
        _statuses[ep.name] = status
        if (only is not None and ep.name not in only) or ep.name in disabled:
            status.enabled = False
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as e:
            if strict:
                raise
            status.error = f"{type(e).__name__}: {e}"
            print(f"warning: plugin {ep.name!r} failed to load: {status.error}", file=sys.stderr)
            continue
        status.hooks = _hooks_of(module)


def register(plugin: object, name: str | None = None) -> str:
    """Register a plugin object directly (tests, embedding programs). Returns its name."""
    load_plugins()
    registered = pm.register(plugin, name=name)
    assert registered is not None
    return registered


def unregister(name: str) -> None:
    pm.unregister(name=name)


def plugin_statuses(include_disabled: bool = False) -> list[dict[str, Any]]:
    """What `inferno plugins` prints: entry-point plugins plus any registered directly."""
    load_plugins()
    out = [s.to_dict() for s in _statuses.values() if include_disabled or s.enabled]
    for name, plugin in pm.list_name_plugin():
        if name not in _statuses:
            out.append(PluginStatus(name=name, module=getattr(plugin, "__name__", None),
                                    hooks=_hooks_of(plugin)).to_dict())
    return sorted(out, key=lambda d: d["name"])
