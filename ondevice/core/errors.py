"""Two error families: the user's (one line, an exit code) and ours (a traceback with --debug)."""

from __future__ import annotations

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


class CheckFailed(OndeviceError):
    """A parity, latency or gate check failed."""

    exit_code: int = ExitCode.CHECK_FAILED


class MissingDependency(OndeviceError):
    """An optional framework is not installed; names the package and the extra that installs it."""

    exit_code: int = ExitCode.BAD_INPUT


class RuntimeFault(OndeviceError):
    """A runtime crashed or misbehaved while running an artifact."""

    exit_code: int = ExitCode.INTERNAL


class InternalError(Exception):
    """A bug in ondevice itself; shown with a traceback under --debug."""

    exit_code: int = ExitCode.INTERNAL
