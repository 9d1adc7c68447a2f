"""Where Flair's log lines go: commands print their JSON result on stdout, so Flair's logger (which writes to
stdout) is pointed at stderr while they run, in every process that does the work."""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Iterator

__all__ = ["flair_logs_to_stderr"]


@contextmanager
def flair_logs_to_stderr() -> Iterator[None]:
    """Point Flair's stream handlers at stderr while the block runs (Flair is imported here, so its handler
    exists to be redirected)."""
    import flair  # noqa: F401

    handlers = [h for h in logging.getLogger("flair").handlers
                if type(h) is logging.StreamHandler and h.stream is not sys.stderr]
    streams = [h.setStream(sys.stderr) for h in handlers]
    try:
        yield
    finally:
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)
