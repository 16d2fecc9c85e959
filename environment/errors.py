"""Errors a user can act on. run.py prints them as one line, without a traceback."""

from __future__ import annotations


class SalonError(Exception):
    """A problem the user can fix; printed as one line, exit code ``exit_code``."""

    exit_code = 1


class UsageError(SalonError):
    """A bad command-line value or input file (exit code 2)."""

    exit_code = 2


class MissingPackageError(SalonError):
    """A model or library package is not installed."""

    def __init__(self, package: str, install: str) -> None:
        super().__init__(f"package {package!r} is not installed: run `{install}`")


def require(condition: bool, key: str, allowed: str, value: object = None) -> None:
    """Raise a UsageError naming ``key``, its value and what is allowed, unless ``condition``."""
    if not condition:
        shown = "" if value is None else f"={value!r}"
        raise UsageError(f"{key}{shown} is invalid: {allowed}")
