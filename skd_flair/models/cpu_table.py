"""What the static vector tables (fastText, a transformer's piece table) share as Flair embeddings."""
from __future__ import annotations


class CpuTable:
    """Mixin for a ``TokenEmbeddings`` holding a large static table: with ``force_cpu`` the table stays on the CPU
    and in its stored precision when the model around it moves or changes dtype (as Flair's
    ``WordEmbeddings(force_cpu=True)``); the embedding prints as its name."""

    def _apply(self, fn, *args, **kwargs):
        if getattr(self, "force_cpu", False) and getattr(fn, "__name__", "") == "convert":
            return self
        return super()._apply(fn, *args, **kwargs)

    def __str__(self) -> str:
        return self.name
