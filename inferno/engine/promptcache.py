"""The prompt cache in host RAM (llama-server's --cache-ram): the KV cells of a slot that is about to lose them.

A slot's cells are its prefix cache (inferno.engine.slots) until a new prompt takes the slot. When that prompt
shares little with them, they would be gone; here they are first copied out with llama.cpp's own
llama_state_seq_get_data and kept, least recently used first out, within a byte bound. A later prompt that
continues one of them better than any slot does gets it copied back into its slot (llama_state_seq_set_data)
and evaluates only the rest: more conversations than slots keep their cache.

Entries hold text-only sequences (a slot with images is not kept: their cells are placed by mtmd); an entry that
is a prefix of a newer one is dropped for it. With a disk cache (inferno.engine.diskcache) every kept entry is
also written there, the slots' cells are written when the model unloads, and entries found only on disk are
read back on a match: a restart keeps the cache. Only the model's decode thread calls this.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inferno.engine.diskcache import state_buffer
from inferno.engine.slots import Slot, common_prefix

if TYPE_CHECKING:
    from inferno.engine.diskcache import DiskCache

log = logging.getLogger("inferno.engine")

MIN_KEEP = 64  # fewer cells than this are cheaper to evaluate again than to copy out and back


@dataclass(eq=False)
class Entry:
    tokens: list[int]
    exact: int  # the slot's exact prefix (inferno.engine.slots.Slot.exact): what may be reused of it
    data: Any  # a ctypes byte array: the sequence's state as llama.cpp wrote it (None: still on disk only)
    disk: str | None = None  # its id in the disk cache


class PromptCache:
    def __init__(self, lib: Any, ctx: Any, limit: int, *, exact: bool, disk: DiskCache | None = None) -> None:
        self.lib, self.ctx, self.limit, self.disk = lib, ctx, limit, disk
        self.exact = exact  # reuse only a slot's exact prefix (a stream per slot: answers as cold)
        self.entries: collections.OrderedDict[int, Entry] = collections.OrderedDict()  # oldest first
        self.bytes = 0
        self.hits = 0

    def keep(self, slot: Slot) -> None:
        """Copy the slot's cells out before they are dropped (its whole cache, text only)."""
        tokens = slot.cache
        usable = slot.exact if self.exact else len(tokens)
        if (self.limit <= 0 and self.disk is None) or usable < MIN_KEEP or slot.images or slot.lora:
            return  # (cells computed with LoRA adapters serve only their own set: kept in their slot alone)
        for key, e in list(self.entries.items()):
            if common_prefix(e.tokens, tokens) == len(tokens):  # already kept, as this or as a longer one
                self.entries.move_to_end(key)
                return
        size = self.lib.llama_state_seq_get_size(self.ctx, slot.id)
        if size <= 0:
            return
        if size <= self.limit:  # room first: the new state is never held beside all the old ones (the bound)
            while self.entries and self.bytes + size > self.limit:
                self._drop(next(iter(self.entries)))
        data = state_buffer(size)
        if self.lib.llama_state_seq_get_data(self.ctx, data, size, slot.id) != size:
            return
        entry = Entry(list(tokens), usable, data)
        if self.disk is not None:
            entry.disk = self.disk.put(entry.tokens, usable, data)
        self._add(entry)

    def flush(self, slots: list[Slot]) -> None:
        """The model unloads: keep every slot's cells (on disk, for the next start), and finish the writes."""
        if self.disk is not None:
            for slot in slots:
                self.keep(slot)
            self.disk.close()

    def find(self, prompt: list[int]) -> tuple[Entry, int] | None:
        """The entry sharing the longest prefix with the prompt, and that length."""
        best: tuple[Entry, int] | None = None
        on_disk: list[Entry] = []
        if self.disk is not None:
            held = {e.disk for e in self.entries.values()}
            on_disk = [Entry(t, x, None, ident) for ident, (t, x) in list(self.disk.index.items()) if ident not in held]
        for e in [*self.entries.values(), *on_disk]:
            n = min(common_prefix(e.tokens, prompt), e.exact)
            if n and (best is None or n > best[1]):
                best = (e, n)
        return best

    def restore(self, entry: Entry, slot: Slot) -> bool:
        """Make the slot hold the entry's cells (all of them: the caller drops what the prompt does not share)."""
        mem = self.lib.llama_get_memory(self.ctx)
        self.lib.llama_memory_seq_rm(mem, slot.id, -1, -1)
        slot.cache, slot.images, slot.exact = [], [], 0
        if entry.data is None:  # on disk only: read and checked (a bad entry is removed there)
            assert self.disk is not None and entry.disk is not None
            data = self.disk.load(entry.disk)
            if data is None:
                return False
            entry.data = data
        size = len(entry.data)
        if self.lib.llama_state_seq_set_data(self.ctx, entry.data, size, slot.id) != size:
            log.warning("the prompt cache could not restore %d tokens into slot %d", len(entry.tokens), slot.id)
            self.lib.llama_memory_seq_rm(mem, slot.id, -1, -1)
            if entry.disk is not None and self.disk is not None:
                self.disk.forget(entry.disk)
            return False
        slot.cache, slot.exact = list(entry.tokens), entry.exact
        self.hits += 1
        if id(entry) in self.entries:  # (keeping the slot's own cells first may have pushed it out)
            self.entries.move_to_end(id(entry))
        else:
            self._add(entry)
        return True

    def _add(self, entry: Entry) -> None:
        size = len(entry.data)
        if size > self.limit:
            return
        for key, e in list(self.entries.items()):
            if common_prefix(e.tokens, entry.tokens) == len(e.tokens):  # the new one holds it and more
                self._drop(key)
        self.entries[id(entry)] = entry
        self.bytes += size
        while self.bytes > self.limit:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: int) -> None:
        self.bytes -= len(self.entries.pop(key).data)
