"""Errors a user can act on. run.py prints them as one line, without a traceback."""

from __future__ import annotations


class SalonError(Exception):
    """A problem the user can fix; printed as one line, exit code ``exit_code``."""

    exit_code = 1


class UsageError(SalonError):
    """A bad command-line value or input file (exit code 2)."""

    exit_code = 2


class InvalidValue(UsageError):
    """A constructor argument out of range. Constructors name their own field (``size``); the
    composition root, which knows where in the config the object came from, names the whole
    key (``society.size``) with ``at``."""

    def __init__(self, key: str, allowed: str, value: object = None) -> None:
        self.key, self.allowed, self.value = key, allowed, value
        super().__init__(_message(key, allowed, value))

    def at(self, prefix: str) -> InvalidValue:
        """The same error with its key under ``prefix`` (e.g. ``society.attributes``)."""
        return InvalidValue(f"{prefix}.{self.key}" if prefix else self.key, self.allowed, self.value)


class ModelCallFailed(SalonError):
    """A model server did not answer (down, or slower than its timeout)."""


class MissingPackageError(SalonError):
    """A model or library package is not installed."""

    def __init__(self, package: str, install: str) -> None:
        super().__init__(f"package {package!r} is not installed: run `{install}`")


def _message(key: str, allowed: str, value: object) -> str:
    shown = "" if value is None else f"={value!r}"
    return f"{key}{shown} is invalid: {allowed}"


def require(condition: bool, key: str, allowed: str, value: object = None) -> None:
    """Raise InvalidValue naming ``key``, its value and what is allowed, unless ``condition``."""
    if not condition:
        raise InvalidValue(key, allowed, value)


def is_whole(value: object, low: int, high: int | None = None) -> bool:
    """A whole number (not a bool) within [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (
        high is None or value <= high)


def is_number(value: object, low: float, high: float | None = None) -> bool:
    """A number (not a bool) within [low, high]."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= low and (
        high is None or value <= high)
