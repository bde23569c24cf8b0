"""Errors raised for architectures and decision sequences that break the search space's rules."""

from __future__ import annotations


class _PathError(ValueError):
    """A `ValueError` that carries the path of the offending field, e.g. ``'blocks[3].level'``."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)

    def with_prefix(self, prefix: str) -> _PathError:
        """Returns the same error with ``prefix`` put in front of its path."""
        path = f"{prefix}.{self.path}" if self.path else prefix
        return type(self)(self.reason, path)


class InvalidArchError(_PathError):
    """An `ArchSpec` breaks a structural rule, or does not lie in a given search space."""


class InvalidDecisionError(_PathError):
    """A decision sequence has the wrong length or a choice out of range."""
