"""Adapter models in the store (`inferno create NAME --from BASE --adapter FILE`): a base model's weights,
referenced and never copied, with LoRA adapter files kept in the adapter model's own folder."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferno.errors import BadRequestError
from inferno.names import INFO, contained, normalize_name

if TYPE_CHECKING:
    from inferno.store import ModelInfo


class AdapterModels:
    """The Store's adapter-model methods (a part of Store, kept apart by concern)."""

    if TYPE_CHECKING:  # Store's own
        def get(self, name: str, param: str = "model", *, complete: bool = True) -> ModelInfo: ...

        def _dir(self, name: str, param: str = "model") -> Path: ...

        def _place(self, file: Path, target: Path, mode: str, progress: Any, sha256: str | None) -> str: ...

    def add_adapter_model(self, name: str, base: str, adapters: list[tuple[Path, str, float]]) -> ModelInfo:
        """An adapter model: base's weights (referenced, never copied) with these LoRA adapter files (file, name,
        scale), copied into its own folder under names checked like every name from outside."""
        from inferno.store import ModelInfo, _no_progress, atomic_write

        canonical = normalize_name(name)
        parent = self.get(base, "from")
        if parent.base:  # adapters stack on the base's weights: one level, the base's own adapters first
            adapters_of_parent = [(contained(self._dir(parent.name), a["filename"]), a["filename"], a["scale"])
                                  for a in parent.adapters or []]
            return self.add_adapter_model(name, parent.base, adapters_of_parent + adapters)
        if canonical == parent.name:
            raise BadRequestError("an adapter model needs a name of its own", param="model")
        d = self._dir(canonical)
        targets = [(file, contained(d, filename, "adapters"), scale) for file, filename, scale in adapters]
        d.mkdir(parents=True, exist_ok=True)
        entries = []
        for file, target, scale in targets:
            if Path(file).resolve() != target.resolve():
                self._place(Path(file), target, "copy", _no_progress, "-")
            entries.append({"filename": target.name, "scale": scale})
        size = parent.size + sum(t.stat().st_size for _, t, _ in targets)
        extra = parent.model_dump(exclude={"name", "path", "downloaded_at", "linked", "size", "base", "adapters",
                                           "parts"})
        fields: dict[str, Any] = {"name": canonical, "path": parent.path, "linked": True, "size": size,
                                  "downloaded_at": datetime.now(timezone.utc), "base": parent.name,
                                  "adapters": entries}
        info = ModelInfo.model_validate(extra | fields)
        atomic_write(d / INFO, info.model_dump_json(indent=2))
        return info

    def adapter_files(self, info: ModelInfo) -> list[tuple[Path, float]]:
        """An adapter model's adapter files and scales; names read back from info.json are checked again."""
        d = self._dir(info.name)
        return [(contained(d, str(a.get("filename")), "adapters"), float(a.get("scale", 1.0)))
                for a in info.adapters or []]

