"""Hold back what frameworks print (even from C++ at the file-descriptor level) unless asked."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings


class Captured:
    """What was printed inside a ``quiet()`` block."""

    def __init__(self):
        self.text = ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Redirect fds 1 and 2 to a temporary file for the block; yields a Captured."""
    captured = Captured()
    if not enabled:
        yield captured
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
