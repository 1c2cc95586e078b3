"""Two error families: the user's (one line, an exit code) and ours (a traceback with --debug)."""

from __future__ import annotations

import re
from pathlib import Path

from .vocab import ExitCode


class OndeviceError(Exception):
    """A problem the user can act on; printed as one line, never with a traceback."""

    exit_code: int = ExitCode.BAD_INPUT


class BadInputError(OndeviceError):
    """Unusable input: a missing or malformed model file, a bad shape string, a factory that raised."""

    exit_code: int = ExitCode.BAD_INPUT


class ConversionError(OndeviceError):
    """No strategy could produce a requested target."""

    exit_code: int = ExitCode.NOT_CONVERTIBLE


class MissingDependency(OndeviceError):
    """An optional framework is not installed; names the package and the extra that installs it."""

    exit_code: int = ExitCode.BAD_INPUT


class InternalError(Exception):
    """A bug in ondevice itself; shown with a traceback under --debug."""

    exit_code: int = ExitCode.INTERNAL


def input_error(message: str, exc: BaseException) -> BadInputError | InternalError:
    """``message`` as the user's error -- unless ``exc`` was raised inside ondevice's own code: then whatever
    input led there, it is our bug (InternalError, exit 4), and the message says so. Raise it ``from exc``."""
    where = None if isinstance(exc, OndeviceError) else raised_by_ondevice(exc)  # ours on purpose: about the input
    if where is None:
        return BadInputError(message)
    return InternalError(f"{message} [raised inside ondevice at {where}: a bug in ondevice, not in the input]")


def raised_by_ondevice(exc: BaseException) -> str | None:
    """``file:line`` where ``exc`` was raised when that is ondevice's own code (its converters and validators
    included), else None: an exception raised inside a framework, the standard library or the user's code."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    file = Path(tb.tb_frame.f_code.co_filename)
    if not file.is_absolute() or not file.exists():  # <frozen ...>, <string>: not a file of ours
        return None
    package = Path(__file__).resolve().parents[1]
    # converters/ and validators/ are links into the package in a checkout, folders inside it in a wheel.
    roots = {package, (package / "converters").resolve(), (package / "validators").resolve()}
    resolved = file.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        return None
    return f"{resolved.relative_to(package.parent)}:{tb.tb_lineno}"


# torch and onnx2tf colour some messages with ANSI escapes; a reason line should not carry them.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-blank line of an exception's message, without colours; its type's name if it has none."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return (f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)[:limit]
