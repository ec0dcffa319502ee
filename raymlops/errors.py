"""Exceptions raised by raymlops; all derive from RaymlopsError."""

from __future__ import annotations

from dataclasses import dataclass


class RaymlopsError(Exception):
    """Base class for every error raymlops raises on purpose."""

    exit_code = 1  # the CLI's exit status for it


class SetupError(RaymlopsError):
    """The environment cannot run this config as set up (e.g. node-local storage on a multi-node cluster);
    found before any work, reported as one line with what to set instead (exit 2, like a config error)."""

    exit_code = 2


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config: where it is and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(RaymlopsError):
    """A config failed to load or validate; carries every issue found.

    Survives pickling across Ray processes (the issues are plain dataclasses).
    """

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __reduce__(self):
        return (ConfigError, (self.issues,))


class DataError(RaymlopsError):
    """Input data does not match what a step expects (the user's data to fix, like a config: exit 2)."""

    exit_code = 2


class RunNotFoundError(RaymlopsError):
    """A run id or run directory does not exist in storage."""
