"""Progress of long commands on stderr: what each target is doing now, and for how long.

On a terminal one live line is redrawn (stage, the stage's elapsed time, the run's); elsewhere (CI
logs, pipes) each stage is one line. Nothing is shown unless a command opened a reporter
(``reporting``), so the Python API stays silent. The reporter writes to its own copy of the stderr
descriptor: ``_quiet.quiet`` silences frameworks by redirecting fd 2 during conversions, which must
not swallow the progress line too.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

_current: _Reporter | None = None
_REDRAW_S = 0.5


def stage(label: str, text: str) -> None:
    """Report that ``label`` (a target such as ``tflite[int8]``, or ``source``) is now doing ``text``."""
    if _current is not None:
        _current.stage(label, text)


def note(text: str) -> None:
    """Tell the person running the command something that changes how to read the result (stderr).

    Unlike ``stage``, a note is shown without a reporter too (the Python API): a warning such as
    "int8 calibrated on random inputs" must reach whoever reads the numbers. With a live line, the
    note is printed above it and the line is drawn again.
    """
    if _current is not None:
        _current.note(text)
        return
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # a closed stderr must not fail the run


@contextmanager
def reporting(enabled: bool = True, stream=None, live: bool | None = None):
    """Show stages on ``stream`` (stderr) for the block; ``enabled=False`` (--quiet) shows nothing."""
    global _current
    if not enabled or _current is not None:
        yield
        return
    stream = stream or sys.stderr
    live = _is_terminal(stream) if live is None else live
    reporter = _Reporter(stream, live)
    _current = reporter
    try:
        yield
    finally:
        _current = None
        reporter.close()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Reporter:
    def __init__(self, stream, live: bool):
        self._start = time.monotonic()
        self._stage_start = self._start
        self._text = ""
        self._live = live
        self._lock = threading.Lock()
        self._fd = _own_descriptor(stream)
        self._stream = stream
        self._stop = threading.Event()
        self._thread = None
        if live:
            self._thread = threading.Thread(target=self._redraw_loop, daemon=True)
            self._thread.start()

    def stage(self, label: str, text: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._stage_start, self._text = now, f"{label}: {text}"
            if self._live:
                self._draw(now)
            else:
                self._write(f"[{now - self._start:7.1f}s] {self._text}\n")

    def note(self, text: str) -> None:
        with self._lock:
            if self._live and self._text:
                self._write("\r\x1b[K" + text + "\n")
                self._draw(time.monotonic())
            else:
                self._write(text + "\n")

    def _draw(self, now: float) -> None:
        line = f"[{now - self._start:6.1f}s] {self._text} ({now - self._stage_start:.0f}s)"
        width = _columns() - 1
        self._write("\r\x1b[K" + (line if len(line) <= width else line[: width - 1] + "…"))

    def _redraw_loop(self) -> None:
        while not self._stop.wait(_REDRAW_S):
            with self._lock:
                if self._text:
                    self._draw(time.monotonic())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            if self._live and self._text:
                self._write("\r\x1b[K")  # the verdict and summary follow on a clean line
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _write(self, text: str) -> None:
        try:
            if self._fd is not None:
                os.write(self._fd, text.encode("utf-8", "replace"))
            else:
                self._stream.write(text)
                self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not fail the run


def _own_descriptor(stream) -> int | None:
    """A duplicate of ``stream``'s descriptor, immune to later redirections of fd 2."""
    try:
        stream.flush()
        return os.dup(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None  # a stream without a descriptor (a test's StringIO): write to it directly


def _columns() -> int:
    try:
        return max(40, os.get_terminal_size(2).columns)
    except OSError:
        return 100
